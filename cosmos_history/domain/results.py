"""What a turn is asked to do, and what it answers (also what an idempotent retry replays)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from cosmos_history.domain.approvals import PendingApproval, ToolCall
from cosmos_history.domain.records import request_fingerprint
from cosmos_history.settings import HistoryMode

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

    def fingerprint(self) -> str:
        """What makes a retry "the same request" (the agent counts only when the request names one)."""
        if self.approvals is not None:
            return request_fingerprint("approvals", [list(a) for a in self.approvals], self.agent)
        parts = (self.message, self.mode) if self.agent is None else (self.message, self.mode, self.agent)
        return request_fingerprint(*parts)


@dataclass(frozen=True)
class TurnResult:
    session_id: str
    reply: str
    turn: int
    mode: HistoryMode
    agent: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    approvals: tuple[PendingApproval, ...] = ()
    """Tool calls waiting for a person: the turn ended to ask (``status`` is ``awaiting_approval``)."""
    replayed: bool = field(default=False, compare=False)
    """True when an Idempotency-Key retry got the stored result of an earlier attempt."""

    @property
    def status(self) -> TurnStatus:
        return "awaiting_approval" if self.approvals else "completed"

    def to_json(self) -> dict[str, Any]:
        return {
            "sessionId": self.session_id,
            "reply": self.reply,
            "turn": self.turn,
            "mode": self.mode,
            "agent": self.agent,
            "toolCalls": [c.to_json() for c in self.tool_calls],
            "approvals": [a.to_json() for a in self.approvals],
        }

    @classmethod
    def from_json(cls, value: dict[str, Any], *, replayed: bool = False) -> TurnResult:
        return cls(
            value["sessionId"],
            value["reply"],
            value["turn"],
            value["mode"],
            agent=value.get("agent"),
            tool_calls=tuple(ToolCall(**c) for c in value.get("toolCalls", [])),
            approvals=tuple(PendingApproval(**a) for a in value.get("approvals", [])),
            replayed=replayed,
        )
