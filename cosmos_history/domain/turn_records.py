"""Turns that outlive their request: a record per addressable turn, and its stored events.

A turn's id is its number in the session (the ``turn`` of its answer). A plain (non-streamed, foreground)
turn keeps no record: its status is the session's own (it happened when the session counts it), so it costs
what it always did. A streamed turn, and a queued (background) one, keeps a :class:`TurnRecord`: one small
item beside the session (never inside the session document, whose etag a running turn's conditional save
depends on), holding its status, the request a queue worker runs it on, its answer once it ended, and the
flag that asks it to stop. Its events are stored in batches (:class:`EventBatch`), one item per batch,
written by :mod:`cosmos_history.domain.event_log` while it runs.

A turn that failed saved nothing (as before), so the session's next turn takes the same number: the record
then describes that new *attempt* (``attempt`` tells attempts apart; their event batches carry it). A
cancelled turn uses its number up (:mod:`cosmos_history.domain.cancel`), so its record stays.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from cosmos_history.domain.errors import ProblemError
from cosmos_history.domain.records import utc_now

TurnStatus = Literal["queued", "in_progress", "awaiting_approval", "completed", "failed", "cancelled"]
TURN_STATUSES: tuple[TurnStatus, ...] = (
    "queued",
    "in_progress",
    "awaiting_approval",
    "completed",
    "failed",
    "cancelled",
)
FINISHED: frozenset[TurnStatus] = frozenset({"awaiting_approval", "completed", "failed", "cancelled"})
"""Statuses a turn never leaves (``awaiting_approval`` ended the turn: the answers are the next turn)."""


@dataclass(frozen=True)
class StoredEvent:
    """One event of a turn as its stream shows it: ``seq`` (1, 2, ... within the attempt), its SSE name and data.

    The live stream and a replay encode the same stored form, so a resumed client reads the same bytes."""

    seq: int
    name: str
    data: Any

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "event": self.name, "data": self.data}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> StoredEvent:
        return cls(int(value["seq"]), str(value["event"]), value["data"])

    @property
    def terminal(self) -> bool:
        """The last event of a turn: ``done`` or ``error``."""
        return self.name in ("done", "error")


@dataclass(frozen=True)
class EventBatch:
    """Events ``first``..``last`` of one attempt at a turn, stored together (one write per batch)."""

    number: int
    events: tuple[StoredEvent, ...]

    @property
    def last(self) -> int:
        return self.events[-1].seq if self.events else 0


@dataclass
class TurnRecord:
    """An addressable turn of a session (see the module docstring). ``etag`` is the stored version's."""

    session_id: str
    user_id: str
    turn: int
    status: TurnStatus
    attempt: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    created_at: str = field(default_factory=utc_now)
    updated_at: str = field(default_factory=utc_now)
    mode: str | None = None
    agent: str | None = None
    request: dict[str, Any] | None = None
    """What the turn runs on (:func:`request_json`): kept for a queued turn, so a queue worker can run it."""
    result: dict[str, Any] | None = None
    """The turn's answer (the turn answer's JSON, without ``status``) once it completed or awaits approval."""
    error: dict[str, Any] | None = None
    """Why it failed or was cancelled (:func:`error_fields`)."""
    cancel_requested: bool = False
    batches: int = 0
    """Event batches stored so far (all of them once the turn ended)."""
    last_event: int = 0
    """The ``seq`` of the last stored event."""
    streamed: bool = False
    """Whether the turn's events are stored (``GET .../events`` can replay them)."""
    deadline: float | None = None
    """Epoch seconds after which a turn still ``in_progress`` can only have been lost with its process."""
    etag: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def reason(self) -> str | None:
        """A failed (or cancelled) turn's reason, in words."""
        return str(self.error.get("detail") or self.error.get("title")) if self.error else None

    def lost(self, now: float) -> bool:
        """Whether this unfinished turn's process must have died: past its deadline and never ended."""
        return self.status == "in_progress" and self.deadline is not None and now > self.deadline

    def ended(self, status: TurnStatus, **changes: Any) -> TurnRecord:
        """This record as a turn that ended ``status``."""
        return replace(self, status=status, updated_at=utc_now(), **changes)

    def answer_json(self, now: float) -> dict[str, Any]:
        """The turn answer's shape plus ``status``, ``reason`` (why it failed or was cancelled, else ``None``)
        and ``recorded`` (true: the answer comes from this record)."""
        status: TurnStatus = "failed" if self.lost(now) else self.status
        body: dict[str, Any] = {
            "sessionId": self.session_id,
            "reply": "",
            "turn": self.turn,
            "mode": self.mode,
            "agent": self.agent,
            "toolCalls": [],
            "approvals": [],
            **(self.result or {}),
        }
        body["status"] = status
        body["reason"] = None
        if status in ("failed", "cancelled"):
            body["reason"] = self.reason or "The turn's process stopped before the turn ended; nothing of it was saved."
        body["recorded"] = True
        return body

    def to_json(self) -> dict[str, Any]:
        return {
            "turn": self.turn,
            "status": self.status,
            "attempt": self.attempt,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "mode": self.mode,
            "agent": self.agent,
            "request": self.request,
            "result": self.result,
            "error": self.error,
            "cancelRequested": self.cancel_requested,
            "batches": self.batches,
            "lastEvent": self.last_event,
            "streamed": self.streamed,
            "deadline": self.deadline,
        }

    @classmethod
    def from_json(cls, session_id: str, user_id: str, value: dict[str, Any], etag: str | None) -> TurnRecord:
        return cls(
            session_id,
            user_id,
            int(value["turn"]),
            value["status"],
            attempt=str(value["attempt"]),
            created_at=value.get("createdAt") or utc_now(),
            updated_at=value.get("updatedAt") or utc_now(),
            mode=value.get("mode"),
            agent=value.get("agent"),
            request=value.get("request"),
            result=value.get("result"),
            error=value.get("error"),
            cancel_requested=bool(value.get("cancelRequested")),
            batches=int(value.get("batches") or 0),
            last_event=int(value.get("lastEvent") or 0),
            streamed=bool(value.get("streamed")),
            deadline=value.get("deadline"),
            etag=etag,
        )


def request_json(
    message: str,
    *,
    approvals: Sequence[tuple[str, bool]] | None = None,
    mode: str | None = None,
    agent: str | None = None,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """What a queued turn runs on, as stored in its record (the native API's message or approval answers)."""
    return {
        "message": message,
        "approvals": None if approvals is None else [[a, bool(ok)] for a, ok in approvals],
        "mode": mode,
        "agent": agent,
        "idempotencyKey": idempotency_key,
    }


class TurnLog(Protocol):
    """Turn records and their event batches, stored beside the session (deleted with it).

    Records live as long as the session's items; batches expire after the event retention.
    """

    event_ttl_seconds: int

    async def put(self, record: TurnRecord) -> TurnRecord:
        """Create the record, or overwrite an earlier attempt at the same turn number; returns it with its etag."""
        ...

    async def create(self, record: TurnRecord) -> TurnRecord | None:
        """Write ``record`` only if no record has its turn number; ``None`` when one has (a racing request's)."""
        ...

    async def replace(self, record: TurnRecord) -> TurnRecord | None:
        """Write ``record`` only if the stored one still has ``record.etag``; ``None`` when it changed."""
        ...

    async def find(self, session_id: str, user_id: str, turn: int) -> TurnRecord | None:
        """The caller's turn record, ``None`` when there is none (or it is another user's)."""
        ...

    async def cancelled_turns(self, session_id: str, user_id: str, *, after: int) -> list[int]:
        """The numbers after ``after`` of the caller's turns that were cancelled while they ran: each used its
        number up and left nothing in the history (:mod:`cosmos_history.domain.cancel`)."""
        ...

    async def append(self, record: TurnRecord, batch: EventBatch) -> None:
        """Store one batch of ``record``'s attempt (its number is ``batch.number``, 1, 2, ...)."""
        ...

    async def batch(self, record: TurnRecord, number: int) -> EventBatch | None:
        """Batch ``number`` of ``record``'s attempt; ``None`` when not written yet or expired."""
        ...


def error_fields(error: BaseException) -> dict[str, Any]:
    """How a turn's error is stored (in its record and its ``error`` event), in no protocol's words: each edge
    renders it (:func:`cosmos_history.http.responses.stored_problem`). Anything but a :class:`ProblemError` is
    stored as an internal error, its text never."""
    if not isinstance(error, ProblemError):
        error = ProblemError("The server failed to handle this request.")
    return {
        "kind": error.kind.value,
        "slug": error.slug,
        "title": error.title,
        "detail": error.detail,
        "extensions": dict(error.extensions),
    }
