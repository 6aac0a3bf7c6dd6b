"""Exactly once across a crash: a durable note, on the session document, that a tool call with side effects
is starting, so a retry never runs it blindly again.

A turn's tool calls run inside ``agent.run`` (the framework's function-invocation loop), and the session
is saved only after it. A process that dies between a tool's effect and that save would, on retry, run
the tool again. So before such a tool runs, :class:`ToolJournal` (the framework's own function middleware,
passed to ``agent.run``) adds the call to the document's ``toolJournal`` with one conditional write (the
etag the turn read; the session's other fields stay as stored, so an approval stays pending). The turn's
save clears the journal. A turn that finds entries left by a crashed attempt of itself matches each call
it is about to run to them (same call id, as an approved call has; or the same tool and arguments, as a
model asked again issues) and then:

- a tool that accepts an idempotency key runs again with the key of the first attempt, so the system it
  calls can drop the repeat: exactly once end to end;
- any other tool is not run again: the model gets :data:`UNKNOWN_RESULT`, and the call shows with
  ``"status": "unknown"``: at most once.

Which tools: every tool that needs approval, and any tool marked in the framework's own
``additional_properties`` (``@tool(additional_properties={...})``):

- ``{"side_effects": True}``: journalled like an approval tool;
- ``{"idempotency_key": True}``: journalled, and given a stable key: the tool declares a
  ``FunctionInvocationContext`` parameter (the framework injects it) and reads
  ``ctx.kwargs["idempotency_key"]``, the same for every attempt of one call.

Turns with ``store: false`` keep nothing, the journal included (a keyed tool still gets its key).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from agent_framework import Content, FunctionInvocationContext, FunctionMiddleware, MiddlewareFailure

if TYPE_CHECKING:
    from cosmos_history.domain.ports import SessionRepository
    from cosmos_history.domain.records import SessionRecord

SIDE_EFFECTS = "side_effects"
"""``additional_properties`` marker of a tool with side effects that needs no approval."""
IDEMPOTENCY_KEY = "idempotency_key"
"""``additional_properties`` marker of a tool that takes a key, and the ``ctx.kwargs`` name it reads it from."""
OUTCOME = "outcome"
UNKNOWN = "unknown"
UNKNOWN_RESULT = (
    "Outcome unknown: this tool call had started when the service stopped, before its result was saved. "
    "It was not run again, and it may or may not have taken effect: check before trying it again."
)

ToolStatus = Literal["completed", "unknown"]


@dataclass(frozen=True)
class StartedCall:
    """A call of a tool with side effects that was about to run (its arguments kept only as a digest)."""

    call_id: str
    name: str
    arguments: str
    key: str

    def to_json(self) -> dict[str, str]:
        return {"callId": self.call_id, "name": self.name, "arguments": self.arguments, "key": self.key}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> StartedCall:
        return cls(str(value["callId"]), str(value["name"]), str(value["arguments"]), str(value["key"]))


def has_side_effects(tool: Any) -> bool:
    properties = getattr(tool, "additional_properties", None) or {}
    return (
        getattr(tool, "approval_mode", None) == "always_require"
        or properties.get(SIDE_EFFECTS) is True
        or accepts_key(tool)
    )


def accepts_key(tool: Any) -> bool:
    return (getattr(tool, "additional_properties", None) or {}).get(IDEMPOTENCY_KEY) is True


def call_key(session_id: str, turn: int, call_id: str) -> str:
    """The idempotency key of one call: stable across the attempts of its turn, distinct across sessions."""
    return hashlib.sha256(json.dumps([session_id, turn, call_id]).encode()).hexdigest()[:40]


def arguments_digest(name: str, arguments: Any) -> str:
    """What identifies a call a model issues again (its tool and arguments) without storing the arguments."""
    values = arguments.model_dump() if hasattr(arguments, "model_dump") else dict(arguments or {})
    text = json.dumps([name, values], sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def journalled(context: FunctionInvocationContext) -> tuple[str, str] | None:
    """The call id and arguments digest of a call a journal notes (its tool has side effects); ``None`` else."""
    if not has_side_effects(context.function):
        return None
    return str(context.metadata.get("call_id") or ""), arguments_digest(context.function.name, context.arguments)


class Noted(Protocol):
    """A call noted before it ran: its id, its tool, and the digest of its arguments."""

    @property
    def call_id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def arguments(self) -> str: ...


N = TypeVar("N", bound=Noted)


def met_again(earlier: list[N], call_id: str, name: str, digest: str) -> N | None:
    """Take from ``earlier`` the note of the call about to run: the same call id (an approved call keeps it),
    else the same tool and arguments (a model asked again issues a new id)."""
    same = next((n for n in earlier if n.call_id == call_id and n.name == name), None)
    same = same or next((n for n in earlier if n.name == name and n.arguments == digest), None)
    if same is not None:
        earlier.remove(same)
    return same


def unknown_result() -> list[Content]:
    """What the model receives for a call that is not run again: one text, marked as an unknown outcome."""
    return [Content.from_text(UNKNOWN_RESULT, additional_properties={OUTCOME: UNKNOWN})]


def outcome_of(result: Content) -> ToolStatus:
    """``unknown`` for a result :func:`unknown_result` made, else ``completed`` (the tool ran and answered)."""
    items: Iterable[Content] = result.items or []
    return "unknown" if any(item.additional_properties.get(OUTCOME) == UNKNOWN for item in items) else "completed"


class ToolJournal(FunctionMiddleware):
    """One turn's journal of the calls with side effects it starts (see the module docstring)."""

    def __init__(self, store: SessionRepository, record: SessionRecord, *, durable: bool = True) -> None:
        self.store = store
        self.record = record
        self.durable = durable
        """``False`` for a turn that stores nothing: keys are handed out, nothing is written."""
        self.earlier: list[StartedCall] = list(record.tool_journal)
        """Calls a crashed attempt of this turn started, not yet met again in this one."""
        self._writing = asyncio.Lock()

    async def process(self, context: FunctionInvocationContext, call_next: Callable[[], Awaitable[None]]) -> None:
        tool = context.function
        call = journalled(context)
        if call is None:
            await call_next()
            return
        call_id, digest = call
        started = self._met_again(call_id, tool.name, digest)
        if started is None:
            started = StartedCall(call_id, tool.name, digest, call_key(self.record.id, self.record.turns + 1, call_id))
            if self.durable:
                await self._note(started)
        elif not accepts_key(tool):
            context.result = unknown_result()
            return
        if accepts_key(tool):
            context.kwargs[IDEMPOTENCY_KEY] = started.key
        await call_next()

    def settle(self) -> list[StartedCall]:
        """Before the turn's save: the journal is cleared; returns the earlier calls this turn never met
        (their outcome is unknown too)."""
        self.record.tool_journal = []
        return list(self.earlier)

    def _met_again(self, call_id: str, name: str, digest: str) -> StartedCall | None:
        return met_again(self.earlier, call_id, name, digest)

    async def _note(self, started: StartedCall) -> None:
        """One conditional write of the journal with ``started`` added; the tool runs only once it landed."""
        async with self._writing:
            previous = self.record.tool_journal
            self.record.tool_journal = [*previous, started]
            try:
                self.record.etag = await self.store.note_started(self.record)
            except Exception as error:
                self.record.tool_journal = previous
                raise MiddlewareFailure("The tool call could not be recorded before it ran; it did not run.") from error
