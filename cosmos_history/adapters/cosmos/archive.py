"""Archive chunks of a session's oldest messages, as items in the session's partition
(see :mod:`cosmos_history.domain.archive`)."""

from __future__ import annotations

import contextlib
import time

from agent_framework import Message
from azure.cosmos import exceptions as cosmos_errors
from azure.cosmos.aio import ContainerProxy

from cosmos_history.adapters.cosmos import items
from cosmos_history.adapters.cosmos.client import store_errors
from cosmos_history.domain.records import SessionRecord


class CosmosArchive:
    """Archive chunks as items in the session's partition; retention slides with the session's activity."""

    def __init__(self, container: ContainerProxy, *, ttl_seconds: int | None) -> None:
        self._container = container
        self.ttl_seconds = ttl_seconds

    async def write(self, record: SessionRecord, chunk: int, messages: list[Message]) -> None:
        with store_errors():
            await self._container.create_item(
                items.archive_chunk(record, chunk, messages, self.ttl_seconds), no_response=True
            )

    async def read(self, record: SessionRecord, chunk: int) -> list[Message] | None:
        partition = items.item_id(record.id)
        with store_errors():
            try:
                item = await self._container.read_item(
                    items.checked_path(record.archive.chunk_id(partition, chunk)),
                    partition_key=items.partition_key(record.user_id, partition),
                )
            except cosmos_errors.CosmosResourceNotFoundError:
                return None
        return [Message.from_dict(m) for m in item["messages"]]

    async def renew(self, record: SessionRecord) -> None:
        """Archive chunks are written once, so their ``ttl`` is renewed (a small patch each) whenever
        half of it has passed since the last renewal."""
        ttl, archive = self.ttl_seconds, record.archive
        if ttl is None or not archive.starts or time.time() - archive.touched_at < ttl / 2:
            return
        partition = items.item_id(record.id)
        with store_errors():
            for chunk in range(len(archive.starts)):
                with contextlib.suppress(cosmos_errors.CosmosResourceNotFoundError):
                    await self._container.patch_item(
                        items.checked_path(archive.chunk_id(partition, chunk)),
                        partition_key=items.partition_key(record.user_id, partition),
                        patch_operations=[{"op": "set", "path": "/ttl", "value": ttl}],
                        no_response=True,
                    )
        archive.touched_at = time.time()
