"""Exactly once for the tools agents call inside a workflow run, across a crash between a tool's effect and the
checkpoint after it.

A workflow is checkpointed after every superstep, not after every tool call: a job killed after an approved
tool ran and before that superstep's checkpoint is retried from the checkpoint before it, which delivers the
approval again, and the framework would run the tool again. So every tool with side effects (as for turns,
:func:`~cosmos_history.domain.tool_journal.has_side_effects`: every tool that needs approval, and those marked)
is noted on the run's record before it runs (one conditional write), and its result after it returned. A retry
that meets a call noted by an earlier attempt (same call id, as an approved call has; or the same tool and
arguments, as a model asked again issues):

- gets the noted result when the call had returned: the tool is not run again, exactly once;
- runs a tool that takes an idempotency key again, with the first attempt's key;
- gets :data:`~cosmos_history.domain.tool_journal.UNKNOWN_RESULT` for any other tool (it started and never
  said it ended): at most once, as for turns.

The notes are cleared with the next checkpoint saved (the checkpoint then holds the calls' results).

The agents of a workflow are built by its module, so :func:`guard_tools` adds one function middleware,
:data:`GUARD`, to each agent of the built workflow; it hands each call to the journal of the run in progress in
this task (a context variable, set by :class:`JournalInUse`), and lets calls outside a run through untouched.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from agent_framework import Content, FunctionInvocationContext, FunctionMiddleware, MiddlewareFailure, Workflow

from cosmos_history.domain.errors import ProblemError
from cosmos_history.domain.tool_journal import (
    IDEMPOTENCY_KEY,
    accepts_key,
    call_key,
    journalled,
    met_again,
    unknown_result,
)
from cosmos_history.domain.workflow_runs import ToolCallNote, WorkflowRun, WorkflowRunStore

logger = logging.getLogger(__name__)

RACES = 8
"""How often a note is written again against a run another request changed meanwhile."""
MAX_RESULT_CHARS = 16_000
"""A noted result longer than this is kept as its text, cut (the run's record stays small)."""

_ACTIVE: contextvars.ContextVar[RunToolJournal | None] = contextvars.ContextVar("workflow_tool_journal", default=None)


class RunToolJournal:
    """The journal of one job of a run (see the module docstring)."""

    def __init__(self, runs: WorkflowRunStore, run: WorkflowRun) -> None:
        self._runs = runs
        self._run = run
        self.earlier: list[ToolCallNote] = list(run.tool_journal)
        """Calls an earlier attempt of this job started, not yet met again in this one."""

    async def process(self, context: FunctionInvocationContext, call_next: Callable[[], Awaitable[None]]) -> None:
        tool = context.function
        call = journalled(context)
        if call is None:
            await call_next()
            return
        call_id, digest = call
        met = met_again(self.earlier, call_id, tool.name, digest)
        if met is not None and met.done:
            context.result = decoded(met.result)
            return
        if met is not None and not accepts_key(tool):
            context.result = unknown_result()
            return
        note = met or ToolCallNote(call_id, tool.name, digest, call_key(self._run.id, 0, call_id))
        if met is None and not await self._note(note):
            raise MiddlewareFailure("The workflow run was cancelled or taken over; the tool did not run.")
        if accepts_key(tool):
            context.kwargs[IDEMPOTENCY_KEY] = note.key
        await call_next()  # a tool that raises leaves its start noted: a retry does not run it again either
        try:
            await self._note(ToolCallNote(note.call_id, note.name, note.arguments, note.key, True, encoded(context)))
        except MiddlewareFailure:  # the start is noted: a retry does not run it again (its outcome unknown)
            logger.warning("Workflow run %s: a tool's result was not noted", self._run.id)

    async def _note(self, note: ToolCallNote) -> bool:
        """One conditional write of the run with ``note`` (replacing the call's earlier note); ``False`` when the
        run is no longer this job's (cancelled, or a newer job's)."""
        try:
            for _ in range(RACES):
                current = await self._runs.find(self._run.id, self._run.user_id)
                if current is None or current.attempt != self._run.attempt or current.status != "in_progress":
                    return False
                others = tuple(n for n in current.tool_journal if n.call_id != note.call_id)
                if await self._runs.replace(current.but(tool_journal=(*others, note))) is not None:
                    return True
        except ProblemError as error:
            raise MiddlewareFailure("The tool call could not be noted before it ran; it did not run.") from error
        raise MiddlewareFailure("The run kept changing while the tool call was noted; it did not run.")


class ToolGuard(FunctionMiddleware):
    """Hands each tool call to the journal of the workflow run in progress (none outside a run)."""

    async def process(self, context: FunctionInvocationContext, call_next: Callable[[], Awaitable[None]]) -> None:
        journal = _ACTIVE.get()
        if journal is None:
            await call_next()
            return
        token = _ACTIVE.set(None)  # an agent the tool runs (a sub-agent) keeps its own journal, not the run's
        try:
            await journal.process(context, call_next)
        finally:
            _ACTIVE.reset(token)


GUARD = ToolGuard()


def guard_tools(workflow: Workflow) -> None:
    """Put :data:`GUARD` first on every agent of ``workflow`` (and of its sub-workflows), once."""
    for executor in workflow.executors.values():
        inner = getattr(executor, "workflow", None)
        if isinstance(inner, Workflow):
            guard_tools(inner)
        agent = getattr(executor, "agent", None)
        if agent is None or not hasattr(agent, "middleware"):
            continue  # an agent without local tools (a remote one): nothing runs here
        present = list(agent.middleware or [])
        if not any(item is GUARD for item in present):
            agent.middleware = [GUARD, *present]


class JournalInUse:
    """``run``'s journal in use for the tool calls made in this task (and the tasks it starts) until closed."""

    def __init__(self, runs: WorkflowRunStore, run: WorkflowRun) -> None:
        self.journal = RunToolJournal(runs, run)
        self._token = _ACTIVE.set(self.journal)

    def close(self) -> None:
        _ACTIVE.reset(self._token)


def encoded(context: FunctionInvocationContext) -> dict[str, Any]:
    """The call's result as stored: the framework's contents, or text."""
    result = context.result
    if isinstance(result, list) and all(isinstance(item, Content) for item in result):
        contents = [item.to_dict() for item in result]
        if len(str(contents)) <= MAX_RESULT_CHARS:
            return {"contents": contents}
        result = " ".join(item.text or "" for item in result)
    return {"text": str(result)[:MAX_RESULT_CHARS]}


def decoded(stored: Any) -> list[Content]:
    """What :func:`encoded` stored, as the framework's contents."""
    if isinstance(stored, dict) and isinstance(stored.get("contents"), list):
        return [Content.from_dict(item) for item in stored["contents"]]
    text = stored.get("text") if isinstance(stored, dict) else None
    return [Content.from_text(str(text) if text is not None else "")]
