"""The event batches of workflow runs in Cosmos DB: one item per batch in the run's partition ``[userId, runId]``.

Batch ``n`` of a run is the item ``<runId>:events:<n>`` (type ``workflow_events``) with the event retention as
its ``ttl``. A batch is created, never replaced: a create that finds the number taken (by another job of the
same run) tells the journal to move past it, so a stored event is never overwritten.
"""

from __future__ import annotations

from azure.cosmos import exceptions as cosmos_errors
from azure.cosmos.aio import ContainerProxy

from cosmos_history.adapters.cosmos import items
from cosmos_history.adapters.cosmos.client import store_errors
from cosmos_history.domain.turn_records import EventBatch, StoredEvent

EVENTS_TYPE = "workflow_events"


class CosmosRunEvents:
    """:class:`~cosmos_history.domain.workflow_events.RunEventLog` over one container."""

    def __init__(self, container: ContainerProxy, *, event_ttl_seconds: int) -> None:
        self._container = container
        self.event_ttl_seconds = event_ttl_seconds

    async def append(self, run_id: str, user_id: str, batch: EventBatch) -> bool:
        partition = items.item_id(run_id)
        item_id = f"{partition}:events:{batch.number}"
        item = {
            **items.envelope(EVENTS_TYPE, item_id, partition, user_id, self.event_ttl_seconds),
            "batch": batch.number,
            "events": [event.to_json() for event in batch.events],
        }
        with store_errors():
            try:
                await self._container.create_item(item, no_response=True)
            except cosmos_errors.CosmosResourceExistsError:
                return False
        return True

    async def batch(self, run_id: str, user_id: str, number: int) -> EventBatch | None:
        partition = items.item_id(run_id)
        with store_errors():
            try:
                item = await self._container.read_item(
                    f"{partition}:events:{number}", partition_key=items.partition_key(user_id, partition)
                )
            except cosmos_errors.CosmosResourceNotFoundError:
                return None
        if item.get("userId") != user_id or item.get("type") != EVENTS_TYPE:
            return None
        return EventBatch(number, tuple(StoredEvent.from_json(e) for e in item["events"]))
