"""The storage ports in process memory: for fast tests of the turn's logic, and as the reference
for anyone putting the app on another store (``tests/contract`` holds both adapters to one contract).

State is kept as JSON-shaped copies (``to_dict``), never as the caller's objects, so it behaves like
a database: what was saved does not change when the caller changes its objects afterwards. Every
entry is keyed by ``(user id, session id, ...)``, as Cosmos DB's items by their partition key
``[userId, sessionId]``: another user's session is not there, and two users may share a session id.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from agent_framework import AgentSession, InMemoryHistoryProvider, Message

from cosmos_history.domain.budget import StoredSize
from cosmos_history.domain.errors import (
    BadRequestError,
    SessionConflictError,
    SessionExistsError,
    SessionNotFoundError,
    TurnInProgressError,
)
from cosmos_history.domain.policy import DEFAULT_POLICY, HistoryPolicy
from cosmos_history.domain.records import (
    ANONYMOUS_USER,
    MAX_LIST_LIMIT,
    NO_ITEMS,
    LeaseClaim,
    SessionPage,
    SessionRecord,
    SessionSummary,
    TurnItems,
    empty_like,
    validate_session_id,
)
from cosmos_history.domain.session_store import RepositorySessionStore, check_durable
from cosmos_history.domain.turn_records import EventBatch, StoredEvent, TurnRecord

_etags = itertools.count(1)


def _new_etag() -> str:
    return f'"{next(_etags)}-{uuid.uuid4().hex[:8]}"'


@dataclass
class MemoryDatabase:
    """What several repositories, leases and caches share: the "container", and the clock its expiries read
    (tests pass a clock they move by hand, so expiry is instant and deterministic)."""

    sessions: dict[tuple[str, str], tuple[SessionRecord, str]] = field(default_factory=dict)
    chunks: dict[tuple[str, str, str], list[dict[str, Any]]] = field(default_factory=dict)
    leases: dict[tuple[str, str], tuple[float, str]] = field(default_factory=dict)
    results: dict[tuple[str, str, str], tuple[int, float, dict[str, Any]]] = field(default_factory=dict)
    responses: dict[tuple[str, str, int], dict[str, Any]] = field(default_factory=dict)
    turns: dict[tuple[str, str, int], tuple[dict[str, Any], str]] = field(default_factory=dict)
    event_batches: dict[tuple[str, str, int, str, int], tuple[float, list[dict[str, Any]]]] = field(
        default_factory=dict
    )
    clock: Callable[[], float] = time.time


class MemoryArchive:
    def __init__(self, database: MemoryDatabase) -> None:
        self._db = database

    async def write(self, record: SessionRecord, chunk: int, messages: list[Message]) -> None:
        key = (record.user_id, record.id, record.archive.chunk_id(record.id, chunk))
        self._db.chunks[key] = [m.to_dict() for m in messages]

    async def read(self, record: SessionRecord, chunk: int) -> list[Message] | None:
        stored = self._db.chunks.get((record.user_id, record.id, record.archive.chunk_id(record.id, chunk)))
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
    ) -> None:
        self.database = database if database is not None else MemoryDatabase()
        self.user_id = user_id
        self.archive = MemoryArchive(self.database)
        self.commits_chunks = False  # the budget writes each chunk as it plans it
        self.saves = 0

    def measure(self, record: SessionRecord) -> StoredSize:
        """The serialized session's length (message sizes left to the domain to measure)."""
        data = record.session.to_dict()
        check_durable(data["state"], path="state")
        return StoredSize(len(json.dumps(data)))

    def for_user(self, user_id: str) -> MemorySessions:
        return MemorySessions(self.database, user_id=user_id)

    async def load(self, session_id: str) -> SessionRecord | None:
        validate_session_id(session_id)
        stored = self.database.sessions.get((self.user_id, session_id))
        if stored is None:
            return None
        record, etag = stored
        return replace(_copy(record), etag=etag)

    async def save(self, record: SessionRecord, *, etag: str | None, items: TurnItems = NO_ITEMS) -> SessionRecord:
        """The document and ``items`` together: every condition is checked before anything is written."""
        validate_session_id(record.id)
        if record.user_id != self.user_id:
            raise SessionNotFoundError()
        key = (self.user_id, record.id)
        current = self.database.sessions.get(key)
        if etag is None and current is not None:
            raise SessionExistsError(f"A session with id {record.id!r} already exists; choose another id, or omit it.")
        if etag is not None and (current is None or current[1] != etag):
            raise SessionConflictError("The session was changed by another request. Retry.", retry_after=1)
        if items.lease_etag is not None and self.database.leases.get(key, (0.0, ""))[1] != items.lease_etag:
            raise SessionConflictError("Another turn took this session over while this one ran. Retry.", retry_after=1)
        check_durable(record.session.to_dict()["state"], path="state")  # stored as given: the domain fitted it
        stored = _copy(record, service=record.mode == "service")
        new_etag = _new_etag()
        self.database.sessions[key] = (stored, new_etag)
        if items.lease_etag is not None:
            self.database.leases[key] = (0.0, "")
        if items.replay is not None:
            entry = items.replay
            expires = self.database.clock() + entry.ttl_seconds
            self.database.results[(*key, entry.key_hash)] = (entry.turn, expires, copy.deepcopy(entry.result))
        if items.response is not None:
            self.database.responses[(*key, record.turns)] = copy.deepcopy(items.response)
        self.saves += 1
        return replace(record, etag=new_etag, loaded_bytes=None, loaded_messages=0)

    async def note_started(self, record: SessionRecord) -> str:
        if record.user_id != self.user_id:
            raise SessionNotFoundError("No session with this id.")
        current = self.database.sessions.get((self.user_id, record.id))
        if record.etag is None:
            if current is not None:
                raise SessionExistsError(f"A session with id {record.id!r} already exists.", retry_after=1)
            stored = empty_like(record)
        elif current is None or current[1] != record.etag:
            raise SessionConflictError("The session was changed by another request. Retry.", retry_after=1)
        else:
            stored = replace(_copy(current[0]), tool_journal=list(record.tool_journal))
        new_etag = _new_etag()
        self.database.sessions[(self.user_id, record.id)] = (stored, new_etag)
        return new_etag

    async def delete(self, session_id: str) -> bool:
        if await self.load(session_id) is None:
            return False
        partition = (self.user_id, session_id)
        del self.database.sessions[partition]
        self.database.leases.pop(partition, None)
        tables: list[dict[Any, Any]] = [self.database.chunks, self.database.results, self.database.responses]
        for table in (*tables, self.database.turns, self.database.event_batches):
            for owned in [k for k in table if k[:2] == partition]:
                del table[owned]
        return True

    async def list_sessions(self, *, limit: int = 20, continuation_token: str | None = None) -> SessionPage:
        """Newest first; the token is the (updatedAt, id) of the last session shown, so sessions
        updated in the same instant are neither skipped nor repeated."""
        limit = max(1, min(limit, MAX_LIST_LIMIT))
        mine = sorted(
            (r for (user, _), (r, _) in self.database.sessions.items() if user == self.user_id),
            key=lambda r: (r.updated_at, r.id),
            reverse=True,
        )
        if continuation_token:
            after = _decode_cursor(continuation_token)
            mine = [r for r in mine if (r.updated_at, r.id) < after]
        page = [
            SessionSummary(r.id, r.title, r.mode, r.created_at, r.updated_at, r.turns, r.agent) for r in mine[:limit]
        ]
        more = len(mine) > limit
        return SessionPage(page, json.dumps([page[-1].updated_at, page[-1].id]) if more else None)

    async def ping(self) -> None:
        return None


class MemorySessionStore(RepositorySessionStore):
    """The framework's ``SessionStore`` over :class:`MemorySessions`, under ``policy``."""

    def __init__(
        self, database: MemoryDatabase | None = None, *, policy: HistoryPolicy = DEFAULT_POLICY, **options: Any
    ) -> None:
        super().__init__(MemorySessions(database, **options), policy=policy)


class MemoryTurnLease:
    """The turn lease in memory: the same claim (with the read), renewal, expiry and release rules as the
    Cosmos one (a claim's token is its holder id, kept by renewals); expiry reads the database's clock."""

    def __init__(self, database: MemoryDatabase, *, seconds: float = 10) -> None:
        self._db = database
        self.seconds = seconds

    async def claim(self, session_id: str, user_id: str) -> LeaseClaim:
        validate_session_id(session_id)
        key = (user_id, session_id)
        current = self._db.leases.get(key)
        if current is not None:
            remaining = current[0] - self._db.clock()
            if remaining > 0:
                raise TurnInProgressError(
                    "Another turn on this session is in progress; retry when it has finished.",
                    retry_after=max(1, math.ceil(min(remaining, self.seconds / 3))),
                )
        etag = _new_etag()
        self._db.leases[key] = (self._db.clock() + self.seconds, etag)
        stored = self._db.sessions.get(key)
        return LeaseClaim(etag, None if stored is None else replace(_copy(stored[0]), etag=stored[1]))

    async def renew(self, session_id: str, user_id: str, lease_etag: str) -> str | None:
        if self._db.leases.get((user_id, session_id), (0.0, ""))[1] != lease_etag:
            return None  # taken over
        self._db.leases[(user_id, session_id)] = (self._db.clock() + self.seconds, lease_etag)
        return lease_etag

    async def release(self, session_id: str, user_id: str, lease_etag: str) -> None:
        if self._db.leases.get((user_id, session_id), (0.0, ""))[1] == lease_etag:
            self._db.leases[(user_id, session_id)] = (0.0, "")


class MemoryReplayCache:
    def __init__(self, database: MemoryDatabase, *, ttl_seconds: int = 86400) -> None:
        self._db = database
        self.ttl_seconds = ttl_seconds

    async def find(self, session_id: str, user_id: str, key_hash: str, *, turn: int) -> dict[str, Any] | None:
        stored = self._db.results.get((user_id, session_id, key_hash))
        if stored is None or stored[0] != turn or stored[1] < self._db.clock():
            return None
        return copy.deepcopy(stored[2])

    async def record(self, session_id: str, user_id: str, key_hash: str, *, turn: int, result: dict[str, Any]) -> None:
        self._db.results[(user_id, session_id, key_hash)] = (
            turn,
            self._db.clock() + self.ttl_seconds,
            copy.deepcopy(result),
        )


class MemoryResponseLog:
    def __init__(self, database: MemoryDatabase) -> None:
        self._db = database

    async def record(self, session_id: str, user_id: str, turn: int, response: dict[str, Any]) -> None:
        self._db.responses[(user_id, session_id, turn)] = copy.deepcopy(response)

    async def find(self, session_id: str, user_id: str, turn: int) -> dict[str, Any] | None:
        response = self._db.responses.get((user_id, session_id, turn))
        return None if response is None else copy.deepcopy(response)

    async def delete(self, session_id: str, user_id: str, turn: int) -> bool:
        return self._db.responses.pop((user_id, session_id, turn), None) is not None


class MemoryTurnLog:
    """Turn records and event batches; a batch expires ``event_ttl_seconds`` after it was written, by the
    database's clock (Cosmos DB's ``ttl``, which the local emulator stores but never enforces)."""

    def __init__(self, database: MemoryDatabase, *, event_ttl_seconds: int = 86400) -> None:
        self._db = database
        self.event_ttl_seconds = event_ttl_seconds

    async def put(self, record: TurnRecord) -> TurnRecord:
        record.etag = _new_etag()
        key = (record.user_id, record.session_id, record.turn)
        self._db.turns[key] = (copy.deepcopy(record.to_json()), record.etag)
        return record

    async def create(self, record: TurnRecord) -> TurnRecord | None:
        if (record.user_id, record.session_id, record.turn) in self._db.turns:
            return None
        return await self.put(record)

    async def replace(self, record: TurnRecord) -> TurnRecord | None:
        stored = self._db.turns.get((record.user_id, record.session_id, record.turn))
        if stored is None or stored[1] != record.etag:
            return None
        return await self.put(record)

    async def find(self, session_id: str, user_id: str, turn: int) -> TurnRecord | None:
        stored = self._db.turns.get((user_id, session_id, turn))
        if stored is None:
            return None
        return TurnRecord.from_json(session_id, user_id, copy.deepcopy(stored[0]), stored[1])

    async def cancelled_turns(self, session_id: str, user_id: str, *, after: int) -> list[int]:
        return sorted(
            turn
            for (user, session, turn), (item, _) in self._db.turns.items()
            if (user, session) == (user_id, session_id) and turn > after and _cancelled_running(item)
        )

    async def append(self, record: TurnRecord, batch: EventBatch) -> None:
        key = (record.user_id, record.session_id, record.turn, record.attempt, batch.number)
        expires = self._db.clock() + self.event_ttl_seconds
        self._db.event_batches[key] = (expires, [event.to_json() for event in batch.events])

    async def batch(self, record: TurnRecord, number: int) -> EventBatch | None:
        stored = self._db.event_batches.get((record.user_id, record.session_id, record.turn, record.attempt, number))
        if stored is None or stored[0] <= self._db.clock():
            return None
        return EventBatch(number, tuple(StoredEvent.from_json(copy.deepcopy(e)) for e in stored[1]))


def _decode_cursor(token: str) -> tuple[str, str]:
    try:
        cursor = json.loads(token)
    except ValueError:
        cursor = None
    if not (isinstance(cursor, list) and len(cursor) == 2 and all(isinstance(part, str) for part in cursor)):
        raise BadRequestError("The continuation token is not valid.")
    return cursor[0], cursor[1]


def _copy(record: SessionRecord, *, service: bool = False) -> SessionRecord:
    """A copy sharing nothing with ``record``; a service-mode copy drops the history, as a document does."""
    data = record.session.to_dict()
    if service:
        data["state"].pop(InMemoryHistoryProvider.DEFAULT_SOURCE_ID, None)
    return replace(copy.deepcopy(record), session=AgentSession.from_dict(data))


def _cancelled_running(item: dict[str, Any]) -> bool:
    """A record of a turn cancelled after it started (a queued turn cancelled before it ran used no number)."""
    return item.get("status") == "cancelled" and bool(item.get("streamed"))
