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
from dataclasses import replace
from typing import Any

from azure.core import MatchConditions
from azure.cosmos import exceptions as cosmos_errors
from azure.cosmos.aio import ContainerProxy

from cosmos_history.adapters.cosmos import items
from cosmos_history.adapters.cosmos import items as _items
from cosmos_history.adapters.cosmos.archive import CosmosArchive, RecentChunks
from cosmos_history.adapters.cosmos.client import container_missing, response_size, store_errors, written_etag
from cosmos_history.adapters.cosmos.commit import commit_batch, fits_in_batch, session_write_errors
from cosmos_history.domain.archive import json_size, serialized_message_sizes
from cosmos_history.domain.budget import StoredSize
from cosmos_history.domain.errors import (
    BadRequestError,
    SessionConflictError,
    SessionExistsError,
    SessionNotFoundError,
)
from cosmos_history.domain.kept_windows import KeptWindows
from cosmos_history.domain.policy import DEFAULT_POLICY, HistoryPolicy
from cosmos_history.domain.records import (
    ANONYMOUS_USER,
    MAX_LIST_LIMIT,
    NO_ITEMS,
    SessionPage,
    SessionRecord,
    SessionSummary,
    TurnItems,
    empty_like,
)
from cosmos_history.domain.session_store import RepositorySessionStore, check_durable
from cosmos_history.domain.stored_forms import Window


class CosmosSessions:
    """Session documents in one container partitioned by ``[/userId, /sessionId]``, acting for one user.

    Every request names the caller's user id in its partition key, so another user's session is
    simply not there (and its id is free for this user). :meth:`for_user` makes a copy for another
    caller that shares the container client (and the ``windows`` its commits keep for the next turn's claim, see
    :mod:`cosmos_history.domain.kept_windows`; ``None``: none kept).
    """

    def __init__(
        self,
        container: ContainerProxy,
        *,
        user_id: str = ANONYMOUS_USER,
        ttl_seconds: int | None = None,
        recent: RecentChunks | None = None,
        windows: KeptWindows | None = None,
    ) -> None:
        self.container = container
        self.user_id = user_id
        self.ttl_seconds = ttl_seconds
        self.windows = windows
        self.archive = CosmosArchive(container, ttl_seconds=ttl_seconds, recent=recent)
        self.commits_chunks = True
        """A turn's new archive chunks go into its commit batch: no write of their own (:meth:`save`)."""

    def measure(self, record: SessionRecord) -> StoredSize:
        """The document's bytes as the SDK sends it, and each history message's within it."""
        document, _ = self._document(record)
        return StoredSize(json_size(document), serialized_message_sizes(document["session"]))

    def for_user(self, user_id: str) -> CosmosSessions:
        """The same sessions (container, retention, recent chunks, kept windows) acting for ``user_id``."""
        return CosmosSessions(
            self.container,
            user_id=user_id,
            ttl_seconds=self.ttl_seconds,
            recent=self.archive.recent,
            windows=self.windows,
        )

    async def load(self, session_id: str) -> SessionRecord | None:
        """Point-read the caller's session (one round trip, in the partition ``[user, session]``);
        ``None`` when there is none, including when another user has a session with this id.

        Raises:
            SessionNotFoundError: the item found is not a session document of this user (only an item
                written by something else than this app could be): never served, never overwritten.
        """
        document_id = items.checked_path(items.item_id(session_id))
        with store_errors():
            try:
                document = await self.container.read_item(
                    document_id, partition_key=items.partition_key(self.user_id, document_id)
                )
            except cosmos_errors.CosmosResourceNotFoundError:
                return None
        return items.owned_record(document, self.user_id, size=response_size(document))

    async def save(
        self,
        record: SessionRecord,
        *,
        etag: str | None,
        items: TurnItems = NO_ITEMS,
        match_condition: MatchConditions = MatchConditions.IfNotModified,
    ) -> SessionRecord:
        """Write ``record`` as given (the domain has fitted it to the budget) only if the stored document still
        has ``etag`` (or, with ``etag=None``, only if none exists yet). Returns the record carrying the new etag.

        With ``items`` (a turn's commit) the document and the items are one transactional batch in the
        session's partition: the lease released (If-Match on its claim), the replay entry and the stored
        response upserted, the archive chunks the budget moved out of the record created, all or nothing
        (:mod:`.commit`). Without, it is one plain conditional write, after the chunks' own writes (unlisted, and
        so invisible, until it lands), as are chunks too large to ride in the batch. Once the write succeeded, the
        history it wrote is kept under the new etag for the next turn's claim on this instance (:attr:`windows`), and
        with it the document a commit wrote, so that the claim receives the document only if it changed meanwhile.

        Raises:
            SessionConflictError: someone else wrote (or created) the session first, or took the lease over.
            UnstorableStateError, UnstorableTypeError: the state cannot be stored; nothing was written.
        """
        if record.user_id != self.user_id:
            raise SessionNotFoundError()
        document, window = self._document(record)
        pending, record.pending_chunks = record.pending_chunks, []
        created = [_items.archive_chunk(record, chunk, messages, self.ttl_seconds) for chunk, messages in pending]
        chunks = created
        if not items or not fits_in_batch(chunks):  # written first, invisible until this document lists them
            for chunk_item in chunks:
                with store_errors():
                    await self.container.create_item(chunk_item, no_response=True)
            chunks = []
        sent_bytes: int | None = None
        with store_errors(), session_write_errors(record):
            if items:
                stored_etag, sent_bytes = await commit_batch(
                    self.container, document, etag=etag, extra=items, ttl=self.ttl_seconds, chunks=chunks
                )
            elif etag is None:
                stored_etag = written_etag(await self.container.create_item(document, no_response=True))
            else:
                stored = await self.container.replace_item(
                    _items.checked_path(document["id"]),
                    document,
                    etag=etag,
                    match_condition=match_condition,
                    no_response=True,
                )
                stored_etag = written_etag(stored)
        self.archive.recent.remember(self.user_id, created)
        if self.windows is not None:
            document["_etag"] = stored_etag  # as a read of this version gives it; nobody changes it from now on
            self.windows.keep(
                (self.user_id, document["id"]), stored_etag, window, document=document, document_bytes=sent_bytes
            )
        return replace(record, etag=stored_etag, loaded_bytes=None, loaded_messages=0)

    def _document(self, record: SessionRecord) -> tuple[dict[str, Any], Window | None]:
        """The document to write, as given (the domain has already moved what is over budget to the archive), and
        the history window its commit leaves."""
        document, window = _items.written_document(record, self.ttl_seconds)
        read = record.stored_forms.form_ids() if record.stored_forms else ()  # as read: not walked again
        check_durable(document["session"]["state"], path="state", known=read)
        return document, window

    async def note_started(self, record: SessionRecord) -> str:
        """One conditional write of the turn's tool journal: a patch of that one field (If-Match), or, for a
        session not stored yet, the create of an empty one carrying it. See :meth:`SessionRepository.note_started`."""
        if record.user_id != self.user_id:
            raise SessionNotFoundError("No session with this id.")
        with store_errors():
            try:
                if record.etag is None:
                    document = items.session_document(empty_like(record), self.ttl_seconds)
                    stored = await self.container.create_item(document, no_response=True)
                else:
                    document_id = items.checked_path(items.item_id(record.id))
                    stored = await self.container.patch_item(
                        document_id,
                        partition_key=items.partition_key(self.user_id, document_id),
                        patch_operations=[{"op": "set", "path": "/toolJournal", "value": items.journal_json(record)}],
                        etag=record.etag,
                        match_condition=MatchConditions.IfNotModified,
                        no_response=True,
                    )
            except cosmos_errors.CosmosAccessConditionFailedError:
                raise SessionConflictError(
                    "The session was changed by another request; the tool did not run. Retry.", retry_after=1
                ) from None
            except cosmos_errors.CosmosResourceExistsError:
                raise SessionExistsError(f"A session with id {record.id!r} already exists.", retry_after=1) from None
            except cosmos_errors.CosmosResourceNotFoundError:
                raise SessionConflictError(
                    "The session was deleted while this request ran; the tool did not run.", retry_after=1
                ) from None
        return written_etag(stored)

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
        if self.windows is not None:
            self.windows.take((self.user_id, partition), None)  # dropped: no version of it will be read again
        key = items.partition_key(self.user_id, partition)
        with store_errors():
            query = self.container.query_items(
                "SELECT c.id, c._etag FROM c WHERE c.id != @sessionId",
                parameters=[{"name": "@sessionId", "value": partition}],
                partition_key=key,
            )
            children = [item async for item in query]
            try:
                await self.container.delete_item(
                    items.checked_path(partition),
                    partition_key=key,
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
                        partition_key=key,
                        etag=item["_etag"],
                        match_condition=MatchConditions.IfNotModified,
                    )
        return True

    async def list_sessions(self, *, limit: int = 20, continuation_token: str | None = None) -> SessionPage:
        """The caller's sessions, newest first, one page at a time.

        One query per page, scoped to the key prefix ``[userId]``: the SDK sends it to the one physical
        partition holding the user's sessions (an effective-partition-key range), so its cost follows
        the user's sessions, not the container's. Pages are cut with the SDK's continuation tokens,
        which resume exactly after the last item shown, so no session is skipped or repeated, even
        when many share one ``updatedAt``. A page may hold fewer than ``limit`` sessions while a token
        says more may follow (Cosmos DB may end a page early); a few more requests fill it.
        """
        limit = max(1, min(limit, MAX_LIST_LIMIT))
        token = _decode_token(continuation_token) if continuation_token else None
        found: list[dict[str, Any]] = []
        with store_errors():
            try:
                for _ in range(_MAX_PAGE_REQUESTS):
                    pages = self.container.query_items(
                        _LIST_QUERY,
                        parameters=[
                            {"name": "@userId", "value": self.user_id},
                            {"name": "@type", "value": items.SESSION_TYPE},
                        ],
                        partition_key=[self.user_id],
                        max_item_count=limit - len(found),
                    ).by_page(token)
                    async for page in pages:
                        found.extend([item async for item in page])
                        break
                    token = pages.continuation_token
                    if not token or len(found) >= limit:
                        break
            except cosmos_errors.CosmosResourceNotFoundError:
                # The SDK reads the container's partition map first: a 404 there means the container is gone.
                raise container_missing() from None
            except cosmos_errors.CosmosHttpResponseError as error:
                if error.status_code == 400 and continuation_token:
                    raise BadRequestError("The continuation token is not valid.") from None
                raise
            except ValueError:
                # The SDK refuses a token of its own format issued for another query or key range.
                if continuation_token:
                    raise BadRequestError("The continuation token is not valid.") from None
                raise
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
            for item in found
        ]
        return SessionPage(sessions, _encode_token(token) if token else None)

    async def ping(self) -> None:
        """One cheap read proving Cosmos DB answers (for the health endpoint)."""
        with store_errors():
            try:
                await self.container.read()
            except cosmos_errors.CosmosResourceNotFoundError:
                raise container_missing() from None


class CosmosSessionStore(RepositorySessionStore):
    """The framework's ``SessionStore`` over session documents in Cosmos DB (see :class:`CosmosSessions`),
    under ``policy`` (a new session's mode, the document's budget)."""

    def __init__(self, container: ContainerProxy, *, policy: HistoryPolicy = DEFAULT_POLICY, **options: Any) -> None:
        super().__init__(CosmosSessions(container, **options), policy=policy)


#: The listing query. The partition key prefix scopes it; the ``userId`` filter is defence in depth
#: (it costs nothing: the field is indexed and every item in the scope matches it).
_LIST_QUERY = (
    "SELECT c.id, c.title, c.mode, c.agent, c.createdAt, c.updatedAt, c.turns FROM c "
    "WHERE c.userId = @userId AND c.type = @type ORDER BY c.updatedAt DESC"
)
#: Requests one listing page may make while Cosmos DB returns short pages (bounded, never a loop).
_MAX_PAGE_REQUESTS = 5
#: Our tokens wrap the SDK's: a version prefix (older timestamp tokens are refused, not misread).
_TOKEN_PREFIX = "c1:"
_MAX_TOKEN_CHARS = 8192


def _encode_token(token: str) -> str:
    return base64.urlsafe_b64encode((_TOKEN_PREFIX + token).encode()).decode().rstrip("=")


def _decode_token(token: str) -> str:
    """The SDK continuation inside a listing token; anything else is the client's error, not ours."""
    try:
        if len(token) > _MAX_TOKEN_CHARS:
            raise ValueError
        value = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadRequestError("The continuation token is not valid.") from None
    inner = value[len(_TOKEN_PREFIX) :]
    if not value.startswith(_TOKEN_PREFIX) or not inner or not inner.isprintable():
        raise BadRequestError("The continuation token is not valid.")
    return inner
