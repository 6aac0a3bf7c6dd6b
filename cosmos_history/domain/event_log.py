"""The durable event log of a streamed turn: its events, numbered and stored in batches while it runs.

:class:`TurnRecorder` is one more :class:`~cosmos_history.domain.events.EventSink` of a streamed turn. It
never waits for storage while the turn streams: an event only joins a buffer, which a task of its own
writes as one batch item every ``flush_seconds`` (and once more at the end), so the live reader gets each
event at once. The same task reads the turn's record each beat, so a cancel asked on another instance
(a flag on the record) reaches the running turn. Extra requests per streamed turn: two record writes, one
batch write per beat that has new events, one record read per beat (see the README's "Durable turns").

The first record write goes out alongside the model call instead of before it (it would otherwise add a
Cosmos DB round trip to the time to first token): the turn's stream, and so its address, goes out only once
the record is stored (:meth:`TurnRecorder.stored`), and a write that fails fails the turn before its stream.
Where the model client says when its request has gone out (``TurnStarted.request_signalled``: the app's OpenAI
clients), the write starts then, not as the turn starts: its CPU (the Cosmos DB SDK's request, 1-2 ms) ran
between the model request's headers and its body, and the model started later by as much. It starts anyway
with the model's first update, or as the turn ends, if no signal came before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from cosmos_history.domain.errors import TurnCancelledError
from cosmos_history.domain.events import (
    ApprovalRequired,
    TextDelta,
    ToolCalled,
    ToolResult,
    TurnCompleted,
    TurnEvent,
    TurnFailed,
    TurnStarted,
    shown,
    when_model_request_sent,
)
from cosmos_history.domain.turn_records import EventBatch, StoredEvent, TurnLog, TurnRecord, error_fields

if TYPE_CHECKING:
    from cosmos_history.domain.cancel import TurnControl

logger = logging.getLogger(__name__)


def stored_event(seq: int, event: TurnEvent) -> StoredEvent | None:
    """``event`` as streams show it (the native API's SSE event name and data; an error's data is its stored
    fields, which each edge renders); ``None`` for unshown events."""
    match event:
        case TextDelta(text=text):
            return StoredEvent(seq, "delta", {"text": text})
        case ToolCalled(id=call_id, name=name, arguments=arguments):
            return StoredEvent(seq, "tool_call", {"id": call_id, "name": name, "arguments": arguments})
        case ToolResult(id=call_id, result=result, status=status):
            return StoredEvent(seq, "tool_result", {"id": call_id, "result": result, "status": status})
        case ApprovalRequired(id=approval_id, name=name, arguments=arguments):
            return StoredEvent(seq, "approval_required", {"id": approval_id, "name": name, "arguments": arguments})
        case TurnCompleted(result=result):
            return StoredEvent(seq, "done", {**result.to_json(), "status": result.status})
        case TurnFailed(error=error):
            return StoredEvent(seq, "error", error_fields(error))
    return None


class TurnRecorder:
    """Stores one streamed turn's record and events (see the module docstring)."""

    def __init__(
        self,
        log: TurnLog,
        *,
        user_id: str,
        control: TurnControl,
        flush_seconds: float,
        deadline_seconds: float,
        queued: TurnRecord | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._log = log
        self._user_id = user_id
        self._control = control
        self._flush_seconds = flush_seconds
        self._deadline_seconds = deadline_seconds
        self._clock = clock
        self._queued = queued
        self._record: TurnRecord | None = None
        self._buffer: list[StoredEvent] = []
        self._seq = 0
        self._stop = asyncio.Event()
        self._beats: asyncio.Task[None] | None = None
        self._unwritten: TurnRecord | None = None
        """The record made as the turn started, until its first write starts (see the module docstring)."""
        self._writing: asyncio.Task[BaseException | None] | None = None

    @property
    def record(self) -> TurnRecord | None:
        return self._record

    async def publish(self, event: TurnEvent) -> None:
        if isinstance(event, TurnStarted):
            self._start(event)
            return
        self._write_record()  # the model answered, or the turn ended, before its request was signalled
        if self._writing is not None and not self._writing.done():
            await asyncio.wait([self._writing])  # events follow their record (a failed write: see stored())
        if self._record is None or not shown(event):
            return  # a replayed turn stores nothing again; unshown events are not numbered
        self._seq += 1
        stored = stored_event(self._seq, event)
        if stored is not None:
            self._buffer.append(stored)
        if isinstance(event, TurnCompleted | TurnFailed):
            await self._finish(event)

    async def stored(self) -> None:
        """Wait until the turn's record is stored, so the turn is addressable (and cancellable) from any
        instance before its stream starts; raises what storing it raised."""
        self._write_record()
        if self._writing is not None and (error := await asyncio.shield(self._writing)) is not None:
            raise error

    def _start(self, event: TurnStarted) -> None:
        """Start writing the record while the turn goes on to its model call (see the module docstring)."""
        if event.replayed:
            return
        deadline = round(self._clock() + self._deadline_seconds, 3)
        queued = self._queued
        if queued is not None and queued.turn == event.turn:  # a queued turn starts: same record, same attempt
            record = queued.ended("in_progress", mode=event.mode, agent=event.agent, streamed=True, deadline=deadline)
        else:
            record = TurnRecord(
                event.session_id,
                self._user_id,
                event.turn,
                "in_progress",
                mode=event.mode,
                agent=event.agent,
                streamed=True,
                deadline=deadline,
            )
        self._unwritten = record
        if event.request_signalled:
            when_model_request_sent(self._write_record)
        else:
            self._write_record()

    def _write_record(self) -> None:
        """Start the record's first write, unless it started already (or the turn made no record)."""
        if self._unwritten is not None:
            record, self._unwritten = self._unwritten, None
            self._writing = asyncio.create_task(self._write_first(record), name="turn record")

    async def _write_first(self, record: TurnRecord) -> BaseException | None:
        """The record's first write; its error is returned, for :meth:`stored` to raise in the turn."""
        try:
            self._record = await self._log.put(record)
        except Exception as error:
            return error
        self._control.started(self._user_id, record.session_id, record.turn)
        self._beats = asyncio.create_task(self._beat(), name="turn event log")
        return None

    async def _beat(self) -> None:
        """Flush and look for a cancel flag every ``flush_seconds`` until the turn ends."""
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._flush_seconds):
                    await self._stop.wait()
            if self._stop.is_set():
                return
            await self._flush()
            await self._look_for_cancel()

    async def _flush(self) -> None:
        record = self._record
        if record is None or not self._buffer:
            return
        batch = EventBatch(record.batches + 1, tuple(self._buffer))
        try:
            await self._log.append(record, batch)
        except Exception as error:  # an outage: the events stay buffered and go with the next beat
            logger.info("Could not store a batch of turn events: %s", type(error).__name__)
            return
        del self._buffer[: len(batch.events)]
        record.batches, record.last_event = batch.number, batch.last

    async def _look_for_cancel(self) -> None:
        record = self._record
        if record is None or self._control.requested:
            return
        try:
            stored = await self._log.find(record.session_id, record.user_id, record.turn)
        except Exception as error:  # an outage: the next beat looks again
            logger.info("Could not read a turn record: %s", type(error).__name__)
            return
        if stored is not None and stored.attempt == record.attempt and stored.cancel_requested:
            record.cancel_requested = True
            self._control.cancel()

    async def _finish(self, event: TurnCompleted | TurnFailed) -> None:
        record = self._record
        assert record is not None
        self._stop.set()
        if self._beats is not None:
            with contextlib.suppress(Exception):  # a beat's own failure must not fail the turn
                await self._beats
        self._control.ended()
        for _ in range(3):  # the last batch holds the done/error event: a follower ends on it
            await self._flush()
            if not self._buffer:
                break
        match event:
            case TurnCompleted(result=result):
                ended = record.ended(result.status, result=result.to_json())
            case TurnFailed(error=TurnCancelledError() as error):
                ended = record.ended("cancelled", error=error_fields(error))
            case TurnFailed(error=error):
                ended = record.ended("failed", error=error_fields(error))
        try:
            self._record = await self._log.put(ended)
        except Exception as failure:  # the turn itself ended as it did; its record says in_progress until lost
            logger.warning("Could not store how a turn ended: %s", type(failure).__name__)
