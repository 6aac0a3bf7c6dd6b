"""Keeps a local-mode session document within its budget by moving the oldest turns to archive items
(:mod:`.budget` decides when, before every save; this module plans the cut and pages through the chunks).

Cosmos DB rejects items over 2 MB, and every turn rewrites the whole session document,
so an unbounded history would both fail eventually and cost more per turn as it grows.
When a document would exceed ``MAX_SESSION_BYTES`` or ``MAX_HISTORY_MESSAGES``, the
oldest whole turns move into archive items in the same partition; the document keeps
the recent window, which is what the model sees.

Archive items are append-only and are written *before* the session document, or with it in a turn's
commit batch (the Cosmos DB store: created atomically with the document that lists them). Each
write gets ids of its own (``<sessionId>:archive:<n>:<token>``), and the document lists
the chunks it committed (``archive.starts`` and ``archive.tokens``): a chunk written by a
save that then failed or lost a race is never listed, so it stays invisible (and is
removed with the session), and it can never overwrite a chunk another save committed.
Nothing is lost and no duplicate becomes visible.

The framework's compaction (``agent_framework._compaction``) decides what the model
sees but keeps excluded messages in the same state, so the document would still grow;
it does not fit this job, but can be layered on top to shorten the window further.
"""

from __future__ import annotations

import bisect
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agent_framework import InMemoryHistoryProvider, Message

from cosmos_history.domain.entries import entry_count, message_entries
from cosmos_history.domain.errors import TurnTooLargeError

if TYPE_CHECKING:
    from cosmos_history.domain.ports import ArchiveChunks
    from cosmos_history.domain.records import SessionRecord

#: Share of the byte budget a document may reach before archiving starts, and the share it is cut to.
_HIGH_WATER = 0.9
_LOW_WATER = 0.6
_MESSAGE_LOW_WATER = 0.75
BYTES_PER_TOKEN = 4
#: Room for the item's own fields and the system properties Cosmos DB adds (_rid, _etag, _ts, ...).
_ITEM_OVERHEAD = 1024


def archive_id(session_id: str, chunk: int, token: str) -> str:
    return f"{session_id}:archive:{chunk:06d}:{token}"


@dataclass
class ArchiveIndex:
    """Which archive chunks a session has committed: chunk ``n`` holds messages from ``starts[n]``."""

    starts: list[int] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    """The write token in each committed chunk's id."""
    count: int = 0
    """How many messages (the oldest ones) live in archive items rather than the document."""
    touched_at: float = 0.0
    """When the chunks' ``ttl`` was last renewed (retention slides with the session's activity)."""
    entry_starts: list[int] = field(default_factory=list)
    """The history entry (see :mod:`.entries`) each chunk starts at: pages count entries, not messages.
    Shorter than ``starts`` in documents archived before entries were counted (then counted by reading)."""
    entries: int = 0
    """How many history entries the archived messages make."""

    def to_json(self) -> dict[str, Any]:
        """The index as a document holds it, sharing no list with it (a commit keeps the document it wrote for the
        next claim, while this index may go on changing)."""
        return {
            "starts": list(self.starts),
            "tokens": list(self.tokens),
            "count": self.count,
            "touchedAt": self.touched_at,
            "entryStarts": list(self.entry_starts),
            "entries": self.entries,
        }

    @classmethod
    def from_json(cls, value: dict[str, Any] | None) -> ArchiveIndex:
        if not value:
            return cls()
        return cls(
            starts=list(value.get("starts", [])),
            tokens=list(value.get("tokens", [])),
            count=int(value.get("count", 0)),
            touched_at=float(value.get("touchedAt", 0.0)),
            entry_starts=[int(start) for start in value.get("entryStarts", [])],
            entries=int(value.get("entries", 0)),
        )

    @property
    def counts_entries(self) -> bool:
        """Whether every chunk's first entry is known (documents archived before that need a read)."""
        return len(self.entry_starts) == len(self.starts)

    def chunk_id(self, session_id: str, chunk: int) -> str:
        return archive_id(session_id, chunk, self.tokens[chunk])

    def chunk_range(self, chunk: int) -> tuple[int, int]:
        end = self.starts[chunk + 1] if chunk + 1 < len(self.starts) else self.count
        return self.starts[chunk], end


@dataclass(frozen=True)
class HistoryPage:
    """One page of a session's messages with their indexes, the total, and where the page before starts."""

    messages: list[tuple[int, Message]]
    total: int
    next_before: int | None


@dataclass(frozen=True)
class EntryPage:
    """One page of history entries with their indexes; ``total`` and ``next_before`` count entries too."""

    entries: list[tuple[int, dict[str, Any]]]
    total: int
    next_before: int | None


def history_messages(state: dict[str, Any]) -> list[Message]:
    """The messages the local-mode history provider keeps in the session state."""
    return list(state.get(InMemoryHistoryProvider.DEFAULT_SOURCE_ID, {}).get("messages", []))


def json_size(value: Any) -> int:
    """Bytes of ``value`` as the SDK serializes it (json.dumps defaults), to compare with budgets."""
    return len(json.dumps(value).encode())


def serialized_message_sizes(session: dict[str, Any]) -> list[int]:
    """Sizes of the history messages of a serialized session (``AgentSession.to_dict()``), in order."""
    stored = session.get("state", {}).get(InMemoryHistoryProvider.DEFAULT_SOURCE_ID, {}).get("messages", [])
    return [json_size(message) for message in stored]


def plan_archive(
    state: dict[str, Any],
    index: ArchiveIndex,
    *,
    document_bytes: int,
    max_bytes: int,
    max_messages: int,
    max_tokens: int | None = None,
    message_sizes: Callable[[], list[int] | None] | None = None,
) -> list[tuple[int, list[Message]]]:
    """Move the oldest whole turns out of ``state`` when the document is over budget (bytes, messages, or,
    with ``max_tokens``, the tokens of its history, estimated as 4 bytes a token).

    ``message_sizes`` gives each history message's serialized size from the document about to be written,
    so the window is not serialized a second time just to be measured (it must list them in order).
    Mutates ``state`` and ``index``; returns the new chunks as ``(chunk number, messages)``.

    Raises:
        TurnTooLargeError: even the latest turn alone does not fit one item (an enormous reply).
    """
    messages = history_messages(state)

    def measured() -> list[int]:
        known = message_sizes() if message_sizes is not None else None
        return (
            known if known is not None and len(known) == len(messages) else [json_size(m.to_dict()) for m in messages]
        )

    sizes = measured() if max_tokens is not None else []
    over_tokens = max_tokens is not None and sum(sizes) > max_tokens * BYTES_PER_TOKEN
    if document_bytes <= max_bytes * _HIGH_WATER and len(messages) <= max_messages and not over_tokens:
        return []
    sizes = sizes or measured()
    keep_bytes = max_bytes * _LOW_WATER
    keep_messages = max(2, int(max_messages * _MESSAGE_LOW_WATER))
    keep_history = max_tokens * BYTES_PER_TOKEN * _LOW_WATER if max_tokens is not None else float("inf")
    size, history, cut = document_bytes, sum(sizes), 0
    while cut < len(messages) and (size > keep_bytes or len(messages) - cut > keep_messages or history > keep_history):
        size -= sizes[cut]
        history -= sizes[cut]
        cut += 1
    while cut < len(messages) and not starts_turn(messages[cut]):  # never split a turn
        size -= sizes[cut]
        cut += 1
    if cut >= len(messages):  # keep at least the latest turn in the document
        cut = max((i for i, m in enumerate(messages) if starts_turn(m)), default=0)
        size = document_bytes - sum(sizes[:cut])
    if size > max_bytes * _HIGH_WATER:
        raise TurnTooLargeError("The reply is too large to store in one session item; the turn was not saved.")
    if cut == 0:
        return []

    chunks: list[tuple[int, list[Message]]] = []
    chunk_budget = max_bytes * _HIGH_WATER - _ITEM_OVERHEAD
    current: list[Message] = []
    current_bytes = 0
    for message, message_bytes in zip(messages[:cut], sizes[:cut], strict=True):
        if current and current_bytes + message_bytes > chunk_budget:
            chunks.append(_add_chunk(index, current))
            current, current_bytes = [], 0
        current.append(message)
        current_bytes += message_bytes
    chunks.append(_add_chunk(index, current))
    state[InMemoryHistoryProvider.DEFAULT_SOURCE_ID]["messages"] = messages[cut:]
    return chunks


def _add_chunk(index: ArchiveIndex, messages: list[Message]) -> tuple[int, list[Message]]:
    """Commit ``messages`` as the index's next chunk (the caller writes it); keeps message and entry counts."""
    chunk = len(index.starts)
    if index.counts_entries:
        index.entry_starts.append(index.entries)
        index.entries += sum(entry_count(m) for m in messages)
    index.starts.append(index.count)
    index.tokens.append(uuid.uuid4().hex[:8])
    index.count += len(messages)
    return chunk, messages


def starts_turn(message: Message) -> bool:
    """Whether a turn starts at ``message``: a user's message, but not the answer to a tool approval, which
    continues the turn that asked (cutting there would part a tool call from its approval and result)."""
    return message.role == "user" and not any(c.type == "function_approval_response" for c in message.contents)


async def read_page(record: SessionRecord, archive: ArchiveChunks, *, before: int | None, limit: int) -> HistoryPage:
    """Messages ``[before - limit, before)`` of the whole conversation, archive included, oldest first."""
    in_document = history_messages(record.session.state)
    index = record.archive
    total = index.count + len(in_document)
    end = total if before is None else max(0, min(before, total))
    start = max(0, end - limit)
    messages: list[tuple[int, Message]] = []
    if start < index.count:
        first_chunk = bisect.bisect_right(index.starts, start) - 1
        last_chunk = bisect.bisect_right(index.starts, min(end, index.count) - 1) - 1
        for chunk in range(first_chunk, last_chunk + 1):
            stored = await archive.read(record, chunk)
            if stored is None:
                continue  # expired by retention: a gap in the oldest history, not an error
            chunk_start, _ = index.chunk_range(chunk)
            messages.extend((chunk_start + i, m) for i, m in enumerate(stored) if start <= chunk_start + i < end)
    messages.extend((index.count + i, m) for i, m in enumerate(in_document) if start <= index.count + i < end)
    return HistoryPage(messages, total, start if start > 0 else None)


async def read_entries(record: SessionRecord, archive: ArchiveChunks, *, before: int | None, limit: int) -> EntryPage:
    """History entries ``[before - limit, before)`` of the whole conversation, archive included, oldest first.

    A chunk that retention removed leaves a gap: its entries keep their indexes but are not shown.
    """
    starts, archived = await entry_starts(record, archive)
    in_document = [entry for m in history_messages(record.session.state) for entry in message_entries(m)]
    total = archived + len(in_document)
    end = total if before is None else max(0, min(before, total))
    start = max(0, end - limit)
    entries: list[tuple[int, dict[str, Any]]] = []
    if start < archived:
        first_chunk = bisect.bisect_right(starts, start) - 1
        last_chunk = bisect.bisect_right(starts, min(end, archived) - 1) - 1
        for chunk in range(first_chunk, last_chunk + 1):
            stored = await archive.read(record, chunk)
            chunk_entries = [entry for m in stored or [] for entry in message_entries(m)]
            entries.extend(
                (starts[chunk] + i, e) for i, e in enumerate(chunk_entries) if start <= starts[chunk] + i < end
            )
    entries.extend((archived + i, e) for i, e in enumerate(in_document) if start <= archived + i < end)
    return EntryPage(entries, total, start if start > 0 else None)


async def entry_starts(
    record: SessionRecord, archive: ArchiveChunks, *, skip: set[int] | frozenset[int] = frozenset()
) -> tuple[list[int], int]:
    """Each committed chunk's first entry index and the archive's entry count; read from the chunks (all but
    ``skip``) for a document archived before entries were counted (an expired chunk then counts none)."""
    index = record.archive
    if index.counts_entries:
        return list(index.entry_starts), index.entries
    starts, position = [], 0
    for chunk in range(len(index.starts)):
        if chunk in skip:
            continue
        starts.append(position)
        stored = await archive.read(record, chunk)
        position += sum(entry_count(m) for m in stored or [])
    return starts, position
