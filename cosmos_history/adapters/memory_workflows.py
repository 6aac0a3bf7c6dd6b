"""Workflow runs in memory (tests, the memory store): the same contract as the Cosmos DB adapter.

Checkpoints go through the framework's own encoding too, so what a run restores is what the Cosmos DB
adapter would have stored, not the live objects.
"""

from __future__ import annotations

import itertools
from typing import Any

from agent_framework import WorkflowCheckpoint
from agent_framework._workflows._checkpoint_encoding import decode_checkpoint_value, encode_checkpoint_value
from agent_framework.exceptions import WorkflowCheckpointException

from cosmos_history.domain.turn_records import EventBatch
from cosmos_history.domain.workflow_runs import WorkflowRun


class MemoryWorkflowRuns:
    """:class:`~cosmos_history.domain.workflow_runs.WorkflowRunStore` in a dict."""

    def __init__(self) -> None:
        self.runs: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}
        self.saved: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        self._versions = itertools.count(1)

    async def create(self, run: WorkflowRun) -> WorkflowRun:
        etag = str(next(self._versions))
        self.runs[(run.user_id, run.id)] = (run.to_json(), etag)
        return run.but(etag=etag)

    async def find(self, run_id: str, user_id: str) -> WorkflowRun | None:
        stored = self.runs.get((user_id, run_id))
        return None if stored is None else WorkflowRun.from_json(user_id, stored[0], stored[1])

    async def replace(self, run: WorkflowRun) -> WorkflowRun | None:
        stored = self.runs.get((run.user_id, run.id))
        if stored is None or stored[1] != run.etag:
            return None
        etag = str(next(self._versions))
        self.runs[(run.user_id, run.id)] = (run.to_json(), etag)
        return run.but(etag=etag)

    def checkpoints(self, run_id: str, user_id: str) -> MemoryRunCheckpoints:
        return MemoryRunCheckpoints(self.saved.setdefault((user_id, run_id), {}))


class MemoryRunCheckpoints:
    """The framework's ``CheckpointStorage`` for one run, over a dict of encoded checkpoints."""

    def __init__(self, saved: dict[str, dict[str, Any]]) -> None:
        self._saved = saved

    async def save(self, checkpoint: WorkflowCheckpoint) -> str:
        self._saved[checkpoint.checkpoint_id] = encode_checkpoint_value(checkpoint.to_dict())
        return checkpoint.checkpoint_id

    async def load(self, checkpoint_id: str) -> WorkflowCheckpoint:
        if checkpoint_id not in self._saved:
            raise WorkflowCheckpointException(f"No checkpoint found with ID {checkpoint_id}")
        return WorkflowCheckpoint.from_dict(decode_checkpoint_value(self._saved[checkpoint_id]))

    async def list_checkpoints(self, *, workflow_name: str) -> list[WorkflowCheckpoint]:
        found = [await self.load(checkpoint_id) for checkpoint_id in self._saved]
        return sorted((c for c in found if c.workflow_name == workflow_name), key=lambda c: c.timestamp)

    async def list_checkpoint_ids(self, *, workflow_name: str) -> list[str]:
        return [c.checkpoint_id for c in await self.list_checkpoints(workflow_name=workflow_name)]

    async def get_latest(self, *, workflow_name: str) -> WorkflowCheckpoint | None:
        found = await self.list_checkpoints(workflow_name=workflow_name)
        return found[-1] if found else None

    async def delete(self, checkpoint_id: str) -> bool:
        return self._saved.pop(checkpoint_id, None) is not None


class MemoryRunEvents:
    """:class:`~cosmos_history.domain.workflow_events.RunEventLog` in a dict (batches never expire here)."""

    def __init__(self, event_ttl_seconds: int = 86400) -> None:
        self.event_ttl_seconds = event_ttl_seconds
        self.batches: dict[tuple[str, str, int], EventBatch] = {}

    async def append(self, run_id: str, user_id: str, batch: EventBatch) -> bool:
        if (user_id, run_id, batch.number) in self.batches:
            return False
        self.batches[(user_id, run_id, batch.number)] = batch
        return True

    async def batch(self, run_id: str, user_id: str, number: int) -> EventBatch | None:
        return self.batches.get((user_id, run_id, number))
