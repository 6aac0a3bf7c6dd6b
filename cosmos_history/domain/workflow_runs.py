"""Workflow runs: what a run of a workflow is, how it is stored, and the ports it runs on.

A :class:`WorkflowRun` is a small record in the caller's partition (``[userId, runId]``), beside the run's
checkpoints. It says what was asked (the workflow and its input), where the run is (``status``), what it
produced (``outputs``), what it waits for (``pending``: requests for human input) and the answers given but
not yet delivered to the workflow (``answers``); ``tool_journal`` notes the calls of tools with side effects
that started since the last checkpoint (see :mod:`.workflow_tool_journal`). ``attempt`` grows with every job
sent for the run, so a job that was superseded (or delivered twice after the run moved on) finds nothing to do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from agent_framework import CheckpointStorage

RunStatus = Literal["queued", "in_progress", "awaiting_input", "completed", "failed", "cancelled"]
FINISHED: tuple[RunStatus, ...] = ("completed", "failed", "cancelled")
TEXT = "text"
"""A pending request whose answer is plain text (the workflow's response type is ``str`` or messages)."""
APPROVAL = "approval"
"""A pending request that is a tool's approval: its answer is ``{"approved": true|false}``."""


@dataclass(frozen=True)
class PendingRequest:
    """A request for human input the run waits on: its id, its type's name and its data as JSON."""

    id: str
    type: str
    data: Any
    answer: str | None = None
    """``"text"`` when the answer must be a string; ``None`` when the workflow takes any JSON value."""

    def to_json(self) -> dict[str, Any]:
        """The stored form (``answer`` included: the HTTP layer shows only id, type and data)."""
        return {"id": self.id, "type": self.type, "data": self.data, **({"answer": self.answer} if self.answer else {})}

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> PendingRequest:
        return cls(str(item["id"]), str(item.get("type") or ""), item.get("data"), item.get("answer"))


@dataclass(frozen=True)
class ToolCallNote:
    """A call of a tool with side effects that started in a job of the run; ``done`` once it returned, with its
    result (as :mod:`.workflow_tool_journal` encodes it) so a retry hands that result back instead of running it."""

    call_id: str
    name: str
    arguments: str
    """A digest of the tool's name and arguments (never the arguments themselves)."""
    key: str
    done: bool = False
    result: Any = None

    def to_json(self) -> dict[str, Any]:
        return {
            "callId": self.call_id,
            "name": self.name,
            "arguments": self.arguments,
            "key": self.key,
            "done": self.done,
            "result": self.result,
        }

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> ToolCallNote:
        names = (str(item["callId"]), str(item["name"]), str(item["arguments"]), str(item["key"]))
        return cls(*names, done=bool(item.get("done")), result=item.get("result"))


@dataclass(frozen=True)
class WorkflowRun:
    """One run of a workflow, as stored (see the module docstring)."""

    id: str
    user_id: str
    workflow: str
    status: RunStatus
    input: Any = None
    outputs: tuple[Any, ...] = ()
    pending: tuple[PendingRequest, ...] = ()
    answers: Mapping[str, Any] = field(default_factory=dict)
    answered: tuple[str, ...] = ()
    """Every request id answered so far (a second answer to one is a conflict, never a second delivery)."""
    tool_journal: tuple[ToolCallNote, ...] = ()
    attempt: int = 1
    error: Mapping[str, Any] | None = None
    events: tuple[int, int] = (0, 0)
    """Where its event log stood when a job last stopped: ``(batches, last event id)``."""
    created_at: float = 0.0
    updated_at: float = 0.0
    etag: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def but(self, **changes: Any) -> WorkflowRun:
        """A copy with ``changes`` (the etag kept, so a conditional write checks the version read)."""
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """The stored fields (the adapters add their envelope)."""
        return {
            "runId": self.id,
            "workflow": self.workflow,
            "status": self.status,
            "input": self.input,
            "outputs": list(self.outputs),
            "pending": [request.to_json() for request in self.pending],
            "answers": dict(self.answers),
            "answered": list(self.answered),
            **({"toolJournal": [note.to_json() for note in self.tool_journal]} if self.tool_journal else {}),
            "attempt": self.attempt,
            "error": dict(self.error) if self.error is not None else None,
            "events": list(self.events),
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
        }

    @classmethod
    def from_json(cls, user_id: str, item: Mapping[str, Any], etag: str | None = None) -> WorkflowRun:
        return cls(
            id=str(item["runId"]),
            user_id=user_id,
            workflow=str(item["workflow"]),
            status=item["status"],
            input=item.get("input"),
            outputs=tuple(item.get("outputs") or ()),
            pending=tuple(PendingRequest.from_json(p) for p in item.get("pending") or ()),
            answers=dict(item.get("answers") or {}),
            answered=tuple(item.get("answered") or ()),
            tool_journal=tuple(ToolCallNote.from_json(n) for n in item.get("toolJournal") or ()),
            attempt=int(item.get("attempt") or 1),
            error=item.get("error"),
            events=event_position(item.get("events")),
            created_at=float(item.get("createdAt") or 0.0),
            updated_at=float(item.get("updatedAt") or 0.0),
            etag=etag,
        )

    def public_json(self) -> dict[str, Any]:
        """What ``GET /api/workflows/runs/{id}`` answers."""
        body: dict[str, Any] = {
            "id": self.id,
            "workflow": self.workflow,
            "status": self.status,
            "outputs": list(self.outputs),
            "pendingRequests": [{"id": p.id, "type": p.type, "data": p.data} for p in self.pending],
            "error": dict(self.error) if self.error is not None else None,
        }
        return body


def event_position(value: Any) -> tuple[int, int]:
    """A stored event log position ``[batches, last id]`` (``(0, 0)`` when absent or malformed)."""
    if isinstance(value, list) and len(value) == 2 and all(isinstance(n, int) for n in value):
        return value[0], value[1]
    return 0, 0


class WorkflowRunStore(Protocol):
    """Workflow runs and their checkpoints, each in its caller's partition."""

    async def create(self, run: WorkflowRun) -> WorkflowRun:
        """Store a new run; returns it with its etag."""
        ...

    async def find(self, run_id: str, user_id: str) -> WorkflowRun | None:
        """The caller's run, or ``None`` (another user's run is ``None`` too)."""
        ...

    async def replace(self, run: WorkflowRun) -> WorkflowRun | None:
        """Write ``run`` if the stored one still has ``run.etag``; ``None`` when it changed meanwhile."""
        ...

    def checkpoints(self, run_id: str, user_id: str) -> CheckpointStorage:
        """The framework's checkpoint storage for one run (its items in the run's partition)."""
        ...
