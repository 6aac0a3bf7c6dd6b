"""Archive chunks of a session's oldest messages, as items in the session's partition
(see :mod:`cosmos_history.domain.archive`)."""

from __future__ import annotations

import contextlib
import json
import time
from collections import OrderedDict
from typing import Any

from agent_framework import Message
from azure.cosmos import exceptions as cosmos_errors
from azure.cosmos.aio import ContainerProxy

from cosmos_history.adapters.cosmos import items
from cosmos_history.adapters.cosmos.client import store_errors
from cosmos_history.domain.records import SessionRecord


class RecentChunks:
    """The archive chunks this process committed last, by user and item id, as the JSON they were written as.

    A chunk is created once, under an id with a token of its own write, and only its ``ttl`` changes after
    that, so what is kept for an id is what Cosmos DB holds for it. The turn after an archiving turn
    summarises the chunk that turn moved out; on the instance that committed it, that costs no read (another
    instance reads it). Only chunks whose document committed are kept: an unlisted chunk is never asked for.
    """

    def __init__(self, max_bytes: int = 4_000_000) -> None:
        self.max_bytes = max_bytes
        self._kept: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._bytes = 0

    def remember(self, user_id: str, chunk_items: list[dict[str, Any]]) -> None:
        for item in chunk_items:
            text = json.dumps(item["messages"])
            if len(text) > self.max_bytes:
                continue
            self._kept[(user_id, item["id"])] = text
            self._bytes += len(text)
        while self._bytes > self.max_bytes:
            _, dropped = self._kept.popitem(last=False)
            self._bytes -= len(dropped)

    def recall(self, user_id: str, item_id: str) -> list[Message] | None:
        text = self._kept.get((user_id, item_id))
        return None if text is None else [Message.from_dict(m) for m in json.loads(text)]


class CosmosArchive:
    """Archive chunks as items in the session's partition; retention slides with the session's activity.
    ``recent`` (shared by every user's archive of a process) serves the chunks this process just committed."""

    def __init__(
        self, container: ContainerProxy, *, ttl_seconds: int | None, recent: RecentChunks | None = None
    ) -> None:
        self._container = container
        self.ttl_seconds = ttl_seconds
        self.recent = recent if recent is not None else RecentChunks()

    async def write(self, record: SessionRecord, chunk: int, messages: list[Message]) -> None:
        with store_errors():
            await self._container.create_item(
                items.archive_chunk(record, chunk, messages, self.ttl_seconds), no_response=True
            )

    async def read(self, record: SessionRecord, chunk: int) -> list[Message] | None:
        partition = items.item_id(record.id)
        chunk_id = record.archive.chunk_id(partition, chunk)
        recalled = self.recent.recall(record.user_id, chunk_id)
        if recalled is not None:
            return recalled
        with store_errors():
            try:
                item = await self._container.read_item(
                    items.checked_path(chunk_id),
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
