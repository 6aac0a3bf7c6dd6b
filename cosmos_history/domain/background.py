"""Background turns: a turn asked for now and run later by a queue worker, addressable while it waits and runs.

:meth:`BackgroundTurns.submit` gives the turn its number (the session's next, or the one after the turns
already queued when the message is ``enqueue``\\d), stores its :class:`~.turn_records.TurnRecord` as ``queued``
with the request it runs on, and sends a small job (user, session, turn, attempt) to the queue. A worker
(:meth:`BackgroundTurns.run`, under the queue trigger) runs it through the turn service like any other turn.

Exactly once across crashes and queue retries: the job runs its turn with an ``Idempotency-Key`` of its own
(``background:<attempt>``), so a retry of a turn that was saved replays its stored answer without a model
call, and the tool journal keeps any tool from running twice (see :mod:`.tool_journal`); the turn is run as
the continuation of turn ``n - 1`` (``expected_turn``), so it is saved as turn ``n`` or not at all.

Order: turn ``n`` waits (its job is sent again, delayed) while turn ``n - 1`` is queued or running, and while
another request holds the session's lease. A turn whose predecessor ended without being saved (it failed)
cannot take its number: it ends ``failed`` too, saying so, and the session takes the next message.
A job the queue gave up on (the poison queue) ends its turn ``failed`` (:meth:`BackgroundTurns.give_up`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cosmos_history.domain.cancel import CANCELLED
from cosmos_history.domain.errors import (
    BackgroundTurnFailedError,
    ProblemError,
    SessionNotFoundError,
    TurnCancelledError,
    TurnInProgressError,
    TurnNotReachedError,
)
from cosmos_history.domain.ports import JobQueue
from cosmos_history.domain.results import TurnRequest
from cosmos_history.domain.service import Turns
from cosmos_history.domain.turn_records import TurnLog, TurnRecord, TurnStatus, error_fields, request_json

logger = logging.getLogger(__name__)

MAX_QUEUED = 20
"""Most turns of one session that may wait in the queue at once (``enqueue``)."""
WAIT_SECONDS = 2
"""How long a turn waiting for its predecessor (or the session's lease) stays hidden before it looks again."""

GAVE_UP = "The background turn failed on every attempt the queue made; nothing of it was saved."
PREDECESSOR_FAILED = "An earlier turn queued before this one failed, so this one could not run; nothing was saved."


@dataclass(frozen=True)
class BackgroundTurns:
    """Queues turns and runs them from the queue (see the module docstring)."""

    turns: Turns
    log: TurnLog
    queue: JobQueue

    async def submit(
        self,
        request: TurnRequest,
        *,
        caller: str,
        enqueue: bool = False,
        behind_running: bool = False,
        trace: Mapping[str, str] | None = None,
        extra: Callable[[int], Mapping[str, Any]] | None = None,
    ) -> TurnRecord:
        """Store the turn as ``queued`` and send its job; returns its record. ``behind_running``: a turn of another
        request holds the session now (it takes the next number even when it keeps no record: a plain turn).

        Raises:
            TurnInProgressError: the session's next turn is queued or running (and ``enqueue`` is off), or
                ``MAX_QUEUED`` turns wait already.
            QueueUnavailableError: the job could not be sent (the record says ``failed``).
        """
        self.turns.check_client_tools(request.agent, request.client_tools)
        asked = {
            **request_json(request.message, approvals=request.approvals, mode=request.mode, agent=request.agent),
            **({"options": dict(request.options)} if request.options else {}),
            **({"parameters": dict(request.parameters)} if request.parameters else {}),
        }
        turn = await self.turns.latest_turn(request.session_id, caller=caller) + 1
        record = None
        for _ in range(MAX_QUEUED):
            pending = await self.log.find(request.session_id, caller, turn)
            if pending is None and behind_running:
                behind_running = False
                turn += 1  # the running turn keeps no record (a plain turn): it takes this number
                continue
            behind_running = False
            if pending is None or pending.finished or pending.lost(time.time()):  # (lost: its process died)
                queued = TurnRecord(
                    request.session_id,
                    caller,
                    turn,
                    "queued",
                    mode=request.mode,
                    agent=request.agent,
                    request={**asked, **({"extra": dict(extra(turn))} if extra is not None else {})},
                    etag=None if pending is None else pending.etag,
                )
                # Conditional: a request racing for the same number makes one of them look again, never lose one.
                record = await (self.log.create(queued) if pending is None else self.log.replace(queued))
                if record is not None:
                    break
                continue
            if not enqueue:
                raise TurnInProgressError(
                    f"Turn {turn} of this session is {pending.status.replace('_', ' ')}; send the message again "
                    'when it ended, or with "multitask": "enqueue" to run it after.',
                    retry_after=WAIT_SECONDS,
                )
            turn += 1
        if record is None:
            raise TurnInProgressError(f"{MAX_QUEUED} turns of this session wait already.", retry_after=WAIT_SECONDS)
        job = {"userId": caller, "sessionId": request.session_id, "turn": turn, "attempt": record.attempt}
        try:
            await self.queue.enqueue({**job, **({"trace": dict(trace)} if trace else {})})
        except ProblemError as error:
            await self.log.put(record.ended("failed", error=_problem(error)))
            raise
        return record

    async def run(self, job: Mapping[str, Any]) -> None:
        """Run the job's turn (once: see the module docstring).

        Raises (so the queue retries, then gives up: :meth:`give_up`): an error a retry may mend (the store or the
        model failing for now); the turn is ``queued`` again meanwhile, its record saying why.
        """
        record = await self._record(job)
        if record is None:
            return
        latest = await self.turns.latest_turn(record.session_id, caller=record.user_id)
        if record.cancel_requested and latest < record.turn:  # asked to stop while its worker was gone
            await self.log.put(record.ended("cancelled", error=_cancelled()))
            return
        if latest < record.turn - 1:
            previous = await self.log.find(record.session_id, record.user_id, record.turn - 1)
            if previous is not None and not previous.finished:
                await self.queue.enqueue(dict(job), delay_seconds=WAIT_SECONDS)
                return
            if previous is not None:
                await self.log.put(record.ended("failed", error=_failed(PREDECESSOR_FAILED)))
                return
            # No record: a plain turn of another request may hold the number; the lease (wait) and the
            # expected turn (it was not saved: fail) decide below.
        try:
            stream = await self.turns.stream(_request(record), caller=record.user_id, queued=record)
            result = await stream.result()
        except TurnInProgressError as error:  # another request holds the lease (or a dead worker's runs out)
            await self.queue.enqueue(dict(job), delay_seconds=error.retry_after or WAIT_SECONDS)
            return
        except (TurnNotReachedError, SessionNotFoundError):  # the turn before it ended without being saved
            await self._end(record, "failed", error=_failed(PREDECESSOR_FAILED))
            return
        except ProblemError as error:
            if _passing(error):
                await self._retry_later(record, _problem(error))
                raise
            await self._end(record, "failed", error=_problem(error))
            return
        except Exception:
            await self._retry_later(record, _failed(GAVE_UP))
            raise
        # A replayed turn (a retry of one that was saved) stored no record of its own: end ours with its answer.
        await self._end(record, result.status, result=result.to_json(), mode=result.mode, agent=result.agent)

    async def _end(self, record: TurnRecord, status: TurnStatus, **changes: Any) -> None:
        """End the turn's record as ``status`` unless the run ended it already (completed, failed, cancelled)."""
        current = await self.log.find(record.session_id, record.user_id, record.turn)
        if current is not None and current.attempt == record.attempt and not current.finished:
            await self.log.put(current.ended(status, **changes))

    async def _retry_later(self, record: TurnRecord, error: dict[str, Any]) -> None:
        """The queue runs the job again: the turn is ``queued`` once more, with why its last run failed."""
        current = await self.log.find(record.session_id, record.user_id, record.turn)
        if current is not None and current.attempt == record.attempt and current.status != "cancelled":
            await self.log.put(current.ended("queued", error=error))

    async def give_up(self, job: Mapping[str, Any]) -> None:
        """The queue gave up on the job (its poison queue): its turn ends ``failed`` unless it ended already."""
        record = await self._record(job)
        if record is not None:
            await self.log.put(record.ended("failed", error=record.error or _failed(GAVE_UP)))

    async def _record(self, job: Mapping[str, Any]) -> TurnRecord | None:
        """The job's turn record while it has not ended (``None``: nothing to do, e.g. a repeated delivery)."""
        try:
            user, session, turn, attempt = job["userId"], job["sessionId"], int(job["turn"]), job["attempt"]
        except (KeyError, TypeError, ValueError):
            logger.warning("A background job without its turn was dropped")
            return None
        record = await self.log.find(str(session), str(user), turn)
        if record is None or record.attempt != attempt or record.finished:
            return None
        return record


def _passing(error: ProblemError) -> bool:
    """Whether a retry of the job may succeed: the store or the model failed for now, or another request changed
    the session meanwhile (the queue trigger's rule, :mod:`cosmos_history.triggers`)."""
    return not error.kind.caller_fault or error.retry_after is not None


def _request(record: TurnRecord) -> TurnRequest:
    """The turn request a record runs on, keyed by its attempt (so every retry is the same request)."""
    asked = record.request or {}
    approvals = asked.get("approvals")
    return TurnRequest(
        record.session_id,
        str(asked.get("message") or ""),
        asked.get("mode"),
        asked.get("agent"),
        idempotency_key=f"background:{record.attempt}",
        approvals=None if approvals is None else [(str(a), bool(ok)) for a, ok in approvals],
        options=asked.get("options"),
        expected_turn=record.turn - 1,
        parameters=asked.get("parameters"),
    )


def _problem(error: ProblemError) -> dict[str, Any]:
    return error_fields(error)


def _failed(detail: str) -> dict[str, Any]:
    return error_fields(BackgroundTurnFailedError(detail))


def _cancelled() -> dict[str, Any]:
    return error_fields(TurnCancelledError(CANCELLED))
