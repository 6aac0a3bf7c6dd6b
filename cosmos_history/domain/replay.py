"""Replaying a retried request: the turn its ``Idempotency-Key`` already made, from the session and the cache."""

from __future__ import annotations

from cosmos_history.domain.errors import IdempotencyKeyReusedError, IdempotentResultGoneError
from cosmos_history.domain.ports import ReplayCache
from cosmos_history.domain.records import SessionRecord, key_digest
from cosmos_history.domain.result_codec import UnknownResultVersionError, decode
from cosmos_history.domain.results import TurnResult


async def replay(
    record: SessionRecord, replays: ReplayCache, user_id: str, key: str, fingerprint: str
) -> TurnResult | None:
    """The stored result of the turn this key already made, or ``None`` when it made none (run it now).

    Raises:
        IdempotencyKeyReusedError: the key's turn was made by a different request.
        IdempotentResultGoneError: the key's turn is in the session but its cached answer expired.
    """
    committed = record.committed_key(key_digest(key))
    if committed is None:
        return None
    if committed.fingerprint != fingerprint:
        raise IdempotencyKeyReusedError("This Idempotency-Key was already used with a different request body.")
    stored = await replays.find(record.id, user_id, committed.key_hash, turn=committed.turn)
    try:
        if stored is not None:
            return decode(stored)
    except UnknownResultVersionError:
        pass  # stored by a newer version of the app (a rolling deployment): as good as gone for this one
    raise IdempotentResultGoneError(
        f"This request was already applied as turn {committed.turn}; its answer is no longer kept. "
        "Read the session to see it."
    )
