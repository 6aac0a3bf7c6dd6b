"""Reading a turn, following its events, and cancelling it: from any instance, through the stored records.

A turn with a record (streamed or queued) answers from it. A plain turn keeps none: it happened when the
session counts it, so its status comes from the session document (``completed``, or ``awaiting_approval``
for the latest turn while approvals are pending); its reply lives in the history (filled in for the
latest turn of a local-mode session) and ``recorded`` is ``false``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from agent_framework import Message

from cosmos_history.domain.approvals import pending_approvals
from cosmos_history.domain.archive import history_messages
from cosmos_history.domain.cancel import CANCELLED
from cosmos_history.domain.errors import (
    EventsGoneError,
    SessionNotFoundError,
    TurnCancelledError,
    TurnFinishedError,
    TurnLostError,
    TurnNotFoundError,
)
from cosmos_history.domain.ports import SessionRepository
from cosmos_history.domain.records import SessionRecord
from cosmos_history.domain.turn_records import StoredEvent, TurnLog, TurnRecord, error_fields

FOLLOW_SECONDS = 220.0
"""Longest one follow request stays open (under the Functions front end's 230 s): the client then
reconnects with its ``Last-Event-ID`` and goes on where it stopped."""
CANCEL_WAIT_SECONDS = 10.0
"""Longest a cancel request waits for the turn to stop before answering 202 (the flag stays set)."""
LOST = "The turn's process stopped before the turn ended; nothing of it was saved. Send the message again."
CANCEL_ATTEMPTS = 5
"""Conditional writes a cancel retries when the record changes under it (the turn ending meanwhile)."""


async def read_turn(store: SessionRepository, log: TurnLog | None, session_id: str, turn: int) -> dict[str, Any]:
    """The turn answer's shape plus ``status`` for the caller's turn ``turn``.

    Raises:
        SessionNotFoundError: the caller has no such session. TurnNotFoundError: it has no such turn.
    """
    record = await log.find(session_id, store.user_id, turn) if log is not None and turn > 0 else None
    now = time.time()
    if record is not None and record.status != "failed" and not record.lost(now):
        return record.answer_json(now)
    # A record that failed (or was lost) describes an attempt that saved nothing: a later plain turn may
    # have taken its number, and then the session knows better.
    session = await store.load(session_id)
    if record is not None and (session is None or turn > session.turns):
        return record.answer_json(now)
    if session is None:
        raise SessionNotFoundError()
    if not 1 <= turn <= session.turns:
        raise TurnNotFoundError(_no_turn(session, turn))
    return plain_turn_json(session, turn)


def plain_turn_json(session: SessionRecord, turn: int) -> dict[str, Any]:
    """A turn that kept no record, as far as the session document knows it."""
    latest = turn == session.turns
    waiting = pending_approvals(session.session) if latest else []
    reply = None
    if latest and not waiting and session.mode == "local":
        recent = history_messages(session.session.state)
        reply = _reply_of(recent[-1]) if recent else None
    return {
        "sessionId": session.id,
        "reply": reply,
        "turn": turn,
        "mode": session.mode,
        "agent": session.agent,
        "toolCalls": [],
        "approvals": [approval.to_json() for approval in waiting],
        "status": "awaiting_approval" if waiting else "completed",
        "reason": None,
        "recorded": False,
    }


def _reply_of(message: Message) -> str | None:
    return message.text if message.role == "assistant" else None


def _no_turn(session: SessionRecord, turn: int) -> str:
    return f"Session {session.id!r} has {session.turns} saved turn(s) and no record of turn {turn}."


async def streamed_record(store: SessionRepository, log: TurnLog | None, session_id: str, turn: int) -> TurnRecord:
    """The record of a turn whose events are stored, checked before a stream of them starts.

    Raises:
        SessionNotFoundError, TurnNotFoundError: no such session, or no stored events for this turn (only
            streamed and background turns store them). EventsGoneError: their retention has passed.
    """
    record = await log.find(session_id, store.user_id, turn) if log is not None and turn > 0 else None
    if record is None or not (record.streamed or record.status == "queued"):
        session = await store.load(session_id)
        if session is None:
            raise SessionNotFoundError()
        if 1 <= turn <= session.turns:
            raise TurnNotFoundError(f"Turn {turn} stored no events: only streamed and background turns do.")
        raise TurnNotFoundError(_no_turn(session, turn))
    assert log is not None
    if record.finished and (record.batches == 0 or await log.batch(record, 1) is None):
        raise EventsGoneError(
            f"The events of turn {turn} are past their retention; GET the turn itself for its answer.",
            extensions={"turn": turn},
        )
    return record


async def follow(
    log: TurnLog, record: TurnRecord, *, after: int, poll_seconds: float, clock: Callable[[], float] = time.time
) -> AsyncIterator[StoredEvent]:
    """``record``'s events after ``after`` in order, following the turn until its ``done`` or ``error`` event
    (read from storage, so the turn may run on any instance). Ends without one only after
    :data:`FOLLOW_SECONDS` (the client resumes from its last id) or when the turn was replaced by a new attempt.
    """
    number, last, until = 1, 0, clock() + FOLLOW_SECONDS
    while True:
        batch = await log.batch(record, number)
        if batch is not None:
            for event in batch.events:
                last = event.seq
                if event.seq > after:
                    yield event
                if event.terminal:
                    return
            number += 1
            continue
        current = await log.find(record.session_id, record.user_id, record.turn)
        if current is None or current.attempt != record.attempt:
            return  # deleted with its session, or a new attempt took the turn's number
        if current.finished:
            if number > current.batches:
                return
            if await log.batch(record, number) is not None:
                continue  # written between the two reads above, as the turn ended
            gone = EventsGoneError(f"Some events of turn {record.turn} are past their retention.")
            yield StoredEvent(max(last, after) + 1, "error", error_fields(gone))
            return
        if current.lost(clock()):
            yield StoredEvent(max(last, after) + 1, "error", error_fields(TurnLostError(LOST)))
            return
        if clock() >= until:
            return
        await asyncio.sleep(poll_seconds)


async def cancel(
    store: SessionRepository,
    log: TurnLog | None,
    session_id: str,
    turn: int,
    *,
    stop_here: Callable[[], bool],
    poll_seconds: float,
    clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """Cancel the caller's queued or running turn: a queued one at once; a running one through the runtime
    when it runs here (``stop_here``) and through the flag on its record for any other instance, waiting up
    to :data:`CANCEL_WAIT_SECONDS` for it to stop. Returns the turn; ``status`` is still ``in_progress``
    when it has not stopped by then (its flag stays set: it stops at its next beat).

    Raises:
        SessionNotFoundError, TurnNotFoundError: no such turn (a plain turn keeps no record: it cannot be
            cancelled). TurnFinishedError: it had already ended.
    """
    for _ in range(CANCEL_ATTEMPTS):
        record = await log.find(session_id, store.user_id, turn) if log is not None and turn > 0 else None
        if record is None:
            session = await store.load(session_id)
            if session is None:
                raise SessionNotFoundError()
            if 1 <= turn <= session.turns:
                raise TurnFinishedError(f"Turn {turn} has ended.")
            raise TurnNotFoundError(_no_turn(session, turn) + " Only streamed and background turns can be cancelled.")
        assert log is not None
        if record.finished or record.lost(clock()):
            raise TurnFinishedError(f"Turn {turn} has ended ({record.answer_json(clock())['status']}).")
        if record.status == "queued":
            stopped = record.ended("cancelled", cancel_requested=True, error=_cancelled_problem())
            if await log.replace(stopped) is not None:
                return stopped.answer_json(clock())
            continue
        stop_here()
        if record.cancel_requested or await log.replace(record.ended("in_progress", cancel_requested=True)):
            return await _wait_until_stopped(log, record, poll_seconds, clock)
    raise TurnFinishedError(f"Turn {turn} kept changing while it was cancelled; read it again.")


def _cancelled_problem() -> dict[str, Any]:
    return error_fields(TurnCancelledError(CANCELLED))


async def _wait_until_stopped(
    log: TurnLog, record: TurnRecord, poll_seconds: float, clock: Callable[[], float]
) -> dict[str, Any]:
    until = clock() + CANCEL_WAIT_SECONDS
    current: TurnRecord | None = record
    while current is not None and not current.finished and clock() < until:
        await asyncio.sleep(poll_seconds)
        current = await log.find(record.session_id, record.user_id, record.turn)
    current = current or record
    return current.answer_json(clock())
