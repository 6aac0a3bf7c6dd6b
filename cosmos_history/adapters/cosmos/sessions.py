"""Sessions in Cosmos DB: one document per conversation, written only with optimistic concurrency.

:class:`CosmosSessions` implements the domain's :class:`SessionRepository` port: ``load`` returns
the document's etag, and ``save`` writes only if nobody else did in between (If-Match, or
create-only for a new session); a stale write becomes :class:`SessionConflictError`, never an
overwrite. :class:`CosmosSessionStore` is the framework's ``SessionStore`` over it. Item formats
live in :mod:`.items`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import re
import time
from dataclasses import replace
from typing import Any

from agent_framework import Message
from azure.core import MatchConditions
from azure.cosmos import exceptions as cosmos_errors
from azure.cosmos.aio import ContainerProxy

from cosmos_history.adapters.cosmos import items
from cosmos_history.adapters.cosmos.client import container_missing, response_size, store_errors, written_etag
from cosmos_history.domain.archive import history_messages, json_size, keep_within_budget
from cosmos_history.domain.errors import (
    BadRequestError,
    SessionConflictError,
    SessionExistsError,
    SessionNotFoundError,
)
from cosmos_history.domain.records import (
    ANONYMOUS_USER,
    MAX_LIST_LIMIT,
    SessionPage,
    SessionRecord,
    SessionSummary,
)
from cosmos_history.domain.session_store import RepositorySessionStore, check_durable
from cosmos_history.settings import HistoryMode

_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")


class CosmosArchive:
    """Archive chunks as items in the session's partition; retention slides with the session's activity."""

    def __init__(self, container: ContainerProxy, *, ttl_seconds: int | None) -> None:
        self._container = container
        self.ttl_seconds = ttl_seconds

    async def write(self, record: SessionRecord, chunk: int, messages: list[Message]) -> None:
        with store_errors():
            await self._container.create_item(
                items.archive_chunk(record, chunk, messages, self.ttl_seconds), no_response=True
            )

    async def read(self, record: SessionRecord, chunk: int) -> list[Message] | None:
        partition = items.item_id(record.id)
        with store_errors():
            try:
                item = await self._container.read_item(
                    items.checked_path(record.archive.chunk_id(partition, chunk)), partition_key=partition
                )
            except cosmos_errors.CosmosResourceNotFoundError:
                return None
        return [Message.from_dict(m) for m in item["messages"]]

    async def renew(self, record: SessionRecord) -> None:
        """Archive chunks are written once, so their ``ttl`` is renewed (a small patch each) whenever
        half of it has passed since the last renewal."""
        ttl, archive = self.ttl_seconds, record.archive
        if ttl is None or not archive.starts or time.time() - archive.touched_at < ttl / 2:
            return
        partition = items.item_id(record.id)
        with store_errors():
            for chunk in range(len(archive.starts)):
                with contextlib.suppress(cosmos_errors.CosmosResourceNotFoundError):
                    await self._container.patch_item(
                        items.checked_path(archive.chunk_id(partition, chunk)),
                        partition_key=partition,
                        patch_operations=[{"op": "set", "path": "/ttl", "value": ttl}],
                        no_response=True,
                    )
        archive.touched_at = time.time()


class CosmosSessions:
    """Session documents in one container partitioned by ``/sessionId``, acting for one user.

    Another user's session is reported as missing, so ids reveal nothing. :meth:`for_user` makes a
    copy for another caller that shares the container client.
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
        max_history_tokens: int | None = None,
    ) -> None:
        self.container = container
        self.user_id = user_id
        self.default_mode: HistoryMode = default_mode
        self.ttl_seconds = ttl_seconds
        self.max_item_bytes = max_item_bytes
        self.max_history_messages = max_history_messages
        self.max_history_tokens = max_history_tokens
        self.archive = CosmosArchive(container, ttl_seconds=ttl_seconds)

    def for_user(self, user_id: str) -> CosmosSessions:
        """The same sessions (container, limits) acting for ``user_id``."""
        return CosmosSessions(
            self.container,
            user_id=user_id,
            default_mode=self.default_mode,
            ttl_seconds=self.ttl_seconds,
            max_item_bytes=self.max_item_bytes,
            max_history_messages=self.max_history_messages,
            max_history_tokens=self.max_history_tokens,
        )

    async def load(self, session_id: str) -> SessionRecord | None:
        """Point-read the session (one round trip); ``None`` when there is none.

        Raises:
            SessionNotFoundError: the id belongs to another user. A turn must not create a
                session there (nor pay for a model call first); clients see the same 404 as
                for a missing session.
        """
        document_id = items.checked_path(items.item_id(session_id))
        with store_errors():
            try:
                document = await self.container.read_item(document_id, partition_key=document_id)
            except cosmos_errors.CosmosResourceNotFoundError:
                return None
        if document.get("type") != items.SESSION_TYPE or document.get("userId") != self.user_id:
            raise SessionNotFoundError()
        record = items.session_record(document)
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
            UnstorableStateError, UnstorableTypeError: the state cannot be stored; nothing was written.
        """
        if record.user_id != self.user_id:
            raise SessionNotFoundError()
        document = items.session_document(record, self.ttl_seconds)
        check_durable(document["session"]["state"], path="state")
        if record.mode == "local":
            await self.archive.renew(record)
            moved = await keep_within_budget(
                record,
                self.archive,
                document_bytes=lambda: json_size(document),
                max_bytes=self.max_item_bytes,
                max_messages=self.max_history_messages,
                max_tokens=self.max_history_tokens,
            )
            if moved:
                document = items.session_document(record, self.ttl_seconds)
        with store_errors():
            try:
                if etag is None:
                    stored = await self.container.create_item(document, no_response=True)
                else:
                    stored = await self.container.replace_item(
                        items.checked_path(document["id"]),
                        document,
                        etag=etag,
                        match_condition=match_condition,
                        no_response=True,
                    )
            except cosmos_errors.CosmosAccessConditionFailedError:
                raise SessionConflictError(
                    "The session was changed by another request; it was left as that request wrote it. Retry.",
                    retry_after=1,
                ) from None
            except cosmos_errors.CosmosResourceExistsError:
                raise SessionExistsError(
                    f"A session with id {record.id!r} already exists; choose another id, or omit it."
                ) from None
            except cosmos_errors.CosmosResourceNotFoundError:
                raise SessionConflictError(
                    "The session was deleted while this request ran; nothing was saved.", retry_after=1
                ) from None
        return replace(record, etag=written_etag(stored), loaded_bytes=None, loaded_messages=0)

    async def delete(self, session_id: str) -> bool:
        """Delete the caller's session and everything stored for it; ``False`` when there was none.

        The session document goes first (one conditional delete: it vanishes from every view at
        once), then the lease, archive and idempotency items listed *before* it, each only if it is
        unchanged, so an item of a new session created meanwhile under the same id is never touched.
        """
        record = await self.load(session_id)
        if record is None:
            return False
        partition = items.item_id(session_id)
        with store_errors():
            # (The WHERE on the partition-key field is redundant in Azure and required by the local server.)
            query = self.container.query_items(
                "SELECT c.id, c._etag FROM c WHERE c.sessionId = @sessionId AND c.id != @sessionId",
                parameters=[{"name": "@sessionId", "value": partition}],
                partition_key=partition,
            )
            children = [item async for item in query]
            try:
                await self.container.delete_item(
                    items.checked_path(partition),
                    partition_key=partition,
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
                    cosmos_errors.CosmosResourceNotFoundError,
                    cosmos_errors.CosmosAccessConditionFailedError,
                    ValueError,  # an item id this app never writes: left alone rather than risk its URL
                ):
                    await self.container.delete_item(
                        items.checked_path(item["id"]),
                        partition_key=partition,
                        etag=item["_etag"],
                        match_condition=MatchConditions.IfNotModified,
                    )
        return True

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
            {"name": "@type", "value": items.SESSION_TYPE},
        ]
        cursor = ""
        if continuation_token:
            parameters.append({"name": "@before", "value": _decode_token(continuation_token)})
            cursor = " AND c.updatedAt < @before"
        query = self.container.query_items(
            # TOP takes the validated integer; everything the caller sends is a parameter.
            f"SELECT TOP {limit + 1} c.id, c.title, c.mode, c.agent, c.createdAt, c.updatedAt, c.turns FROM c "
            f"WHERE c.userId = @userId AND c.type = @type{cursor} ORDER BY c.updatedAt DESC",
            parameters=parameters,
        )
        with store_errors():
            found = [item async for item in query]
        sessions = [
            SessionSummary(
                id=items.session_key(item["id"]),
                title=item.get("title"),
                mode=item.get("mode", "local"),
                created_at=item.get("createdAt", ""),
                updated_at=item.get("updatedAt", ""),
                turns=item.get("turns", 0),
                agent=item.get("agent"),
            )
            for item in found[:limit]
        ]
        more = len(found) > limit
        return SessionPage(sessions, _encode_token(sessions[-1].updated_at) if more else None)

    async def ping(self) -> None:
        """One cheap read proving Cosmos DB answers (for the health endpoint)."""
        with store_errors():
            try:
                await self.container.read()
            except cosmos_errors.CosmosResourceNotFoundError:
                raise container_missing() from None


class CosmosSessionStore(RepositorySessionStore):
    """The framework's ``SessionStore`` over session documents in Cosmos DB (see :class:`CosmosSessions`)."""

    def __init__(self, container: ContainerProxy, **options: Any) -> None:
        super().__init__(CosmosSessions(container, **options))


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
