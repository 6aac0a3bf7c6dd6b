"""What a stored session is, independent of where it is stored: the record, its pages, its id rule."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from agent_framework import AgentSession, Message

from cosmos_history.domain.archive import ArchiveIndex
from cosmos_history.domain.errors import InvalidSessionIdError
from cosmos_history.domain.modes import HistoryMode
from cosmos_history.domain.tool_journal import StartedCall

if TYPE_CHECKING:
    from cosmos_history.domain.stored_forms import StoredForms

ANONYMOUS_USER = "anonymous"
MAX_LIST_LIMIT = 100
TITLE_CHARS = 60
MAX_SESSION_ID_LENGTH = 128
"""The framework's own ``FileSessionStore.MAX_SESSION_ID_LENGTH``: store keys are interchangeable."""
RECENT_KEYS = 50
"""Idempotency keys a session remembers; older ones fall out (their results may still be cached)."""


def key_digest(key: str) -> str:
    """How an ``Idempotency-Key`` is stored: hashed, so keys never appear in documents or item ids."""
    return hashlib.sha256(key.encode()).hexdigest()[:40]


def request_fingerprint(*parts: Any) -> str:
    """A stable hash of what makes two requests "the same" for replay purposes."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def utc_now() -> str:
    """ISO-8601 UTC timestamp with microseconds: sorts as text, as the listing query needs."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def validate_session_id(session_id: object) -> None:
    """A store key is any non-empty string of up to 128 characters (adapters encode what they cannot store).

    Raises:
        InvalidSessionIdError: a ``ValueError`` (as the framework's stores raise) and a 400 over HTTP.
    """
    if not isinstance(session_id, str) or not session_id:
        raise InvalidSessionIdError("session_id must be a non-empty string")
    if len(session_id) > MAX_SESSION_ID_LENGTH:
        raise InvalidSessionIdError(f"session_id must be at most {MAX_SESSION_ID_LENGTH} characters")


@dataclass(frozen=True)
class RecentKey:
    """An ``Idempotency-Key`` whose turn is part of the session: committed by the same conditional write."""

    key_hash: str
    fingerprint: str
    turn: int
    expires_at: float

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key_hash, "fingerprint": self.fingerprint, "turn": self.turn, "expiresAt": self.expires_at}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> RecentKey:
        return cls(str(value["key"]), str(value["fingerprint"]), int(value["turn"]), float(value["expiresAt"]))


@dataclass
class SessionRecord:
    """A conversation session plus the metadata the API shows and queries use.

    ``id`` is the store key; the framework session inside keeps its own ``session_id``, which may differ
    (the ``SessionStore`` contract returns a session exactly as it was set under any key).
    """

    session: AgentSession
    user_id: str
    mode: HistoryMode
    created_at: str
    updated_at: str
    turns: int = 0
    title: str | None = None
    etag: str | None = None
    """The stored document's etag; ``None`` until the record has been stored."""
    archive: ArchiveIndex = field(default_factory=ArchiveIndex)
    recent_keys: list[RecentKey] = field(default_factory=list)
    agent: str | None = None
    """The agent the session belongs to (``None`` in documents older than agents: the default one)."""
    key: str | None = None
    """The store key, when it differs from ``session.session_id``."""
    tool_journal: list[StartedCall] = field(default_factory=list)
    """Calls with side effects a turn started and has not saved yet (see :mod:`.tool_journal`)."""
    loaded_bytes: int | None = field(default=None, compare=False, repr=False)
    """Size of the document as read; lets a save skip measuring a document far from its budget."""
    loaded_messages: int = field(default=0, compare=False, repr=False)
    stored_forms: StoredForms | None = field(default=None, compare=False, repr=False)
    """The loaded history messages' stored JSON forms: a save reuses those of the unchanged ones."""
    pending_chunks: list[tuple[int, list[Message]]] = field(default_factory=list, compare=False, repr=False)
    """Archive chunks the budget moved out of this record that its save writes with the document (only for a
    repository that :attr:`~.ports.SessionRepository.commits_chunks`; otherwise they are written at once)."""

    @property
    def id(self) -> str:
        return self.key if self.key is not None else self.session.session_id

    @classmethod
    def new(
        cls, session_id: str, *, user_id: str, mode: HistoryMode, title: str | None = None, agent: str | None = None
    ) -> SessionRecord:
        now = utc_now()
        return cls(AgentSession(session_id=session_id), user_id, mode, now, now, title=title, agent=agent)

    def committed_key(self, key_hash: str) -> RecentKey | None:
        """The idempotency key's entry: present only if this version of the session holds its turn."""
        return next((k for k in self.recent_keys if k.key_hash == key_hash), None)

    def commit_key(self, key_hash: str, fingerprint: str, *, ttl_seconds: float) -> None:
        """Remember that this version's newest turn answers ``key_hash`` (expired and oldest entries drop)."""
        now = time.time()
        kept = [k for k in self.recent_keys if k.expires_at > now and k.key_hash != key_hash]
        kept.append(RecentKey(key_hash, fingerprint, self.turns, round(now + ttl_seconds, 3)))
        self.recent_keys = kept[-RECENT_KEYS:]


def empty_like(record: SessionRecord) -> SessionRecord:
    """``record`` as a session with no turn yet (what a first turn's tool journal is stored on)."""
    empty = SessionRecord.new(record.id, user_id=record.user_id, mode=record.mode, agent=record.agent)
    empty.created_at = empty.updated_at = record.created_at
    empty.tool_journal = list(record.tool_journal)
    return empty


@dataclass(frozen=True)
class LeaseClaim:
    """A turn's lease, claimed in the same request that read the session (see :class:`TurnLease`)."""

    etag: str
    """The claim's token: renewals and the release are conditional on the lease still naming it."""
    record: SessionRecord | None
    """The session as it stood when the lease was claimed; ``None`` when it does not exist yet."""


@dataclass(frozen=True)
class ReplayEntry:
    """The answer a keyed turn keeps for its retries, committed with the turn (see :class:`ReplayCache`)."""

    key_hash: str
    turn: int
    result: dict[str, Any]
    ttl_seconds: int


@dataclass(frozen=True)
class TurnItems:
    """What a turn commits besides its session document, in the same atomic write (the unit of work)."""

    lease_etag: str | None = None
    """Release this lease claim (the token it holds: a lease another turn took over fails the whole commit)."""
    replay: ReplayEntry | None = None
    response: dict[str, Any] | None = None
    """The turn's stored response object (OpenAI-compatible endpoint), kept under the turn's number."""

    def __bool__(self) -> bool:
        return self.lease_etag is not None or self.replay is not None or self.response is not None


NO_ITEMS = TurnItems()


@dataclass(frozen=True)
class SessionSummary:
    """One session as a listing shows it: no messages, only what names and dates it."""

    id: str
    title: str | None
    mode: str
    created_at: str
    updated_at: str
    turns: int
    agent: str | None = None
    """The agent the session talks to (``None`` for sessions stored before sessions named theirs)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "mode": self.mode,
            "agent": self.agent,
            "updatedAt": self.updated_at,
            "turns": self.turns,
        }


@dataclass(frozen=True)
class SessionPage:
    """One page of a caller's sessions, newest first, and the token that continues the listing."""

    sessions: list[SessionSummary] = field(default_factory=list)
    continuation_token: str | None = None


def first_text(message: str | Message | list[Message]) -> str:
    """The text of the first user message a turn ran on ("" for approval answers and tool outputs)."""
    if isinstance(message, str):
        return message
    messages = message if isinstance(message, list) else [message]
    return next((m.text for m in messages if m.role == "user" and m.text), "")


def title_from(message: str) -> str | None:
    """The first words of the first message, cut at a word boundary (local mode only: service
    mode documents must hold no message text)."""
    words = " ".join(message.split())
    if not words:
        return None
    if len(words) <= TITLE_CHARS:
        return words
    cut = words[:TITLE_CHARS].rsplit(" ", 1)[0] or words[:TITLE_CHARS]
    return cut + "…"
