"""A cache of turn results for retried requests carrying the same ``Idempotency-Key``.

Whether a key's turn happened is decided by the session document alone: the turn's commit holds
the key (hashed, with the request's fingerprint and the turn number) in the session document
(:meth:`SessionRecord.commit_key`), and this item with the answer to replay, in one transactional
batch (:mod:`.commit`): a committed key always finds its result (until it expires),
and a turn that did not land leaves no item behind. Results live in items of their own (not
in the session document: in service mode it must hold no reply text) and expire after
``IDEMPOTENCY_TTL_SECONDS`` (Cosmos DB's ``ttl``; ``expiresAt`` is checked on read as well, since
the local server never expires items).
"""

from __future__ import annotations

import time
from typing import Any

from azure.cosmos import exceptions as cosmos_errors
from azure.cosmos.aio import ContainerProxy

from cosmos_history.adapters.cosmos import items
from cosmos_history.adapters.cosmos.client import store_errors


class CosmosReplayCache:
    """Stored results of recent turns, by hashed idempotency key, for one container."""

    def __init__(self, container: ContainerProxy, *, ttl_seconds: int) -> None:
        self._container = container
        self.ttl_seconds = ttl_seconds

    async def find(self, session_id: str, user_id: str, key_hash: str, *, turn: int) -> dict[str, Any] | None:
        """The cached result of ``turn``, or ``None`` (expired, or written for another turn or user)."""
        partition = items.item_id(session_id)
        with store_errors():
            try:
                item = await self._container.read_item(
                    items.replay_id(partition, key_hash), partition_key=items.partition_key(user_id, partition)
                )
            except cosmos_errors.CosmosResourceNotFoundError:
                return None
        if item.get("userId") != user_id or int(item.get("turn", 0)) != turn:
            return None
        if float(item.get("expiresAt", 0)) < time.time():
            return None
        result: dict[str, Any] = item["result"]
        return result

    async def record(self, session_id: str, user_id: str, key_hash: str, *, turn: int, result: dict[str, Any]) -> None:
        partition = items.item_id(session_id)
        item = items.replay_item(
            partition, user_id, key_hash, turn=turn, result=result, ttl=self.ttl_seconds, now=time.time()
        )
        with store_errors():
            await self._container.upsert_item(item)
