"""Workflow runs: started by a request, run by a queue worker, paused for people, resumed from checkpoints.

:meth:`WorkflowRuns.start` stores a ``queued`` run and sends its job; :meth:`WorkflowRuns.run` (the queue
function) builds a fresh instance of the workflow and runs it with the run's checkpoint storage, so the
framework checkpoints it after every superstep. A run that asks for human input ends its job
``awaiting_input``; :meth:`WorkflowRuns.respond` records the answers (each request answered once: the write is
conditional on the version read) and sends a new job, which restores the latest checkpoint and delivers them.
A worker killed mid-run leaves its job to the queue's retry, which resumes from the latest checkpoint:
the supersteps before it are not run again.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from agent_framework import (
    CheckpointStorage,
    Workflow,
    WorkflowCheckpoint,
    WorkflowRunState,
)

from cosmos_history.domain.errors import BackgroundNotConfiguredError, BadRequestError, ErrorKind, ProblemError
from cosmos_history.domain.ports import JobQueue
from cosmos_history.domain.turn_records import StoredEvent
from cosmos_history.domain.workflow_events import (
    RunEventLog,
    RunJournal,
    check_events,
    checkpoint_outputs,
    checkpoint_position,
    follow_run,
    log_stop,
)
from cosmos_history.domain.workflow_requests import answer, check_answer, pending_request
from cosmos_history.domain.workflow_runs import WorkflowRun, WorkflowRunStore
from cosmos_history.domain.workflow_tool_journal import JournalInUse, guard_tools

logger = logging.getLogger(__name__)

WorkflowFactory = Callable[[], Workflow]
"""Builds a new instance of one workflow (a workflow instance keeps state: one per job)."""
MAX_RESPONSES = 32
RACES = 8
WAIT_SECONDS = 2
"""How often a conditional write is tried again against a run that another request changed meanwhile."""


class WorkflowNotFoundError(ProblemError):
    kind = ErrorKind.NOT_FOUND
    title = "Workflow not found"
    slug = "workflow-not-found"


class WorkflowRunNotFoundError(ProblemError):
    kind = ErrorKind.NOT_FOUND
    title = "Workflow run not found"
    slug = "workflow-run-not-found"


class WorkflowRequestConflictError(ProblemError):
    """An answer to a request the run does not wait on (unknown, or answered already)."""

    kind = ErrorKind.CONFLICT
    title = "Request not pending"
    slug = "workflow-request-not-pending"


class WorkflowRunFinishedError(ProblemError):
    kind = ErrorKind.CONFLICT
    title = "Workflow run already finished"
    slug = "workflow-run-finished"


class WorkflowRunFailedError(ProblemError):
    kind: ClassVar[ErrorKind] = ErrorKind.INTERNAL
    title = "Workflow run failed"
    slug = "workflow-run-failed"


@dataclass(frozen=True)
class WorkflowRuns:
    """The workflows of the app and their runs (see the module docstring)."""

    workflows: Mapping[str, WorkflowFactory]
    descriptions: Mapping[str, str]
    store: WorkflowRunStore
    queue: JobQueue | None
    events: RunEventLog | None = None
    flush_seconds: float = 1.0
    poll_seconds: float = 0.5

    def listing(self) -> list[dict[str, str]]:
        return [{"name": name, "description": self.descriptions.get(name, "")} for name in sorted(self.workflows)]

    async def start(self, name: str, given: Any, *, caller: str) -> WorkflowRun:
        """Store a queued run of ``name`` with ``given`` as its input and send its job."""
        if name not in self.workflows:
            raise WorkflowNotFoundError(f"No workflow is called {name!r}; GET /api/workflows lists them.")
        queue = self._queue()
        now = time.time()
        run = WorkflowRun(f"wfrun-{uuid.uuid4().hex}", caller, name, "queued", given, created_at=now, updated_at=now)
        run = await self.store.create(run)
        try:
            await queue.enqueue(_job(run))
        except ProblemError as error:
            await self.store.replace(run.but(status="failed", error=_error(error)))
            raise
        return run

    async def read(self, run_id: str, *, caller: str) -> WorkflowRun:
        run = await self.store.find(run_id, caller)
        if run is None:
            raise WorkflowRunNotFoundError(f"This caller has no workflow run {run_id!r}.")
        return run

    async def follow(self, run_id: str, *, caller: str, after: int) -> AsyncIterator[StoredEvent]:
        """The caller's run's events after ``after``, replayed then followed (see :func:`follow_run`).

        Raises:
            WorkflowRunNotFoundError: not the caller's run. RunEventsGoneError: past their retention.
        """
        run = await self.read(run_id, caller=caller)
        if self.events is None:
            raise BackgroundNotConfiguredError("This app stores no workflow run events.")
        await check_events(self.events, run)
        return follow_run(self.events, self.store, run, after=after, poll_seconds=self.poll_seconds)

    async def respond(self, run_id: str, responses: list[tuple[str, Any]], *, caller: str) -> WorkflowRun:
        """Record answers to pending requests, each exactly once, and send the job that delivers them.

        Raises:
            WorkflowRequestConflictError: an id is not a request the run waits on now (unknown, or answered).
            BadRequestError: an answer of the wrong shape (text not a string, an approval not ``{"approved": bool}``).
        """
        if not responses or len(responses) > MAX_RESPONSES:
            raise BadRequestError(f"responses must list 1 to {MAX_RESPONSES} answers.")
        if len({request for request, _ in responses}) != len(responses):
            raise BadRequestError("responses answers a request twice.")
        queue = self._queue()
        for _ in range(RACES):
            run = await self.read(run_id, caller=caller)
            if run.status in ("queued", "in_progress") and run.pending:
                # One job at a time resumes a run: answers to its other requests wait until it pauses again.
                raise WorkflowRequestConflictError(
                    "The run is taking earlier answers now; send these when it waits again (awaiting_input).",
                    retry_after=WAIT_SECONDS,
                )
            waiting = {p.id: p for p in run.pending}
            for request, data in responses:
                pending = waiting.get(request)
                if pending is None:
                    said = "was answered already" if request in run.answered else "is not a request of this run"
                    raise WorkflowRequestConflictError(f"The request {request!r} {said}.")
                check_answer(pending, data)
            answered = {request for request, _ in responses}
            changed = run.but(
                status="queued",
                pending=tuple(p for p in run.pending if p.id not in answered),
                answers={**run.answers, **dict(responses)},
                answered=(*run.answered, *(r for r, _ in responses)),
                attempt=run.attempt + 1,
                updated_at=time.time(),
            )
            written = await self.store.replace(changed)
            if written is None:
                continue  # another request changed the run: look again (an answer it gave is then a conflict)
            try:
                await queue.enqueue(_job(written))
            except ProblemError:
                await self.store.replace(written.but(status=run.status, pending=run.pending, answers=run.answers,
                                                     answered=run.answered))  # fmt: skip
                raise
            return written
        raise WorkflowRequestConflictError("The run kept changing while the answers were recorded; send them again.")

    async def cancel(self, run_id: str, *, caller: str) -> WorkflowRun:
        """Cancel a run that has not ended: at once when it waits; a job running it stops at its next superstep's
        checkpoint (its current superstep completes first).

        Raises:
            WorkflowRunFinishedError: the run had ended already.
        """
        for _ in range(RACES):
            run = await self.read(run_id, caller=caller)
            if run.finished:
                raise WorkflowRunFinishedError(f"The run ended {run.status} already; nothing is left to cancel.")
            cancelled = await self.store.replace(
                run.but(status="cancelled", pending=(), attempt=run.attempt + 1, updated_at=time.time())
            )
            if cancelled is not None:
                await log_stop(self.events, cancelled, "cancelled")
                return cancelled
        raise WorkflowRequestConflictError("The run kept changing while it was cancelled; send the cancel again.")

    async def run(self, job: Mapping[str, Any]) -> None:
        """Run (or resume) the job's run until it ends or waits for people; a crash is retried by the queue."""
        run = await self._current(job)
        if run is None:
            return
        factory = self.workflows.get(run.workflow)
        if factory is None:
            await self._end(run, "failed", error=_failed("The workflow is no longer part of the app."))
            return
        claimed = await self.store.replace(run.but(status="in_progress", updated_at=time.time()))
        if claimed is None:
            return  # changed meanwhile (answered, cancelled): the newer job runs it
        workflow = factory()
        guard_tools(workflow)  # tools with side effects run exactly once across a crash
        checkpoints = self.store.checkpoints(run.id, run.user_id)
        latest = await checkpoints.get_latest(workflow_name=workflow.name)
        journal = RunJournal(self.events, claimed, outputs=checkpoint_outputs(latest, claimed.outputs),
                             position=max(claimed.events, checkpoint_position(latest)),
                             flush_seconds=self.flush_seconds)  # fmt: skip
        await journal.open(resumed=latest is not None)
        storage = _Strict(checkpoints, self.store, claimed, journal)
        tools = JournalInUse(self.store, claimed)
        try:
            if latest is None:
                stream = workflow.run(run.input, stream=True, checkpoint_storage=storage)
            else:
                waiting = set(latest.pending_request_info_events)
                answers = {
                    request: answer(latest.pending_request_info_events[request], data)
                    for request, data in run.answers.items()
                    if request in waiting
                }
                stream = workflow.run(
                    stream=True, responses=answers or None, checkpoint_id=latest.checkpoint_id,
                    checkpoint_storage=storage,
                )  # fmt: skip
            result = await journal.follow(stream)
        except CheckpointNotSaved as stop:  # the queue runs the job again, from the last checkpoint saved
            await journal.close()  # no run_status: a cancel logged its own
            if stop.error is None:
                logger.info("Workflow run %s stopped: it was cancelled", run.id)
                return
            logger.warning("Workflow run %s stopped: its checkpoint was not saved (%s)", run.id, stop.error.title)
            raise stop.error from None
        except Exception as error:
            passing = _passing(error)
            if passing is not None:  # the store failed for now: the queue runs the job again, from the checkpoint
                await journal.close()
                logger.warning("Workflow run %s stopped, the queue retries it: %s", run.id, passing.title)
                raise passing from error
            # The workflow's own failure: the run ends failed (types only, never text).
            logger.warning("Workflow run %s failed: %s", run.id, type(error).__name__)
            failed = _failed(f"The workflow raised {type(error).__name__}.")
            await journal.close("failed", error=failed)
            await self._end(claimed, "failed", outputs=tuple(journal.outputs), error=failed, events=journal.position)
            return
        except BaseException:
            await journal.close()
            raise
        finally:
            tools.close()
        outputs = tuple(journal.outputs)
        pending = tuple(pending_request(event) for event in result.get_request_info_events())
        state = result.get_final_state()
        if state == WorkflowRunState.FAILED:
            status, changes = "failed", {"error": _failed("The workflow failed.")}
        elif pending or state == WorkflowRunState.IDLE_WITH_PENDING_REQUESTS:
            status, changes = "awaiting_input", {"pending": pending, "answers": {}}
        else:
            status, changes = "completed", {"pending": (), "answers": {}}
        await journal.close(status, **({"error": changes["error"]} if "error" in changes else {}))
        await self._end(claimed, status, outputs=outputs, events=journal.position, **changes)

    async def give_up(self, job: Mapping[str, Any]) -> None:
        """The queue gave up on the job (every delivery failed): its run ends ``failed``."""
        run = await self._current(job)
        if run is not None:
            failed = _failed("The run failed on every attempt the queue made.")
            if await self._end(run, "failed", error=failed):
                await log_stop(self.events, run, "failed", error=failed)

    async def _current(self, job: Mapping[str, Any]) -> WorkflowRun | None:
        try:
            user, run_id, attempt = str(job["userId"]), str(job["runId"]), int(job["attempt"])
        except (KeyError, TypeError, ValueError):
            logger.warning("A workflow job without its run was dropped")
            return None
        run = await self.store.find(run_id, user)
        if run is None or run.attempt != attempt or run.status not in ("queued", "in_progress"):
            return None
        return run

    async def _end(self, run: WorkflowRun, status: Any, **changes: Any) -> bool:
        """Whether the run (still at ``run``'s attempt) now ends ``status``."""
        current = await self.store.find(run.id, run.user_id)
        if current is not None and current.attempt == run.attempt and not current.finished:
            return await self.store.replace(current.but(status=status, updated_at=time.time(), **changes)) is not None
        return False

    def _queue(self) -> JobQueue:
        if self.queue is None:
            raise BackgroundNotConfiguredError("Workflow runs need the host storage queue (AzureWebJobsStorage).")
        return self.queue


class CheckpointNotSaved(BaseException):
    """Stops a run whose checkpoint could not be saved. The framework logs a failed save and runs on (its runner
    catches ``Exception``); a run that went on without its checkpoint would repeat supersteps after a crash, so
    the save raises this past the runner instead, and the job fails for the queue to retry."""

    def __init__(self, error: ProblemError | None) -> None:
        super().__init__(error.title if error is not None else "cancelled")
        self.error = error
        """``None``: the run was cancelled (or taken over by a newer job), so this job stops quietly."""


class _Strict:
    """A run's checkpoint storage whose failed save stops the run (:class:`CheckpointNotSaved`), as does a run
    cancelled meanwhile (read after each save: one point read per superstep)."""

    def __init__(
        self, storage: CheckpointStorage, runs: WorkflowRunStore, run: WorkflowRun, journal: RunJournal
    ) -> None:
        self._storage = storage
        self._runs = runs
        self._run = run
        self._journal = journal

    async def save(self, checkpoint: WorkflowCheckpoint) -> str:
        """The superstep's events stored first, its outputs saved with it (a resumed run starts from both)."""
        await self._journal.before_checkpoint(checkpoint)
        try:
            saved = await self._storage.save(checkpoint)
            current = await self._runs.find(self._run.id, self._run.user_id)
            if current is not None and current.attempt == self._run.attempt and current.tool_journal:
                await self._runs.replace(current.but(tool_journal=()))  # the checkpoint holds the calls' results
        except ProblemError as error:
            raise CheckpointNotSaved(error) from error
        if current is None or current.attempt != self._run.attempt:
            raise CheckpointNotSaved(None)
        return saved

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)


def _passing(error: BaseException) -> ProblemError | None:
    """The store's passing failure behind ``error`` (the framework may wrap it), if that is what stopped the run."""
    seen: BaseException | None = error
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, ProblemError) and not seen.kind.caller_fault:
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _job(run: WorkflowRun) -> dict[str, Any]:
    return {"userId": run.user_id, "runId": run.id, "attempt": run.attempt}


def _error(error: ProblemError) -> dict[str, Any]:
    return {"type": error.slug, "title": error.title, "detail": error.detail}


def _failed(detail: str) -> dict[str, Any]:
    return _error(WorkflowRunFailedError(detail))
