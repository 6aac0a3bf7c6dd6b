"""A turn's commit: the session document and the turn's other items in one transactional batch.

Everything a turn writes lives in the session's partition ``[userId, sessionId]``, so Cosmos DB can
write it atomically: the document (create, or replace with If-Match on the etag the turn read), the
release of the turn's lease (a patch conditional on the lease still naming the turn's claim: a lease
another turn took over fails the whole commit), the replay entry of a keyed turn and the turn's stored response
(upserts). Either all of them land or none does, in one round trip. See ``docs/adr-turn-storage.md``.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any, NamedTuple

from azure.cosmos import exceptions as cosmos_errors
from azure.cosmos._base import _format_batch_operations
from azure.cosmos.aio import ContainerProxy

from cosmos_history import telemetry
from cosmos_history.adapters.cosmos import items
from cosmos_history.domain.errors import SessionConflictError, SessionExistsError
from cosmos_history.domain.records import SessionRecord, TurnItems

#: The patch that frees a lease: expired at once, so the next turn's claim matches it, and held by no claim,
#: so a late renewal of the finished turn cannot take it back.
RELEASE = [{"op": "set", "path": "/expiresAt", "value": 0.0}, {"op": "set", "path": "/holder", "value": ""}]


def held_by(holder: str) -> str:
    """The filter predicate of a lease a claim still holds (``holder`` is a claim's hex id: safe inline)."""
    return f"FROM c WHERE c.holder = '{holder}'"


#: What a batch may carry besides the document: Cosmos DB takes at most 100 operations and 2 MB in one batch,
#: and a document may be up to 1 MB (``MAX_SESSION_BYTES``); larger chunks are written before the commit.
CHUNK_BATCH_BYTES = 512 * 1024
CHUNK_BATCH_ITEMS = 8


def fits_in_batch(chunks: list[dict[str, Any]]) -> bool:
    """Whether a turn's new archive chunks can ride in its commit batch (see :data:`CHUNK_BATCH_BYTES`)."""
    return len(chunks) <= CHUNK_BATCH_ITEMS and sum(len(_compact(chunk)) for chunk in chunks) <= CHUNK_BATCH_BYTES


async def commit_batch(
    container: ContainerProxy,
    document: dict[str, Any],
    *,
    etag: str | None,
    extra: TurnItems,
    ttl: int | None,
    chunks: list[dict[str, Any]] | None = None,
) -> Committed:
    """Write ``document``, ``extra`` and the turn's new archive ``chunks`` (creates) atomically; returns the
    document's new etag and its size as sent. The chunks become visible with the document that lists them, or not
    at all.

    Raises:
        CosmosBatchOperationError: the batch failed (nothing was written); see :func:`session_write_errors`.
    """
    partition, user_id = document["sessionId"], document["userId"]
    operations: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
        ("create", (document,), {})
        if etag is None
        else ("replace", (items.checked_path(document["id"]), document), {"if_match_etag": etag})
    ]
    if extra.lease_etag is not None:
        held = {"filter_predicate": held_by(extra.lease_etag)}
        operations.append(("patch", (items.lease_id(partition), RELEASE), held))
    if extra.replay is not None:
        entry = extra.replay
        item = items.replay_item(
            partition,
            user_id,
            entry.key_hash,
            turn=entry.turn,
            result=entry.result,
            ttl=entry.ttl_seconds,
            now=time.time(),
        )
        operations.append(("upsert", (item,), {}))
    if extra.response is not None:
        response = items.response_item(partition, user_id, document["turns"], extra.response, ttl)
        operations.append(("upsert", (response,), {}))
    operations += [("create", (chunk,), {}) for chunk in chunks or []]
    extras = _not_the_document([(kind, args, dict(options)) for kind, args, options in operations])
    body = _BodySize()
    results = await container.execute_item_batch(
        operations, partition_key=items.partition_key(user_id, partition), raw_request_hook=body
    )
    telemetry.note_batch_extras(extras)
    return Committed(str(results[0]["eTag"]), body.bytes - extras if body.bytes is not None else None)


class Committed(NamedTuple):
    """What a commit wrote: the document's new etag, and its bytes in the batch the SDK sent (``None``: unknown)."""

    etag: str
    document_bytes: int | None


class _BodySize:
    """Reads the size of the body the SDK sends (the ``Content-Length`` it sets on the request it serialized): the
    size of the document it wrote, without serializing it once more to learn it."""

    def __init__(self) -> None:
        self.bytes: int | None = None

    def __call__(self, request: Any) -> None:
        value = request.http_request.headers.get("Content-Length")
        self.bytes = int(value) if value is not None and str(value).isdigit() else None


def _not_the_document(operations: list[tuple[str, tuple[Any, ...], dict[str, Any]]]) -> int:
    """Bytes of the batch body (the SDK's compact JSON list of operations) that are not the session document
    (formatted by the SDK's own function, which consumes the options: pass copies)."""
    formatted = _format_batch_operations(operations)
    first = {**formatted[0], "resourceBody": 0}
    others = sum(len(_compact(operation)) for operation in formatted[1:])
    return 2 + (len(formatted) - 1) + others + len(_compact(first)) - 1


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


@contextlib.contextmanager
def session_write_errors(record: SessionRecord) -> Iterator[None]:
    """A refused session write (plain or batched) as the domain's error; nothing was written either way."""
    try:
        yield
    except cosmos_errors.CosmosBatchOperationError as failed:
        if failed.error_index == 0:
            _raise_for_document(failed.status_code, record)
        if failed.error_index == 1 and failed.status_code in (404, 412):
            raise SessionConflictError(
                "Another turn took this session over while this one ran; nothing was saved. Retry.", retry_after=1
            ) from None
        raise
    except cosmos_errors.CosmosHttpResponseError as failed:
        _raise_for_document(failed.status_code, record)
        raise


def _raise_for_document(status: int | None, record: SessionRecord) -> None:
    if status == 412:
        raise SessionConflictError(
            "The session was changed by another request; it was left as that request wrote it. Retry.",
            retry_after=1,
        ) from None
    if status == 409:
        raise SessionExistsError(
            f"A session with id {record.id!r} already exists; choose another id, or omit it."
        ) from None
    if status == 404:
        raise SessionConflictError(
            "The session was deleted while this request ran; nothing was saved.", retry_after=1
        ) from None
