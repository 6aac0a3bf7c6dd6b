"""The storage ports in process memory: for fast tests of the turn's logic, and as the reference
for anyone putting the app on another store (``tests/contract`` holds both adapters to one contract).

State is kept as JSON-shaped copies (``to_dict``), never as the caller's objects, so it behaves like
a database: what was saved does not change when the caller changes its objects afterwards.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from agent_framework import AgentSession, InMemoryHistoryProvider, Message

from cosmos_history.domain.archive import keep_within_budget
from cosmos_history.domain.errors import (
    SessionConflictError,
    SessionExistsError,
    SessionNotFoundError,
    TurnInProgressError,
)
from cosmos_history.domain.records import (
    ANONYMOUS_USER,
    MAX_LIST_LIMIT,
    SessionPage,
    SessionRecord,
    SessionSummary,
    validate_session_id,
)
from cosmos_history.domain.session_store import RepositorySessionStore, check_durable
from cosmos_history.settings import HistoryMode

_etags = itertools.count(1)


def _new_etag() -> str:
    return f'"{next(_etags)}-{uuid.uuid4().hex[:8]}"'


@dataclass
class MemoryDatabase:
    """What several repositories, leases and caches share: the "container"."""

    sessions: dict[str, tuple[SessionRecord, str]] = field(default_factory=dict)
    chunks: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    leases: dict[str, tuple[float, str]] = field(default_factory=dict)
    results: dict[tuple[str, str], tuple[str, int, float, dict[str, Any]]] = field(default_factory=dict)
    responses: dict[tuple[str, int], tuple[str, dict[str, Any]]] = field(default_factory=dict)


class MemoryArchive:
    def __init__(self, database: MemoryDatabase) -> None:
        self._db = database

    async def write(self, record: SessionRecord, chunk: int, messages: list[Message]) -> None:
        self._db.chunks[(record.id, record.archive.chunk_id(record.id, chunk))] = [m.to_dict() for m in messages]

    async def read(self, record: SessionRecord, chunk: int) -> list[Message] | None:
        stored = self._db.chunks.get((record.id, record.archive.chunk_id(record.id, chunk)))
        return None if stored is None else [Message.from_dict(copy.deepcopy(m)) for m in stored]

    async def renew(self, record: SessionRecord) -> None:
        return None  # nothing expires in memory


class MemorySessions:
    """:class:`SessionRepository` in memory, acting for one user, with etags like Cosmos DB's."""

    def __init__(
        self,
        database: MemoryDatabase | None = None,
        *,
        user_id: str = ANONYMOUS_USER,
        default_mode: HistoryMode = "local",
        max_item_bytes: int = 1_000_000,
        max_history_messages: int = 200,
        max_history_tokens: int | None = None,
    ) -> None:
        self.database = database if database is not None else MemoryDatabase()
        self.user_id = user_id
        self.default_mode: HistoryMode = default_mode
        self.max_item_bytes = max_item_bytes
        self.max_history_messages = max_history_messages
        self.max_history_tokens = max_history_tokens
        self.archive = MemoryArchive(self.database)
        self.saves = 0

    def for_user(self, user_id: str) -> MemorySessions:
        return MemorySessions(
            self.database,
            user_id=user_id,
            default_mode=self.default_mode,
            max_item_bytes=self.max_item_bytes,
            max_history_messages=self.max_history_messages,
            max_history_tokens=self.max_history_tokens,
        )

    async def load(self, session_id: str) -> SessionRecord | None:
        validate_session_id(session_id)
        stored = self.database.sessions.get(session_id)
        if stored is None:
            return None
        record, etag = stored
        if record.user_id != self.user_id:
            raise SessionNotFoundError()
        return replace(_copy(record), etag=etag)

    async def save(self, record: SessionRecord, *, etag: str | None) -> SessionRecord:
        validate_session_id(record.id)
        if record.user_id != self.user_id:
            raise SessionNotFoundError()
        current = self.database.sessions.get(record.id)
        if etag is None and current is not None:
            raise SessionExistsError(f"A session with id {record.id!r} already exists; choose another id, or omit it.")
        if etag is not None and (current is None or current[1] != etag):
            raise SessionConflictError("The session was changed by another request. Retry.", retry_after=1)
        check_durable(record.session.to_dict()["state"], path="state")
        if record.mode == "local":
            await keep_within_budget(
                record,
                self.archive,
                document_bytes=lambda: len(json.dumps(record.session.to_dict())),
                max_bytes=self.max_item_bytes,
                max_messages=self.max_history_messages,
                max_tokens=self.max_history_tokens,
            )
        stored = _copy(record, service=record.mode == "service")
        new_etag = _new_etag()
        self.database.sessions[record.id] = (stored, new_etag)
        self.saves += 1
        return replace(record, etag=new_etag, loaded_bytes=None, loaded_messages=0)

    async def delete(self, session_id: str) -> bool:
        if await self.load(session_id) is None:
            return False
        del self.database.sessions[session_id]
        for owned in [k for k in self.database.chunks if k[0] == session_id]:
            del self.database.chunks[owned]
        self.database.leases.pop(session_id, None)
        for owned_result in [k for k in self.database.results if k[0] == session_id]:
            del self.database.results[owned_result]
        for owned_response in [k for k in self.database.responses if k[0] == session_id]:
            del self.database.responses[owned_response]
        return True

    async def list_sessions(self, *, limit: int = 20, continuation_token: str | None = None) -> SessionPage:
        limit = max(1, min(limit, MAX_LIST_LIMIT))
        mine = sorted(
            (r for r, _ in self.database.sessions.values() if r.user_id == self.user_id),
            key=lambda r: r.updated_at,
            reverse=True,
        )
        if continuation_token:
            mine = [r for r in mine if r.updated_at < continuation_token]
        page = [
            SessionSummary(r.id, r.title, r.mode, r.created_at, r.updated_at, r.turns, r.agent) for r in mine[:limit]
        ]
        return SessionPage(page, page[-1].updated_at if len(mine) > limit else None)

    async def ping(self) -> None:
        return None


class MemorySessionStore(RepositorySessionStore):
    """The framework's ``SessionStore`` over :class:`MemorySessions`."""

    def __init__(self, database: MemoryDatabase | None = None, **options: Any) -> None:
        super().__init__(MemorySessions(database, **options))


class MemoryTurnLease:
    """The turn lease in memory: the same claim, renewal and expiry rules as the Cosmos one."""

    def __init__(self, database: MemoryDatabase, *, seconds: float = 10) -> None:
        self._db = database
        self.seconds = seconds

    async def claim(self, session_id: str, user_id: str, *, known_etag: str | None) -> str:
        current = self._db.leases.get(session_id)
        if current is not None and current[1] != known_etag:
            remaining = current[0] - time.time()
            if remaining > 0:
                raise TurnInProgressError(
                    "Another turn on this session is in progress; retry when it has finished.",
                    retry_after=max(1, math.ceil(min(remaining, self.seconds / 3))),
                )
        etag = _new_etag()
        self._db.leases[session_id] = (time.time() + self.seconds, etag)
        return etag

    async def renew(self, session_id: str, user_id: str, lease_etag: str) -> str | None:
        if self._db.leases.get(session_id, (0.0, ""))[1] != lease_etag:
            return None  # taken over
        etag = _new_etag()
        self._db.leases[session_id] = (time.time() + self.seconds, etag)
        return etag

    async def release(self, session_id: str, user_id: str, lease_etag: str) -> None:
        if self._db.leases.get(session_id, (0.0, ""))[1] == lease_etag:
            self._db.leases[session_id] = (0.0, _new_etag())


class MemoryReplayCache:
    def __init__(self, database: MemoryDatabase, *, ttl_seconds: int = 86400) -> None:
        self._db = database
        self.ttl_seconds = ttl_seconds

    async def find(self, session_id: str, user_id: str, key_hash: str, *, turn: int) -> dict[str, Any] | None:
        stored = self._db.results.get((session_id, key_hash))
        if stored is None or stored[0] != user_id or stored[1] != turn or stored[2] < time.time():
            return None
        return copy.deepcopy(stored[3])

    async def record(self, session_id: str, user_id: str, key_hash: str, *, turn: int, result: dict[str, Any]) -> None:
        self._db.results[(session_id, key_hash)] = (
            user_id,
            turn,
            time.time() + self.ttl_seconds,
            copy.deepcopy(result),
        )


class MemoryResponseLog:
    def __init__(self, database: MemoryDatabase) -> None:
        self._db = database

    async def record(self, session_id: str, user_id: str, turn: int, response: dict[str, Any]) -> None:
        self._db.responses[(session_id, turn)] = (user_id, copy.deepcopy(response))

    async def find(self, session_id: str, user_id: str, turn: int) -> dict[str, Any] | None:
        owner, response = self._db.responses.get((session_id, turn), (None, None))
        return copy.deepcopy(response) if owner == user_id else None

    async def delete(self, session_id: str, user_id: str, turn: int) -> bool:
        if await self.find(session_id, user_id, turn) is None:
            return False
        del self._db.responses[(session_id, turn)]
        return True


def _copy(record: SessionRecord, *, service: bool = False) -> SessionRecord:
    """A copy sharing nothing with ``record``; a service-mode copy drops the history, as a document does."""
    data = record.session.to_dict()
    if service:
        data["state"].pop(InMemoryHistoryProvider.DEFAULT_SOURCE_ID, None)
    return replace(copy.deepcopy(record), session=AgentSession.from_dict(data))
