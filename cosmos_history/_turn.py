"""One conversation turn: load the session, run the agent once, save it conditionally.

The store and agents are parameters, so unit tests pass fakes and integration
tests the real Cosmos store. Nothing is written unless the model succeeded, and
the write is conditional on the etag read at the start: two turns racing on one
session cannot both land, so no turn silently overwrites another. A lease (when
given) rejects the second of two racing turns before it pays for a model call.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from ._agents import Agents
from ._errors import (
    ModeConflictError,
    ModelCallError,
    SessionConflictError,
    SessionExistsError,
    ValidationError,
)
from ._idempotency import IdempotencyRecords, request_fingerprint
from ._lease import TurnLease
from ._settings import HistoryMode
from ._store import RecordStore, SessionRecord, utc_now

TITLE_CHARS = 60


@dataclass(frozen=True)
class TurnResult:
    session_id: str
    reply: str
    turn: int
    mode: HistoryMode
    replayed: bool = field(default=False, compare=False)
    """True when an Idempotency-Key retry got the stored result of an earlier attempt."""

    def to_json(self) -> dict[str, Any]:
        return {"sessionId": self.session_id, "reply": self.reply, "turn": self.turn, "mode": self.mode}

    @classmethod
    def from_json(cls, value: dict[str, Any], *, replayed: bool = False) -> TurnResult:
        return cls(value["sessionId"], value["reply"], value["turn"], value["mode"], replayed=replayed)


@dataclass(frozen=True)
class TurnGuards:
    """The optional protections of a turn; all off in unit tests of the bare turn logic."""

    lease: TurnLease | None = None
    replays: IdempotencyRecords | None = None
    model_timeout_seconds: float | None = None


NO_GUARDS = TurnGuards()


async def run_turn(
    store: RecordStore,
    agents: Agents,
    *,
    session_id: str,
    message: str,
    mode: HistoryMode | None = None,
    idempotency_key: str | None = None,
    guards: TurnGuards = NO_GUARDS,
) -> TurnResult:
    """Run exactly one agent turn on ``session_id``, creating the session if it does not exist.

    Raises:
        ModeConflictError: ``mode`` differs from the existing session's mode.
        TurnInProgressError: another turn holds the session's lease (no model call was made).
        ModelCallError: the model failed, timed out or returned nothing; the stored session is unchanged.
        SessionConflictError: another request changed the session during this turn.
    """
    record = await load_or_new(store, session_id, mode)
    fingerprint = request_fingerprint(message, mode)
    if idempotency_key and guards.replays and record.etag is not None:
        stored = await guards.replays.find(session_id, idempotency_key, fingerprint, committed_turns=record.turns)
        if stored is not None:
            return TurnResult.from_json(stored, replayed=True)

    lease_etag = None
    if guards.lease is not None:
        known = record.lease_etag if record.etag is not None else None
        lease_etag = await guards.lease.claim(session_id, store.user_id, known_etag=known)
    try:
        reply = await _call_model(agents, record, message, guards.model_timeout_seconds)
        previous_etag = record.etag
        record.turns += 1
        record.updated_at = utc_now()
        record.lease_etag = lease_etag
        if record.title is None and record.mode == "local":
            record.title = title_from(message)
        result = TurnResult(session_id, reply, record.turns, record.mode)
        if idempotency_key and guards.replays:
            await guards.replays.record(
                session_id, store.user_id, idempotency_key, fingerprint, turn=record.turns, result=result.to_json()
            )
        try:
            await _save(store, record, previous_etag)
        except BaseException:
            if idempotency_key and guards.replays:
                await guards.replays.discard(session_id, idempotency_key)
            raise
        return result
    except BaseException:
        if guards.lease is not None and lease_etag is not None:
            await guards.lease.release(session_id, store.user_id, lease_etag)
        raise


async def load_or_new(store: RecordStore, session_id: str, mode: HistoryMode | None) -> SessionRecord:
    """The stored session, or a new (unsaved) one; refuses to switch an existing session's mode."""
    record = await store.load(session_id)
    if record is None:
        return SessionRecord.new(session_id, user_id=store.user_id, mode=mode or store.default_mode)
    if mode is not None and mode != record.mode:
        raise ModeConflictError(
            f"Session {session_id!r} uses history mode {record.mode!r}; a session's mode never changes."
        )
    return record


async def _call_model(agents: Agents, record: SessionRecord, message: str, timeout_seconds: float | None) -> str:
    agent = agent_for(agents, record.mode)
    try:
        async with asyncio.timeout(timeout_seconds):
            response = await agent.run(message, session=record.session)
    except TimeoutError:
        raise ModelCallError("The model did not answer in time; the session was left unchanged.") from None
    except Exception as error:  # any failure of the model call: nothing has been written
        raise ModelCallError("The model call failed; the session was left unchanged. Retry later.") from error
    if not response.text.strip():
        raise ModelCallError("The model returned no text; the session was left unchanged.")
    return response.text


async def _save(store: RecordStore, record: SessionRecord, previous_etag: str | None) -> SessionRecord:
    try:
        return await store.save(record, etag=previous_etag)
    except SessionExistsError:
        # A first turn raced another request creating the same id. If that was another user,
        # load raises SessionNotFoundError: their session must look exactly like a missing one.
        await store.load(record.id)
        raise SessionConflictError(
            "The session was created by another request at the same time. Retry.", retry_after=1
        ) from None


def agent_for(agents: Agents, mode: HistoryMode) -> Any:
    """The agent for ``mode``, or a clear error when the configured model API cannot serve it."""
    try:
        return agents[mode]
    except KeyError:
        raise ValidationError("History mode 'service' needs MODEL_API=responses on this deployment.") from None


def title_from(message: str) -> str:
    """The first words of the first message, cut at a word boundary (local mode only: service
    mode documents must hold no message text)."""
    words = " ".join(message.split())
    if len(words) <= TITLE_CHARS:
        return words
    cut = words[:TITLE_CHARS].rsplit(" ", 1)[0] or words[:TITLE_CHARS]
    return cut + "…"
