"""Every Cosmos DB item format of the app, in one place: ids, the common envelope, the session document.

The container is partitioned by the hierarchical key ``/userId`` then ``/sessionId`` (see
``docs/adr-partitioning.md``). Every item of a session carries both in its envelope (``id``,
``sessionId``, ``type``, ``userId``, ``ttl``) and lives in the logical partition
``[userId, sessionId]`` (:func:`partition_key`): every read names the caller's user id, so another
user's session is unreachable by construction, two users may use the same session id, and deleting a
session finds its items with one single-partition query. A user's sessions share the key prefix
``[userId]``, so listing them is a single-partition prefix query.

Store keys are opaque strings (the ``SessionStore`` contract). Cosmos DB item ids cannot hold ``/``,
``\\``, ``?`` or ``#``, and the SDK normalises ``.`` and ``..`` in the URL it builds (``delete_item("..")``
would address the container). Keys made only of ``[A-Za-z0-9._:-]`` (today's HTTP ids) are their own
item id, so existing documents keep loading; any other key becomes ``~`` plus the base64url of its
UTF-8 bytes: reversible, injective (``~`` is never in a plain id) and at most 684 characters.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from agent_framework import AgentSession, InMemoryHistoryProvider, Message

from cosmos_history.domain.archive import ArchiveIndex, history_messages
from cosmos_history.domain.errors import SessionNotFoundError
from cosmos_history.domain.records import RecentKey, SessionRecord, validate_session_id
from cosmos_history.domain.stored_forms import Window, restore, written
from cosmos_history.domain.tool_journal import StartedCall

SCHEMA_VERSION = 1
SESSION_TYPE = "session"
ARCHIVE_TYPE = "archive"
LEASE_TYPE = "lease"
IDEMPOTENCY_TYPE = "idempotency"
RESPONSE_TYPE = "response"
TURN_TYPE = "turn"
EVENTS_TYPE = "events"

_PLAIN_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_ENCODED_PREFIX = "~"
_NORMALISED_SEGMENTS = ("", ".", "..")


def item_id(session_id: str) -> str:
    """The session document's item id (and partition key value) for a store key.

    Raises:
        InvalidSessionIdError: (a ``ValueError``) the key is empty, longer than 128 characters or not a string.
    """
    validate_session_id(session_id)
    if _PLAIN_ID.fullmatch(session_id) and session_id not in _NORMALISED_SEGMENTS:
        return session_id
    raw = session_id.encode("utf-8", "surrogatepass")
    return _ENCODED_PREFIX + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def session_key(document_id: str) -> str:
    """The store key an item id was made from (the inverse of :func:`item_id`)."""
    if not document_id.startswith(_ENCODED_PREFIX):
        return document_id
    encoded = document_id[len(_ENCODED_PREFIX) :]
    try:
        return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode("utf-8", "surrogatepass")
    except (binascii.Error, UnicodeDecodeError):
        return document_id  # not written by this app: shown as it is stored


def partition_key(user_id: str, partition: str) -> list[str]:
    """The full hierarchical partition key of a session's items (``partition`` is :func:`item_id`'s value)."""
    return [user_id, partition]


def checked_path(document_id: str) -> str:
    """Defence in depth: refuse an item id that the SDK's URL handling would turn into another path."""
    if document_id in _NORMALISED_SEGMENTS or any(c in document_id for c in "/\\?#"):
        raise ValueError(f"refusing a Cosmos DB request for item id {document_id!r}: its URL would be normalised")
    return document_id


def envelope(kind: str, document_id: str, partition: str, user_id: str, ttl: int | None) -> dict[str, Any]:
    """The fields every item of a session carries."""
    item: dict[str, Any] = {"id": checked_path(document_id), "sessionId": partition, "type": kind, "userId": user_id}
    if ttl is not None:
        item["ttl"] = ttl
    return item


def session_document(record: SessionRecord, ttl: int | None) -> dict[str, Any]:
    """The session document. A ``service`` session keeps no history (the service keeps the thread) but
    every other part of its state, such as pending tool approvals and context providers' data."""
    return written_document(record, ttl)[0]


def written_document(record: SessionRecord, ttl: int | None) -> tuple[dict[str, Any], Window | None]:
    """:func:`session_document`, and the history window a commit of it leaves for the next turn (see
    :mod:`cosmos_history.domain.kept_windows`; ``None`` for a service-mode session: it keeps no history here)."""
    session, window = written(record.session, record.stored_forms)
    if record.mode == "service":
        session["state"] = {k: v for k, v in session["state"].items() if k != InMemoryHistoryProvider.DEFAULT_SOURCE_ID}
    partition = item_id(record.id)
    document = {
        **envelope(SESSION_TYPE, partition, partition, record.user_id, ttl),
        "schemaVersion": SCHEMA_VERSION,
        "mode": record.mode,
        "agent": record.agent,
        "createdAt": record.created_at,
        "updatedAt": record.updated_at,
        "turns": record.turns,
        "title": record.title,
        "archive": record.archive.to_json(),
        "recentKeys": [k.to_json() for k in record.recent_keys],
        **({"toolJournal": journal_json(record)} if record.tool_journal else {}),
        "session": session,
    }
    return document, window if record.mode == "local" else None


def journal_json(record: SessionRecord) -> list[dict[str, str]]:
    return [started.to_json() for started in record.tool_journal]


def session_record(document: dict[str, Any], session: AgentSession | None = None) -> SessionRecord:
    """The record of a session document (``session``: its session, already restored)."""
    session = session if session is not None else AgentSession.from_dict(document["session"])
    key = session_key(document["id"])
    return SessionRecord(
        session=session,
        user_id=document["userId"],
        mode=document.get("mode", "local"),
        created_at=document["createdAt"],
        updated_at=document["updatedAt"],
        turns=document.get("turns", 0),
        title=document.get("title"),
        etag=document.get("_etag"),
        archive=ArchiveIndex.from_json(document.get("archive")),
        recent_keys=[RecentKey.from_json(k) for k in document.get("recentKeys", [])],
        agent=document.get("agent"),
        key=key if key != session.session_id else None,
        tool_journal=[StartedCall.from_json(c) for c in document.get("toolJournal", [])],
    )


def owned_record(
    document: dict[str, Any], user_id: str, *, size: int | None, window: Window | None = None
) -> SessionRecord:
    """The caller's session from its stored document, with the size it was read at (``size``, when known). With
    the ``window`` the commit that wrote this very version left, its kept messages are taken back, not restored.

    Raises:
        SessionNotFoundError: the item is not a session document of this user (only an item written by
            something else than this app could be): never served, never overwritten.
    """
    if document.get("type") != SESSION_TYPE or document.get("userId") != user_id:
        raise SessionNotFoundError()
    session, forms = restore(document["session"], window)
    record = session_record(document, session)
    record.loaded_bytes = size
    record.loaded_messages = len(history_messages(session.state))
    record.stored_forms = forms
    return record


def archive_chunk(record: SessionRecord, chunk: int, messages: list[Message], ttl: int | None) -> dict[str, Any]:
    partition = item_id(record.id)
    first_index, _ = record.archive.chunk_range(chunk)
    return {
        **envelope(ARCHIVE_TYPE, record.archive.chunk_id(partition, chunk), partition, record.user_id, ttl),
        "chunk": chunk,
        "firstIndex": first_index,
        "messages": [m.to_dict() for m in messages],
    }


def lease_id(partition: str) -> str:
    return f"{partition}:lease"


def lease_item(partition: str, user_id: str, ttl: int | None, *, holder: str, expires_at: float) -> dict[str, Any]:
    """The turn lease of a session (the same shape since leases existed, so items of older versions still work)."""
    return {
        **envelope(LEASE_TYPE, lease_id(partition), partition, user_id, ttl),
        "holder": holder,
        "expiresAt": round(expires_at, 3),
    }


def replay_item(
    partition: str, user_id: str, key_hash: str, *, turn: int, result: dict[str, Any], ttl: int, now: float
) -> dict[str, Any]:
    """A keyed turn's answer for its retries (see :mod:`.idempotency`)."""
    return {
        **envelope(IDEMPOTENCY_TYPE, replay_id(partition, key_hash), partition, user_id, ttl),
        "turn": turn,
        "result": result,
        "expiresAt": round(now + ttl, 3),
    }


def response_item(partition: str, user_id: str, turn: int, response: dict[str, Any], ttl: int | None) -> dict[str, Any]:
    """A turn's stored response object (see :mod:`.responses`)."""
    return {**envelope(RESPONSE_TYPE, response_item_id(partition, turn), partition, user_id, ttl), "response": response}


def replay_id(partition: str, key_hash: str) -> str:
    return f"{partition}:idem:{key_hash}"


def response_item_id(partition: str, turn: int) -> str:
    return f"{partition}:response:{turn}"


def turn_item_id(partition: str, turn: int) -> str:
    return f"{partition}:turn:{turn}"


def events_item_id(partition: str, turn: int, attempt: str, batch: int) -> str:
    return f"{partition}:events:{turn}:{attempt}:{batch}"
