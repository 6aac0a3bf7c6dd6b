"""The events of a workflow run: a closed set of typed, JSON-safe events, stored in batches in the run's partition.

A run's job reads the framework's stream (``workflow.run(..., stream=True)``) through :class:`RunJournal`, which
turns each framework event into the run's own events (:data:`RUN_EVENTS`) and keeps the run's outputs: an
agent's streamed updates fold into one output per agent step, the shape a non-streamed run gives. Events join a
buffer that a task of the journal writes as one batch item every ``flush_seconds``; the journal also writes it
before every checkpoint, and puts the outputs and the log's position into that checkpoint's metadata, so a
run resumed after its worker died has every output of the supersteps its checkpoint covers exactly once (the
supersteps after it run again and yield theirs again).

Ids: no one reads a run's events live from its worker (readers follow the stored batches, on any instance),
so an event gets its number only when its batch is written: the next after the last stored one. A job that
starts looks past the position it knows (record, checkpoint) for batches a killed job wrote, and a batch
number taken meanwhile (a create that conflicts) moves the journal past it: ids only grow across the jobs and
attempts of a run, and no id a reader may have seen is used again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Literal, Protocol

from agent_framework import AgentResponse, AgentResponseUpdate, WorkflowCheckpoint, WorkflowEvent

from cosmos_history.domain.errors import EventsGoneError
from cosmos_history.domain.turn_records import EventBatch, StoredEvent, error_fields
from cosmos_history.domain.workflow_requests import output_json, pending_request
from cosmos_history.domain.workflow_runs import WorkflowRun, WorkflowRunStore, event_position

logger = logging.getLogger(__name__)


class RunEventsGoneError(EventsGoneError):
    title = "Workflow run events expired"


RunEventName = Literal[
    "run_status", "superstep_started", "superstep_completed", "step_started", "step_completed", "step_failed",
    "output", "request", "handoff",
]  # fmt: skip
RUN_EVENTS: tuple[RunEventName, ...] = (
    "run_status",  # {"status", "resumed"?}: in_progress when a job starts; how it stopped when it stops
    "superstep_started",  # {"superstep"}
    "superstep_completed",  # {"superstep"}: its checkpoint is saved
    "step_started",  # {"executor"}: an executor (an agent's step too) was invoked
    "step_completed",  # {"executor", "text"}: ``text`` is an agent's answer (None for other executors)
    "step_failed",  # {"executor", "error"}: the exception's type, never its text
    "output",  # {"executor", "output"}: one output of the run, as GET /api/workflows/runs/{id} shows it
    "request",  # {"id", "type", "data"}: a request for input the run will wait on
    "handoff",  # {"from", "to"}: a handoff between agents
)
"""Every event a run stream carries (closed set); a follower's stream may end with ``error`` (events gone)."""
STOPPED = ("awaiting_input", "completed", "failed", "cancelled")
"""Statuses a follower stops at: no job runs the run then (a later answer starts a new one)."""
FOLLOW_SECONDS = 220.0
"""Longest one follow request stays open (under the Functions front end's 230 s), as for turns."""
OUTPUTS_KEY = "cosmos_history.outputs"
EVENTS_KEY = "cosmos_history.events"
"""Checkpoint metadata: the run's outputs so far, and the event log's position ``[batches, last id]``."""
FLUSH_TRIES = 3
PROBE_LIMIT = 10_000
"""Most batches a starting job looks past its known position for (one killed job's batches, in practice)."""


class RunEventLog(Protocol):
    """The stored event batches of workflow runs, in each run's partition (expiring after the event retention)."""

    event_ttl_seconds: int

    async def append(self, run_id: str, user_id: str, batch: EventBatch) -> bool:
        """Create batch ``batch.number`` of the run; ``False`` when that number is taken already."""
        ...

    async def batch(self, run_id: str, user_id: str, number: int) -> EventBatch | None:
        """Batch ``number`` (1, 2, ...) of the run; ``None`` when not written (or expired)."""
        ...


def checkpoint_outputs(checkpoint: WorkflowCheckpoint | None, recorded: Sequence[Any]) -> tuple[Any, ...]:
    """The run's outputs as of ``checkpoint`` (``recorded``, the run record's, for a checkpoint without them)."""
    saved = checkpoint.metadata.get(OUTPUTS_KEY) if checkpoint is not None else None
    return tuple(saved) if isinstance(saved, list) else tuple(recorded)


def checkpoint_position(checkpoint: WorkflowCheckpoint | None) -> tuple[int, int]:
    """Where the event log stood when ``checkpoint`` was saved."""
    return event_position(checkpoint.metadata.get(EVENTS_KEY) if checkpoint is not None else None)


class RunJournal:
    """One job's view of its run's events and outputs (see the module docstring)."""

    def __init__(
        self,
        log: RunEventLog | None,
        run: WorkflowRun,
        *,
        outputs: Sequence[Any],
        position: tuple[int, int],
        flush_seconds: float,
    ) -> None:
        self._log = log
        self._run = run
        self.outputs: list[Any] = list(outputs)
        self._batches, self._last = position
        self._flush_seconds = flush_seconds
        self._buffer: list[tuple[str, Any]] = []
        self._updates: dict[tuple[str, bool], list[AgentResponseUpdate]] = {}
        """Streamed updates not folded yet, by executor and whether they are outputs (else intermediate)."""
        self._lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._beats: asyncio.Task[None] | None = None

    @property
    def position(self) -> tuple[int, int]:
        """``(batches, last id)`` stored so far."""
        return self._batches, self._last

    async def open(self, *, resumed: bool) -> None:
        """A job starts: find where the log ends and start the beat."""
        await self.find_end()
        self.add("run_status", {"status": "in_progress", "resumed": resumed})
        self._beats = asyncio.create_task(self._beat(), name="workflow run events")

    async def find_end(self) -> None:
        """Move past the batches stored after the known position (a killed job's, a running job's)."""
        try:
            if self._log is not None:
                await self._skip_taken()
        except Exception as error:  # an outage: a conflicting create finds the end later
            logger.info("Could not read a workflow run's events: %s", type(error).__name__)

    def add(self, name: RunEventName, data: dict[str, Any]) -> None:
        self._buffer.append((name, data))

    async def follow(self, stream: Any) -> Any:
        """Read the framework's event stream to its end, recording it; returns its final result."""
        async for event in stream:
            self.read(event)
        return await stream.get_final_response()

    def read(self, event: WorkflowEvent[Any]) -> None:
        """Record one framework event as the run's events (most framework events have none)."""
        kind, data, executor = event.type, event.data, event.executor_id
        if kind in ("output", "intermediate") and isinstance(data, AgentResponseUpdate):
            self._updates.setdefault((executor or "", kind == "output"), []).append(data)
        elif kind == "output":
            self._output(executor, output_json(data))
        elif kind == "superstep_started":
            self.add("superstep_started", {"superstep": event.iteration})
        elif kind == "superstep_completed":
            self.fold()
            self.add("superstep_completed", {"superstep": event.iteration})
        elif kind == "executor_invoked":
            self.add("step_started", {"executor": executor})
        elif kind == "executor_completed":
            said = [self._fold((executor or "", final)) for final in (True, False)]
            text = said[0] or said[1] or _agent_text(data)
            self.add("step_completed", {"executor": executor, "text": text})
        elif kind == "executor_failed":
            for final in (True, False):
                self._updates.pop((executor or "", final), None)
            error = event.details.error_type if event.details is not None else "Exception"
            self.add("step_failed", {"executor": executor, "error": error})
        elif kind == "request_info":
            request = pending_request(event)
            self.add("request", {"id": request.id, "type": request.type, "data": request.data})
        elif kind == "handoff_sent":
            self.add("handoff", {"from": getattr(data, "source", None), "to": getattr(data, "target", None)})

    def fold(self) -> None:
        """Every agent's streamed updates so far as one answer each (before a checkpoint: it must hold them)."""
        for key in list(self._updates):
            self._fold(key)

    def _fold(self, key: tuple[str, bool]) -> str | None:
        """One executor's streamed updates as one answer: an output of the run when they were its outputs (an
        ``intermediate`` executor's are not); returns the answer's text."""
        updates = self._updates.pop(key, None)
        if not updates:
            return None
        response = AgentResponse.from_updates(updates)
        if key[1]:
            self._output(key[0], output_json(response))
        return response.text

    def _output(self, executor: str | None, output: Any) -> None:
        self.outputs.append(output)
        self.add("output", {"executor": executor, "output": output})

    async def before_checkpoint(self, checkpoint: WorkflowCheckpoint) -> None:
        """Store the events so far and give the checkpoint the outputs and the log's position."""
        self.fold()
        await self.flush()
        checkpoint.metadata[OUTPUTS_KEY] = list(self.outputs)
        checkpoint.metadata[EVENTS_KEY] = [self._batches, self._last]

    async def flush(self) -> bool:
        """Write the buffered events as the next batch; ``False`` when they stay buffered (an outage)."""
        if self._log is None:  # a run without an event log keeps its outputs only
            self._buffer.clear()
            return True
        async with self._lock:
            for _ in range(FLUSH_TRIES):
                if not self._buffer:
                    return True
                pending = self._buffer[:]
                events = tuple(StoredEvent(self._last + i, name, data) for i, (name, data) in enumerate(pending, 1))
                batch = EventBatch(self._batches + 1, events)
                try:
                    written = await self._log.append(self._run.id, self._run.user_id, batch)
                    if not written:  # another job of this run took the number: go past its batches
                        await self._skip_taken()
                        continue
                except Exception as error:  # an outage: the events go with the next beat
                    logger.info("Could not store a batch of workflow run events: %s", type(error).__name__)
                    return False
                del self._buffer[: len(pending)]
                self._batches, self._last = batch.number, batch.last
            return not self._buffer

    async def _skip_taken(self) -> None:
        assert self._log is not None
        for _ in range(PROBE_LIMIT):
            found = await self._log.batch(self._run.id, self._run.user_id, self._batches + 1)
            if found is None:
                return
            self._batches, self._last = found.number, max(self._last, found.last)

    async def _beat(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._flush_seconds):
                    await self._stop.wait()
            if not self._stop.is_set():
                await self.flush()

    async def close(self, status: str | None = None, **fields: Any) -> None:
        """Stop the beat and store what is left, ending with ``run_status`` ``status`` when given: written
        before the run's record says how it stopped, so a follower that sees the record finds the event."""
        self._stop.set()
        if self._beats is not None:
            with contextlib.suppress(Exception):
                await self._beats
        self.fold()
        if status is not None:
            self.add("run_status", {"status": status, **fields})
        for _ in range(FLUSH_TRIES):
            if await self.flush():
                return


def _agent_text(data: Any) -> str | None:
    """An agent step's answer from its completion data (a non-streaming agent's response or reply)."""
    for item in data if isinstance(data, list) else []:
        response = getattr(item, "agent_response", item)
        if isinstance(response, AgentResponse):
            return response.text
    return None


async def follow_run(
    log: RunEventLog,
    store: WorkflowRunStore,
    run: WorkflowRun,
    *,
    after: int,
    poll_seconds: float,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[StoredEvent]:
    """The run's stored events after ``after``, then its new ones as its jobs store them (from any instance),
    until the run stops (ends or waits for input) or :data:`FOLLOW_SECONDS` pass (the client resumes with its
    last id). Batches gone in the middle of a replay end it with an ``error`` event carrying the client's last id
    (no new one: the ids after it are the expired events')."""
    number, until = 1, clock() + FOLLOW_SECONDS
    last: StoredEvent | None = None
    while True:
        batch = await log.batch(run.id, run.user_id, number)
        if batch is None:
            current = await store.find(run.id, run.user_id)
            if current is None:
                return
            if current.status in STOPPED:  # its record is written after its last batch: look once more
                batch = await log.batch(run.id, run.user_id, number)
                if batch is None:
                    if number <= current.events[0]:  # a batch expired in the middle of the replay: no new id
                        gone = RunEventsGoneError(f"Some events of workflow run {run.id!r} are past their retention.")
                        yield StoredEvent(max(last.seq if last else 0, after), "error", error_fields(gone))
                    return
            elif clock() >= until:
                return
            else:
                await asyncio.sleep(poll_seconds)
                continue
        for event in batch.events:
            last = event
            if event.seq > after:
                yield event
        number += 1


async def check_events(log: RunEventLog, run: WorkflowRun) -> None:
    """Before a stream starts: a stopped run whose first batch is gone after its retention is a 410.

    Raises:
        RunEventsGoneError: the events are past their retention (the run itself is still readable).
    """
    if run.status in STOPPED and run.events[0] > 0 and await log.batch(run.id, run.user_id, 1) is None:
        raise RunEventsGoneError(
            f"The events of workflow run {run.id!r} are past their retention; GET the run itself for its outputs."
        )


async def log_stop(log: RunEventLog | None, run: WorkflowRun, status: str, **fields: Any) -> None:
    """The ``run_status`` event of a stop decided outside the run's job (a cancel, the queue giving up), after
    the log's end; an outage leaves it out (the run's record says how it stopped)."""
    if log is not None:
        journal = RunJournal(log, run, outputs=(), position=run.events, flush_seconds=0)
        await journal.find_end()
        await journal.close(status, **fields)
