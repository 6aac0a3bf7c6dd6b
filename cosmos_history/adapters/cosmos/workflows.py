"""Workflow runs and their checkpoints in Cosmos DB: small items in the caller's partition ``[userId, runId]``.

A run is the item ``<runId>:run`` (type ``workflow_run``); each checkpoint the framework saves is the item
``<runId>:checkpoint:<checkpointId>`` (type ``checkpoint``) holding the framework's own encoding of it
(:func:`agent_framework._workflows._checkpoint_encoding.encode_checkpoint_value`, JSON with pickled values for
the framework's types, decoded with its allow-list). ``agent-framework-azure-cosmos``'s checkpoint storage does
not fit here: it needs a container partitioned by ``/workflow_name`` and queries across partitions, where this
app's container is partitioned per user, so this adapter implements the framework's ``CheckpointStorage``
protocol over the app's container instead. Every operation names the caller's partition.
"""

from __future__ import annotations

from typing import Any

from agent_framework import WorkflowCheckpoint
from agent_framework._workflows._checkpoint_encoding import decode_checkpoint_value, encode_checkpoint_value
from agent_framework.exceptions import WorkflowCheckpointException
from azure.core import MatchConditions
from azure.cosmos import exceptions as cosmos_errors
from azure.cosmos.aio import ContainerProxy

from cosmos_history.adapters.cosmos import items
from cosmos_history.adapters.cosmos.client import store_errors, written_etag
from cosmos_history.domain.workflow_runs import WorkflowRun

RUN_TYPE = "workflow_run"
CHECKPOINT_TYPE = "checkpoint"


class CosmosWorkflowRuns:
    """:class:`~cosmos_history.domain.workflow_runs.WorkflowRunStore` over one container."""

    def __init__(self, container: ContainerProxy, *, ttl_seconds: int | None) -> None:
        self._container = container
        self._ttl = ttl_seconds

    def _item(self, run: WorkflowRun) -> dict[str, Any]:
        partition = items.item_id(run.id)
        return {**items.envelope(RUN_TYPE, f"{partition}:run", partition, run.user_id, self._ttl), **run.to_json()}

    async def create(self, run: WorkflowRun) -> WorkflowRun:
        with store_errors():
            stored = await self._container.create_item(self._item(run), no_response=True)
        return run.but(etag=written_etag(stored))

    async def find(self, run_id: str, user_id: str) -> WorkflowRun | None:
        try:
            partition = items.item_id(run_id)
        except ValueError:
            return None
        with store_errors():
            try:
                item = await self._container.read_item(
                    f"{partition}:run", partition_key=items.partition_key(user_id, partition)
                )
            except cosmos_errors.CosmosResourceNotFoundError:
                return None
        if item.get("userId") != user_id or item.get("type") != RUN_TYPE:
            return None
        return WorkflowRun.from_json(user_id, item, item.get("_etag"))

    async def replace(self, run: WorkflowRun) -> WorkflowRun | None:
        item = self._item(run)
        with store_errors():
            try:
                stored = await self._container.replace_item(
                    item["id"], item, etag=run.etag, match_condition=MatchConditions.IfNotModified, no_response=True
                )
            except (cosmos_errors.CosmosAccessConditionFailedError, cosmos_errors.CosmosResourceNotFoundError):
                return None
        return run.but(etag=written_etag(stored))

    def checkpoints(self, run_id: str, user_id: str) -> CosmosRunCheckpoints:
        return CosmosRunCheckpoints(self._container, run_id, user_id, ttl_seconds=self._ttl)


class CosmosRunCheckpoints:
    """The framework's ``CheckpointStorage`` for one run: its checkpoints are items of the run's partition."""

    def __init__(self, container: ContainerProxy, run_id: str, user_id: str, *, ttl_seconds: int | None) -> None:
        self._container = container
        self._user = user_id
        self._partition = items.item_id(run_id)
        self._ttl = ttl_seconds

    def _key(self) -> list[str]:
        return items.partition_key(self._user, self._partition)

    def _id(self, checkpoint_id: str) -> str:
        return items.checked_path(f"{self._partition}:checkpoint:{checkpoint_id}")

    async def save(self, checkpoint: WorkflowCheckpoint) -> str:
        item = {
            **items.envelope(
                CHECKPOINT_TYPE, self._id(checkpoint.checkpoint_id), self._partition, self._user, self._ttl
            ),
            "workflowName": checkpoint.workflow_name,
            "checkpointId": checkpoint.checkpoint_id,
            "timestamp": checkpoint.timestamp,
            "checkpoint": encode_checkpoint_value(checkpoint.to_dict()),
        }
        with store_errors():
            await self._container.upsert_item(item, no_response=True)
        return checkpoint.checkpoint_id

    async def load(self, checkpoint_id: str) -> WorkflowCheckpoint:
        with store_errors():
            try:
                item = await self._container.read_item(self._id(checkpoint_id), partition_key=self._key())
            except cosmos_errors.CosmosResourceNotFoundError:
                raise WorkflowCheckpointException(f"No checkpoint found with ID {checkpoint_id}") from None
        if item.get("userId") != self._user or item.get("type") != CHECKPOINT_TYPE:
            raise WorkflowCheckpointException(f"No checkpoint found with ID {checkpoint_id}")
        return _decoded(item)

    async def _items(self, workflow_name: str, fields: str) -> list[dict[str, Any]]:
        with store_errors():
            query = self._container.query_items(
                f"SELECT {fields} FROM c WHERE c.type = @type AND c.userId = @userId AND c.workflowName = @name",
                parameters=[
                    {"name": "@type", "value": CHECKPOINT_TYPE},
                    {"name": "@userId", "value": self._user},
                    {"name": "@name", "value": workflow_name},
                ],
                partition_key=self._key(),
            )
            found = [item async for item in query]
        return sorted(found, key=lambda item: str(item.get("timestamp") or ""))

    async def list_checkpoints(self, *, workflow_name: str) -> list[WorkflowCheckpoint]:
        return [_decoded(item) for item in await self._items(workflow_name, "*")]

    async def list_checkpoint_ids(self, *, workflow_name: str) -> list[str]:
        return [str(i["checkpointId"]) for i in await self._items(workflow_name, "c.checkpointId, c.timestamp")]

    async def get_latest(self, *, workflow_name: str) -> WorkflowCheckpoint | None:
        """The newest by timestamp (read by id: the listing query fetches only ids and timestamps)."""
        found = await self._items(workflow_name, "c.checkpointId, c.timestamp")
        return await self.load(str(found[-1]["checkpointId"])) if found else None

    async def delete(self, checkpoint_id: str) -> bool:
        with store_errors():
            try:
                await self._container.delete_item(self._id(checkpoint_id), partition_key=self._key())
            except cosmos_errors.CosmosResourceNotFoundError:
                return False
        return True


def _decoded(item: dict[str, Any]) -> WorkflowCheckpoint:
    return WorkflowCheckpoint.from_dict(decode_checkpoint_value(item["checkpoint"]))
