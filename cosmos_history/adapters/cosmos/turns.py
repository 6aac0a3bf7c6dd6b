"""Turn records and their event batches in Cosmos DB: small items in the session's partition.

A record is the item ``<sessionId>:turn:<n>`` (type ``turn``), with the session's ``ttl``: the turn stays
readable as long as the session's items. Each batch of events is the item
``<sessionId>:events:<n>:<attempt>:<batch>`` (type ``events``) with the event retention as its ``ttl``:
Cosmos DB deletes it when that passes, and the turn's events route then answers 410. All of them are point
operations on the caller's partition ``[userId, sessionId]``, removed with the session by its delete.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.cosmos import exceptions as cosmos_errors
from azure.cosmos.aio import ContainerProxy

from cosmos_history.adapters.cosmos import items
from cosmos_history.adapters.cosmos.client import store_errors, written_etag

if TYPE_CHECKING:
    from cosmos_history.domain.turn_records import EventBatch, TurnRecord


class CosmosTurnLog:
    """:class:`~cosmos_history.domain.turn_records.TurnLog` over one container."""

    def __init__(self, container: ContainerProxy, *, ttl_seconds: int | None, event_ttl_seconds: int) -> None:
        self._container = container
        self._ttl = ttl_seconds
        self.event_ttl_seconds = event_ttl_seconds

    def _item(self, record: TurnRecord) -> dict[str, Any]:
        partition = items.item_id(record.session_id)
        item_id = items.turn_item_id(partition, record.turn)
        return {**items.envelope(items.TURN_TYPE, item_id, partition, record.user_id, self._ttl), **record.to_json()}

    async def put(self, record: TurnRecord) -> TurnRecord:
        with store_errors():
            stored = await self._container.upsert_item(self._item(record), no_response=True)
        record.etag = written_etag(stored)
        return record

    async def create(self, record: TurnRecord) -> TurnRecord | None:
        with store_errors():
            try:
                stored = await self._container.create_item(self._item(record), no_response=True)
            except cosmos_errors.CosmosResourceExistsError:
                return None
        record.etag = written_etag(stored)
        return record

    async def replace(self, record: TurnRecord) -> TurnRecord | None:
        item = self._item(record)
        with store_errors():
            try:
                stored = await self._container.replace_item(
                    item["id"], item, etag=record.etag, match_condition=MatchConditions.IfNotModified, no_response=True
                )
            except (cosmos_errors.CosmosAccessConditionFailedError, cosmos_errors.CosmosResourceNotFoundError):
                return None
        record.etag = written_etag(stored)
        return record

    async def find(self, session_id: str, user_id: str, turn: int) -> TurnRecord | None:
        partition = items.item_id(session_id)
        with store_errors():
            try:
                item = await self._container.read_item(
                    items.turn_item_id(partition, turn), partition_key=items.partition_key(user_id, partition)
                )
            except cosmos_errors.CosmosResourceNotFoundError:
                return None
        if item.get("userId") != user_id or item.get("type") != items.TURN_TYPE:
            return None
        from cosmos_history.domain.turn_records import TurnRecord  # a plain turn reads no record: not at start-up

        return TurnRecord.from_json(session_id, user_id, item, item.get("_etag"))

    async def cancelled_turns(self, session_id: str, user_id: str, *, after: int) -> list[int]:
        """One query in the session's partition (a turn started streams: ``streamed``; a queued turn cancelled
        before it ran used no number)."""
        partition = items.item_id(session_id)
        with store_errors():
            query = self._container.query_items(
                "SELECT VALUE c.turn FROM c WHERE c.type = @type AND c.userId = @userId"
                " AND c.status = 'cancelled' AND c.streamed = true AND c.turn > @after",
                parameters=[
                    {"name": "@type", "value": items.TURN_TYPE},
                    {"name": "@userId", "value": user_id},
                    {"name": "@after", "value": after},
                ],
                partition_key=items.partition_key(user_id, partition),
            )
            return sorted([int(turn) async for turn in query])

    async def append(self, record: TurnRecord, batch: EventBatch) -> None:
        partition = items.item_id(record.session_id)
        item_id = items.events_item_id(partition, record.turn, record.attempt, batch.number)
        item = {
            **items.envelope(items.EVENTS_TYPE, item_id, partition, record.user_id, self.event_ttl_seconds),
            "turn": record.turn,
            "attempt": record.attempt,
            "batch": batch.number,
            "events": [event.to_json() for event in batch.events],
        }
        with store_errors():
            await self._container.upsert_item(item, no_response=True)

    async def batch(self, record: TurnRecord, number: int) -> EventBatch | None:
        partition = items.item_id(record.session_id)
        with store_errors():
            try:
                item = await self._container.read_item(
                    items.events_item_id(partition, record.turn, record.attempt, number),
                    partition_key=items.partition_key(record.user_id, partition),
                )
            except cosmos_errors.CosmosResourceNotFoundError:
                return None
        if item.get("userId") != record.user_id:
            return None
        from cosmos_history.domain.turn_records import EventBatch, StoredEvent

        return EventBatch(number, tuple(StoredEvent.from_json(e) for e in item["events"]))
