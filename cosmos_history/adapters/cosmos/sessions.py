"""Sessions in Cosmos DB: one document per conversation, written only with optimistic concurrency.

The store implements the framework's ``SessionStore`` contract (``get``/``set``/``delete``)
so it can stand in wherever the framework expects one, and adds what a stateless,
scaled-out backend needs: ``load`` returns the document's etag, and ``save`` writes
only if nobody else did in between (If-Match, or create-only for a new session).
A stale write becomes :class:`SessionConflictError`; it never overwrites.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import contextlib
import re
import time
import warnings
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from agent_framework import AgentSession, Message, SessionStore
from azure.core import MatchConditions
from azure.cosmos import exceptions as cosmos_errors
from azure.cosmos.aio import ContainerProxy

from cosmos_history.adapters.cosmos.client import container_missing, response_size, store_errors, written_etag
from cosmos_history.domain.archive import ArchiveIndex, archive_item, history_messages, json_size, plan_archive
from cosmos_history.domain.errors import (
    BadRequestError,
    InvalidSessionIdError,
    SessionConflictError,
    SessionExistsError,
    SessionNotFoundError,
)
from cosmos_history.settings import HistoryMode

# SessionStore is marked experimental in agent-framework-core; building on it is deliberate (it is the
# contract hosting code expects), so its warning is not repeated at every import.
warnings.filterwarnings("ignore", message=r"\[SESSION_STORE\]")

SCHEMA_VERSION = 1
SESSION_TYPE = "session"
ANONYMOUS_USER = "anonymous"
MAX_LIST_LIMIT = 100

_SESSION_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")


def utc_now() -> str:
    """ISO-8601 UTC timestamp with microseconds: sorts as text, as the listing query needs."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class SessionRecord:
    """A conversation session plus the metadata the API shows and queries use."""

    session: AgentSession
    user_id: str
    mode: HistoryMode
    created_at: str
    updated_at: str
    turns: int = 0
    title: str | None = None
    etag: str | None = None
    """The stored document's etag; ``None`` until the record has been stored."""
    lease_etag: str | None = None
    """Etag of the lease claim that produced this version (see :mod:`._lease`)."""
    archive: ArchiveIndex = field(default_factory=ArchiveIndex)
    loaded_bytes: int | None = field(default=None, compare=False, repr=False)
    """Size of the document as read; lets a save skip measuring a document far from its budget."""
    loaded_messages: int = field(default=0, compare=False, repr=False)

    @property
    def id(self) -> str:
        return self.session.session_id

    @classmethod
    def new(cls, session_id: str, *, user_id: str, mode: HistoryMode, title: str | None = None) -> SessionRecord:
        now = utc_now()
        return cls(AgentSession(session_id=session_id), user_id, mode, now, now, title=title)


@dataclass(frozen=True)
class SessionSummary:
    id: str
    title: str | None
    mode: str
    created_at: str
    updated_at: str
    turns: int

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "mode": self.mode,
            "updatedAt": self.updated_at,
            "turns": self.turns,
        }


@dataclass(frozen=True)
class HistoryPage:
    messages: list[tuple[int, Message]]
    total: int
    next_before: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "messages": [{"index": i, "role": m.role, "text": m.text} for i, m in self.messages],
            "total": self.total,
            "before": self.next_before,
        }


@dataclass(frozen=True)
class SessionPage:
    sessions: list[SessionSummary] = field(default_factory=list)
    continuation_token: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"sessions": [s.to_json() for s in self.sessions], "continuationToken": self.continuation_token}


class RecordStore(Protocol):
    """What the turn needs from a store: etag-aware load and conditional save, for one user."""

    user_id: str
    default_mode: HistoryMode

    async def load(self, session_id: str) -> SessionRecord | None: ...

    async def save(self, record: SessionRecord, *, etag: str | None) -> SessionRecord: ...


def validate_session_id(session_id: str) -> None:
    """Accept 1-128 characters of ``[A-Za-z0-9._:-]``: safe as a Cosmos id and in a URL."""
    if not isinstance(session_id, str) or not _SESSION_ID.match(session_id) or session_id in (".", ".."):
        raise InvalidSessionIdError("A session id is 1-128 characters of letters, digits, '.', '_', ':' or '-'.")


class CosmosSessionStore(SessionStore):
    """Session documents in one container partitioned by ``/sessionId``, scoped to one user.

    A store instance acts for one caller (``user_id``): another user's session is
    reported as missing, so ids reveal nothing. :meth:`for_user` makes a scoped copy
    that shares the container client.
    """

    def __init__(
        self,
        container: ContainerProxy,
        *,
        user_id: str = ANONYMOUS_USER,
        default_mode: HistoryMode = "local",
        ttl_seconds: int | None = None,
        max_item_bytes: int = 1_000_000,
        max_history_messages: int = 200,
    ) -> None:
        self._container = container
        self.user_id = user_id
        self.default_mode: HistoryMode = default_mode
        self.ttl_seconds = ttl_seconds
        self.max_item_bytes = max_item_bytes
        self.max_history_messages = max_history_messages

    @property
    def container(self) -> ContainerProxy:
        return self._container

    def for_user(self, user_id: str) -> CosmosSessionStore:
        """The same store acting for ``user_id``."""
        return CosmosSessionStore(
            self._container,
            user_id=user_id,
            default_mode=self.default_mode,
            ttl_seconds=self.ttl_seconds,
            max_item_bytes=self.max_item_bytes,
            max_history_messages=self.max_history_messages,
        )

    validate_session_id = staticmethod(validate_session_id)

    # --- etag-aware operations -------------------------------------------------------------

    async def load(self, session_id: str) -> SessionRecord | None:
        """Point-read the session (one round trip); ``None`` when there is none.

        Raises:
            SessionNotFoundError: the id belongs to another user. A turn must not create a
                session there (nor pay for a model call first); clients see the same 404 as
                for a missing session.
        """
        self.validate_session_id(session_id)
        with store_errors():
            try:
                document = await self._container.read_item(session_id, partition_key=session_id)
            except cosmos_errors.CosmosResourceNotFoundError:
                return None
        if document.get("type") != SESSION_TYPE or document.get("userId") != self.user_id:
            raise SessionNotFoundError("No session with this id.")
        record = _from_document(document)
        record.loaded_bytes = response_size(document)
        record.loaded_messages = len(history_messages(record.session.state))
        return record

    async def save(
        self,
        record: SessionRecord,
        *,
        etag: str | None,
        match_condition: MatchConditions = MatchConditions.IfNotModified,
    ) -> SessionRecord:
        """Write ``record`` only if the stored document still has ``etag`` (or, with ``etag=None``,
        only if none exists yet). Returns the record carrying the new etag.

        Raises:
            SessionConflictError: someone else wrote (or created) the session first.
        """
        self.validate_session_id(record.id)
        if record.user_id != self.user_id:
            raise SessionNotFoundError("No session with this id.")
        if record.mode == "local":
            await self._renew_archive_ttl(record)
        document = self._to_document(record)
        if record.mode == "local":
            document = await self._archive_overflow(record, document)
        with store_errors():
            try:
                if etag is None:
                    stored = await self._container.create_item(document, no_response=True)
                else:
                    stored = await self._container.replace_item(
                        record.id, document, etag=etag, match_condition=match_condition, no_response=True
                    )
            except cosmos_errors.CosmosAccessConditionFailedError:
                raise SessionConflictError(
                    "The session was changed by another request; it was left as that request wrote it. Retry.",
                    retry_after=1,
                ) from None
            except cosmos_errors.CosmosResourceExistsError:
                raise SessionExistsError(f"A session with id {record.id!r} already exists.", retry_after=1) from None
            except cosmos_errors.CosmosResourceNotFoundError:
                raise SessionConflictError(
                    "The session was deleted while this request ran; nothing was saved.", retry_after=1
                ) from None
        return replace(record, etag=written_etag(stored), loaded_bytes=None, loaded_messages=0)

    async def remove(self, session_id: str) -> bool:
        """Delete the caller's session and everything stored for it; ``False`` when there was none.

        The session document goes first (one conditional delete: it vanishes from every view at
        once), then the lease, archive and idempotency items listed *before* it, each only if it is
        unchanged, so an item of a new session created meanwhile under the same id is never touched.
        """
        record = await self.load(session_id)
        if record is None:
            return False
        with store_errors():
            # (The WHERE on the partition-key field is redundant in Azure and required by the local server.)
            query = self._container.query_items(
                "SELECT c.id, c._etag FROM c WHERE c.sessionId = @sessionId AND c.id != @sessionId",
                parameters=[{"name": "@sessionId", "value": session_id}],
                partition_key=session_id,
            )
            children = [item async for item in query]
            try:
                await self._container.delete_item(
                    session_id,
                    partition_key=session_id,
                    etag=record.etag,
                    match_condition=MatchConditions.IfNotModified,
                )
            except cosmos_errors.CosmosResourceNotFoundError:
                return False
            except cosmos_errors.CosmosAccessConditionFailedError:
                raise SessionConflictError(
                    "The session changed while it was being deleted. Retry.", retry_after=1
                ) from None
            for item in children:
                with contextlib.suppress(
                    cosmos_errors.CosmosResourceNotFoundError, cosmos_errors.CosmosAccessConditionFailedError
                ):
                    await self._container.delete_item(
                        item["id"],
                        partition_key=session_id,
                        etag=item["_etag"],
                        match_condition=MatchConditions.IfNotModified,
                    )
        return True

    async def read_history(self, record: SessionRecord, *, before: int | None, limit: int) -> HistoryPage:
        """Messages ``[before - limit, before)`` of the whole conversation, archive included, oldest first."""
        in_document = history_messages(record.session.state)
        total = record.archive.count + len(in_document)
        end = total if before is None else max(0, min(before, total))
        start = max(0, end - limit)
        messages: list[tuple[int, Message]] = []
        if start < record.archive.count:
            first_chunk = bisect.bisect_right(record.archive.starts, start) - 1
            last_chunk = bisect.bisect_right(record.archive.starts, min(end, record.archive.count) - 1) - 1
            for chunk in range(first_chunk, last_chunk + 1):
                try:
                    with store_errors():
                        item = await self._container.read_item(
                            record.archive.chunk_id(record.id, chunk), partition_key=record.id
                        )
                except cosmos_errors.CosmosResourceNotFoundError:
                    continue  # expired by retention: a gap in the oldest history, not an error
                chunk_start, _ = record.archive.chunk_range(chunk)
                for offset, payload in enumerate(item["messages"]):
                    if start <= chunk_start + offset < end:
                        messages.append((chunk_start + offset, Message.from_dict(payload)))
        for offset, message in enumerate(in_document):
            if start <= record.archive.count + offset < end:
                messages.append((record.archive.count + offset, message))
        return HistoryPage(messages, total, start if start > 0 else None)

    async def list_sessions(self, *, limit: int = 20, continuation_token: str | None = None) -> SessionPage:
        """The caller's sessions, newest first, one page at a time.

        Pages are cut by ``updatedAt`` (the token is the last timestamp shown), not with the SDK's
        continuation tokens, which the Python SDK does not support for cross-partition ORDER BY
        queries once a container spans several physical partitions. Two of one user's sessions
        saved in the same microsecond could straddle a page boundary; one of them would be skipped.
        """
        limit = max(1, min(limit, MAX_LIST_LIMIT))
        parameters: list[dict[str, Any]] = [
            {"name": "@userId", "value": self.user_id},
            {"name": "@type", "value": SESSION_TYPE},
        ]
        cursor = ""
        if continuation_token:
            parameters.append({"name": "@before", "value": _decode_token(continuation_token)})
            cursor = " AND c.updatedAt < @before"
        query = self._container.query_items(
            # TOP takes the validated integer; everything the caller sends is a parameter.
            f"SELECT TOP {limit + 1} c.id, c.title, c.mode, c.createdAt, c.updatedAt, c.turns FROM c "
            f"WHERE c.userId = @userId AND c.type = @type{cursor} ORDER BY c.updatedAt DESC",
            parameters=parameters,
        )
        with store_errors():
            items = [item async for item in query]
        sessions = [
            SessionSummary(
                id=item["id"],
                title=item.get("title"),
                mode=item.get("mode", "local"),
                created_at=item.get("createdAt", ""),
                updated_at=item.get("updatedAt", ""),
                turns=item.get("turns", 0),
            )
            for item in items[:limit]
        ]
        more = len(items) > limit
        return SessionPage(sessions, _encode_token(sessions[-1].updated_at) if more else None)

    async def ping(self) -> None:
        """One cheap read proving Cosmos DB answers (for the health endpoint)."""
        with store_errors():
            try:
                await self._container.read()
            except cosmos_errors.CosmosResourceNotFoundError:
                raise container_missing() from None

    # --- the framework's SessionStore contract ---------------------------------------------

    async def get(self, session_id: str) -> AgentSession | None:
        """A fresh session object deserialized from the stored document, or ``None``."""
        try:
            record = await self.load(session_id)
        except SessionNotFoundError:
            return None
        return record.session if record is not None else None

    async def set(self, session_id: str, session: AgentSession) -> None:
        """Store ``session``, keeping the document's metadata; conditional, like every write here."""
        self.validate_session_id(session_id)
        if session.session_id != session_id:
            session = AgentSession.from_dict({**session.to_dict(), "session_id": session_id})
        current = await self.load(session_id)
        if current is None:
            record = SessionRecord.new(session_id, user_id=self.user_id, mode=self.default_mode)
            record.session = session
            await self.save(record, etag=None)
            return
        current.session = session
        current.loaded_bytes = None  # a replaced session: its size says nothing about the new one
        current.updated_at = utc_now()
        await self.save(current, etag=current.etag)

    async def delete(self, session_id: str) -> None:
        """Delete the session if present (the contract ignores missing ones)."""
        with contextlib.suppress(SessionNotFoundError):
            await self.remove(session_id)

    async def _archive_overflow(self, record: SessionRecord, document: dict[str, Any]) -> dict[str, Any]:
        """Move the oldest turns to archive items when the document is over budget (written first)."""
        if self._clearly_within_budget(record):
            return document
        chunks = plan_archive(
            record.session.state,
            record.archive,
            document_bytes=json_size(document),
            max_bytes=self.max_item_bytes,
            max_messages=self.max_history_messages,
        )
        if not chunks:
            return document
        if not record.archive.touched_at:
            record.archive.touched_at = time.time()
        with store_errors():
            for chunk, messages in chunks:
                item = archive_item(record.archive, record.id, record.user_id, chunk, messages, self.ttl_seconds)
                await self._container.create_item(item, no_response=True)
        return self._to_document(record)

    async def _renew_archive_ttl(self, record: SessionRecord) -> None:
        """Retention slides with activity: archive chunks are written once, so their ``ttl`` is
        renewed (a small patch each) whenever half of it has passed since the last renewal."""
        ttl, archive = self.ttl_seconds, record.archive
        if ttl is None or not archive.starts or time.time() - archive.touched_at < ttl / 2:
            return
        with store_errors():
            for chunk in range(len(archive.starts)):
                with contextlib.suppress(cosmos_errors.CosmosResourceNotFoundError):
                    await self._container.patch_item(
                        archive.chunk_id(record.id, chunk),
                        partition_key=record.id,
                        patch_operations=[{"op": "set", "path": "/ttl", "value": ttl}],
                        no_response=True,
                    )
        archive.touched_at = time.time()

    def _clearly_within_budget(self, record: SessionRecord) -> bool:
        """True when the loaded size plus this turn's new messages stay far below the budget, so the
        whole document need not be serialized once more just to be measured (the SDK serializes it
        for sending anyway)."""
        messages = history_messages(record.session.state)
        if record.loaded_bytes is None or len(messages) > self.max_history_messages:
            return False
        added = sum(json_size(m.to_dict()) for m in messages[record.loaded_messages :])
        # json.dumps spacing makes our measure up to ~10% larger than the server's compact JSON.
        return (record.loaded_bytes * 1.15 + added + 2048) < self.max_item_bytes * 0.8

    def _to_document(self, record: SessionRecord) -> dict[str, Any]:
        session = record.session.to_dict()
        if record.mode == "service":
            # The service keeps the thread; nothing but its id may be stored here.
            session = {
                "type": session["type"],
                "session_id": record.id,
                "service_session_id": session.get("service_session_id"),
            }
        document: dict[str, Any] = {
            "id": record.id,
            "sessionId": record.id,
            "type": SESSION_TYPE,
            "schemaVersion": SCHEMA_VERSION,
            "userId": record.user_id,
            "mode": record.mode,
            "createdAt": record.created_at,
            "updatedAt": record.updated_at,
            "turns": record.turns,
            "title": record.title,
            "leaseEtag": record.lease_etag,
            "archive": record.archive.to_json(),
            "session": session,
        }
        if self.ttl_seconds is not None:
            document["ttl"] = self.ttl_seconds
        return document


def _from_document(document: dict[str, Any]) -> SessionRecord:
    return SessionRecord(
        session=AgentSession.from_dict(document["session"]),
        user_id=document["userId"],
        mode=document.get("mode", "local"),
        created_at=document["createdAt"],
        updated_at=document["updatedAt"],
        turns=document.get("turns", 0),
        title=document.get("title"),
        etag=document.get("_etag"),
        lease_etag=document.get("leaseEtag"),
        archive=ArchiveIndex.from_json(document.get("archive")),
    )


def _encode_token(token: str) -> str:
    return base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")


def _decode_token(token: str) -> str:
    """The timestamp inside a listing token; anything else is the client's error, not ours."""
    try:
        value = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadRequestError("The continuation token is not valid.") from None
    if not _TIMESTAMP.match(value):
        raise BadRequestError("The continuation token is not valid.")
    return value
