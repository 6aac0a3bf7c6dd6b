"""The session document's budget, decided in the domain before every write of a local-mode session.

Adapters only store what they are given and report sizes (:meth:`SessionRepository.measure`, measured on the
document exactly as they would write it); the domain decides which of the oldest turns move to archive chunks
(:mod:`.archive` plans the cut). Every commit path calls :func:`fit_to_budget` just before
:meth:`SessionRepository.save`, so the adapter is handed a record that already fits. The budget itself is
part of the domain's :class:`~.policy.HistoryPolicy`, built once from settings, never a repository's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent_framework import Message

from cosmos_history.domain.archive import (
    BYTES_PER_TOKEN,
    entry_starts,
    history_messages,
    json_size,
    plan_archive,
)
from cosmos_history.domain.entries import entry_count

if TYPE_CHECKING:
    from cosmos_history.domain.ports import ArchiveChunks, SessionRepository
    from cosmos_history.domain.records import SessionRecord


@dataclass(frozen=True)
class HistoryBudget:
    """How large a local-mode session document may grow before its oldest turns move to the archive."""

    max_bytes: int = 1_000_000
    """Bytes of the stored document (Cosmos DB refuses items over 2 MB)."""
    max_messages: int = 200
    max_tokens: int | None = None
    """Estimated tokens of the history kept in the document (4 bytes a token); ``None``: no bound."""


@dataclass(frozen=True)
class StoredSize:
    """What an adapter reports about the document it would write for a record."""

    document: int
    """Bytes of the whole document as the store serializes it."""
    messages: list[int] | None = None
    """Bytes of each history message in it, in order (``None``: the domain measures them itself)."""


async def fit_to_budget(repository: SessionRepository, record: SessionRecord, budget: HistoryBudget) -> bool:
    """Before a local-mode record is saved: renew its archive's retention and move the oldest turns to
    archive chunks (written first, or by the save with the document: invisible until the save commits them) when
    it is over ``budget`` (the policy's). Returns whether anything moved. A service-mode record keeps no history
    here: nothing to do.
    """
    if record.mode != "local":
        return False
    await repository.archive.renew(record)
    measured: list[StoredSize] = []

    def size() -> StoredSize:
        if not measured:
            measured.append(repository.measure(record))
        return measured[0]

    try:
        return await keep_within_budget(
            record,
            repository.archive,
            document_bytes=lambda: size().document,
            max_bytes=budget.max_bytes,
            max_messages=budget.max_messages,
            max_tokens=budget.max_tokens,
            message_sizes=lambda: size().messages,
            pending=record.pending_chunks if getattr(repository, "commits_chunks", False) else None,
        )
    except (TypeError, ValueError):
        # Measuring a message JSON cannot hold failed before anything was written: the adapter's own check
        # names the value it cannot store (UnstorableTypeError, UnstorableStateError) as its save would.
        if not measured:
            repository.measure(record)
        raise


async def keep_within_budget(
    record: SessionRecord,
    archive: ArchiveChunks,
    *,
    document_bytes: Callable[[], int],
    max_bytes: int,
    max_messages: int,
    max_tokens: int | None = None,
    message_sizes: Callable[[], list[int] | None] | None = None,
    pending: list[tuple[int, list[Message]]] | None = None,
) -> bool:
    """Move the oldest turns to archive chunks (written first, or left in ``pending``) when the document is over
    budget.

    Returns whether anything moved (the caller then rebuilds the document it is about to write).
    ``message_sizes``: see :func:`plan_archive`. ``pending``: the chunks are added to it instead of written, for
    the save to write with the document (they stay invisible either way until the document lists them).
    """
    if _clearly_within_budget(record, max_bytes, max_messages, max_tokens):
        return False
    chunks = plan_archive(
        record.session.state,
        record.archive,
        document_bytes=document_bytes(),
        max_bytes=max_bytes,
        max_messages=max_messages,
        max_tokens=max_tokens,
        message_sizes=message_sizes,
    )
    if not chunks:
        return False
    if not record.archive.counts_entries:
        # A document archived before entries were counted: count the older chunks once, now.
        moved = {chunk for chunk, _ in chunks}
        record.archive.entry_starts, record.archive.entries = await entry_starts(record, archive, skip=moved)
        for _, messages in chunks:
            record.archive.entry_starts.append(record.archive.entries)
            record.archive.entries += sum(entry_count(m) for m in messages)
    if not record.archive.touched_at:
        record.archive.touched_at = time.time()
    if pending is not None:
        pending.extend(chunks)
        return True
    for chunk, messages in chunks:
        await archive.write(record, chunk, messages)
    return True


def _clearly_within_budget(record: SessionRecord, max_bytes: int, max_messages: int, max_tokens: int | None) -> bool:
    """True when the document certainly stays within the budget, so it need not be serialized once more just to
    be measured (the SDK serializes it for sending anyway): the loaded size plus this turn's new messages stay
    far below the byte budget, and the history's messages, each measured as :func:`plan_archive` measures them,
    add up to at most the token budget (exactly: the window sits near that budget by design)."""
    messages = history_messages(record.session.state)
    if record.loaded_bytes is None or len(messages) > max_messages:
        return False
    new = messages[record.loaded_messages :]
    forms = record.stored_forms
    added = sum(map(json_size, forms.fresh_forms(new) if forms else [m.to_dict() for m in new]))
    # json.dumps spacing makes our measure up to ~10% larger than the server's compact JSON.
    estimate = record.loaded_bytes * 1.15 + added + 2048
    if estimate >= max_bytes * 0.8:
        return False
    if max_tokens is None or estimate < max_tokens * BYTES_PER_TOKEN * 0.8:
        return True
    return sum(_history_sizes(record, messages)) <= max_tokens * BYTES_PER_TOKEN


def _history_sizes(record: SessionRecord, messages: list[Message]) -> list[int]:
    """Each history message's bytes in the document about to be written: a loaded, unchanged message's stored
    form (written as it was read, measured once), any other message as the framework serializes it."""
    forms = record.stored_forms
    if forms is None:
        return [json_size(message.to_dict()) for message in messages]
    return forms.sizes(messages)
