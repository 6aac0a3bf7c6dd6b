"""Replays a turn's result for a retried request carrying the same ``Idempotency-Key``.

Results live in small items of their own in the session's partition (never in the
session document: in service mode it must hold no reply text, and in local mode it
should not grow with retry bookkeeping). They expire after ``IDEMPOTENCY_TTL_SECONDS``
(Cosmos DB's ``ttl`` in Azure; ``expiresAt`` is checked on read as well, since the
local server never expires items).

The result is recorded *before* the session is saved, with the turn number it will
produce. A crash between the two writes leaves a result whose turn never landed;
it is recognised (the session has fewer turns) and ignored, so a retry runs the turn
instead of replaying one that did not happen. The other order would risk the worse
failure: a retried request running the model and appending its turn twice.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from typing import Any

from azure.cosmos import exceptions as cosmos_errors
from azure.cosmos.aio import ContainerProxy

from cosmos_history.adapters.cosmos.client import best_effort, store_errors
from cosmos_history.domain.errors import BadRequestError, IdempotencyKeyReusedError

IDEMPOTENCY_TYPE = "idempotency"
_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")


def validate_idempotency_key(key: str) -> None:
    if not _KEY.match(key):
        raise BadRequestError("Idempotency-Key must be 1-200 visible ASCII characters.")


def request_fingerprint(*parts: Any) -> str:
    """A stable hash of what makes two requests "the same" for replay purposes."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class IdempotencyRecords:
    """Stored results of recent turns, by idempotency key, for one container."""

    def __init__(self, container: ContainerProxy, *, ttl_seconds: int) -> None:
        self._container = container
        self.ttl_seconds = ttl_seconds

    @staticmethod
    def item_id(session_id: str, key: str) -> str:
        return f"{session_id}:idem:{hashlib.sha256(key.encode()).hexdigest()[:40]}"

    async def find(
        self, session_id: str, user_id: str, key: str, fingerprint: str, *, committed_turns: int
    ) -> dict[str, Any] | None:
        """The stored result for ``key``, or ``None``; a different request under the same key is an error."""
        with store_errors():
            try:
                item = await self._container.read_item(self.item_id(session_id, key), partition_key=session_id)
            except cosmos_errors.CosmosResourceNotFoundError:
                return None
        if item.get("userId") != user_id:
            return None  # left over from a deleted session whose id someone else now uses
        if float(item.get("expiresAt", 0)) < time.time() or int(item.get("turn", 0)) > committed_turns:
            return None  # expired, or recorded by a turn whose session save never landed
        if item.get("fingerprint") != fingerprint:
            raise IdempotencyKeyReusedError("This Idempotency-Key was already used with a different request body.")
        result: dict[str, Any] = item["result"]
        return result

    async def record(
        self, session_id: str, user_id: str, key: str, fingerprint: str, *, turn: int, result: dict[str, Any]
    ) -> None:
        item = {
            "id": self.item_id(session_id, key),
            "sessionId": session_id,
            "type": IDEMPOTENCY_TYPE,
            "userId": user_id,
            "fingerprint": fingerprint,
            "turn": turn,
            "result": result,
            "expiresAt": round(time.time() + self.ttl_seconds, 3),
            "ttl": self.ttl_seconds,
        }
        with store_errors():
            await self._container.upsert_item(item)

    async def discard(self, session_id: str, key: str) -> None:
        """Remove a result whose session save failed (best effort: a stale one is ignored anyway)."""
        with best_effort("discard an idempotency result"):
            await self._container.delete_item(self.item_id(session_id, key), partition_key=session_id)
