"""What a turn is asked to do, and what it answers (also what an idempotent retry replays)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from agent_framework import AgentResponse, Message

from cosmos_history.domain.approvals import PendingApproval, ToolCall
from cosmos_history.domain.client_tools import ClientCall, ClientTool
from cosmos_history.domain.modes import HistoryMode
from cosmos_history.domain.records import request_fingerprint

TurnStatus = Literal["completed", "awaiting_approval"]


@dataclass(frozen=True)
class TurnRequest:
    """What a client asked of one turn: a message, or answers to the session's pending approvals."""

    session_id: str
    message: str
    mode: HistoryMode | None = None
    agent: str | None = None
    idempotency_key: str | None = None
    approvals: Sequence[tuple[str, bool]] | None = None
    """``(approval id, approved)`` pairs; set for an approvals turn (``message`` is then empty)."""
    inputs: tuple[Message, ...] = ()
    """Messages the turn runs on after ``message``, such as the outputs of client tools' calls."""
    options: Mapping[str, Any] | None = None
    """Chat options for this run only (instructions, temperature, ...); never stored."""
    client_tools: tuple[ClientTool, ...] = ()
    expected_turn: int | None = None
    """The turn the client continues from: the session must still be at it (no branching)."""
    store: bool = True
    """``False`` runs the turn and saves nothing."""
    parameters: Mapping[str, Any] | None = None
    """Everything else of the client's request its answer depends on (a Responses request's echoed
    parameters, such as ``metadata``): compared on a retry, never given to the model."""

    def fingerprint(self) -> str:
        """What makes a retry "the same request": every field that changes the turn or its answer (the agent
        counts only when the request names one). A request of the native API has no options, so its
        fingerprint is just its message (or answers) and mode."""
        if self.approvals is not None:
            return request_fingerprint("approvals", [list(a) for a in self.approvals], self.agent, *self._options())
        parts: tuple[Any, ...] = (self.message, self.mode) + (() if self.agent is None else (self.agent,))
        return request_fingerprint(*parts, *self._options())

    def _options(self) -> tuple[Any, ...]:
        if not (self.inputs or self.options or self.client_tools or self.parameters):
            return ()
        tools = [{"name": t.name, "description": t.description, "parameters": t.parameters} for t in self.client_tools]
        parameters = (dict(self.parameters),) if self.parameters else ()
        return ([m.to_dict() for m in self.inputs], dict(self.options or {}), tools, *parameters)


@dataclass(frozen=True)
class TurnResult:
    """What one turn answered: the reply, its tool calls and approvals, and where the session stands."""

    session_id: str
    reply: str
    turn: int
    mode: HistoryMode
    agent: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    approvals: tuple[PendingApproval, ...] = ()
    """Tool calls waiting for a person: the turn ended to ask (``status`` is ``awaiting_approval``)."""
    client_calls: tuple[ClientCall, ...] = ()
    """Calls of the client's own tools: the turn ended for the client to run them."""
    usage: Mapping[str, int] | None = field(default=None, compare=False)
    """The model's token counts for the turn, where it reported them (not replayed)."""
    replayed: bool = field(default=False, compare=False)
    """True when an Idempotency-Key retry got the stored result of an earlier attempt."""

    @property
    def status(self) -> TurnStatus:
        return "awaiting_approval" if self.approvals else "completed"

    def to_json(self) -> dict[str, Any]:
        """The turn answer's body (stored results have a format of their own: :mod:`.result_codec`)."""
        return {
            "sessionId": self.session_id,
            "reply": self.reply,
            "turn": self.turn,
            "mode": self.mode,
            "agent": self.agent,
            "toolCalls": [c.to_json() for c in self.tool_calls],
            "approvals": [a.to_json() for a in self.approvals],
            **({"clientCalls": [c.to_json() for c in self.client_calls]} if self.client_calls else {}),
        }


def usage_of(response: AgentResponse) -> dict[str, int] | None:
    """The model's token counts, where it reported them."""
    usage = response.usage_details or {}
    counts = {key: usage.get(f"{key}_token_count") for key in ("input", "output", "total")}
    return {k: int(v) for k, v in counts.items() if isinstance(v, int)} or None


ResponseKeeper = Callable[[TurnResult], Awaitable[dict[str, Any]]]
"""Makes the object a protocol stores for a turn (the OpenAI-compatible response), from the turn's result,
just before the turn commits: it is written in the same commit as the session (see :class:`TurnItems`)."""
