"""Session operations other than the turn: create, describe, list, delete."""

from __future__ import annotations

import contextlib
import uuid
from typing import TYPE_CHECKING

from cosmos_history.domain.archive import EntryPage, HistoryPage, read_entries, read_page
from cosmos_history.domain.budget import fit_to_budget
from cosmos_history.domain.delegation import children_of
from cosmos_history.domain.errors import SessionNotFoundError
from cosmos_history.domain.modes import HistoryMode
from cosmos_history.domain.policy import HistoryPolicy
from cosmos_history.domain.records import SessionPage, SessionRecord, validate_session_id

if TYPE_CHECKING:
    from cosmos_history.domain.ports import AgentCatalog, SessionRepository


async def create_session(
    store: SessionRepository,
    agents: AgentCatalog,
    *,
    policy: HistoryPolicy,
    session_id: str | None = None,
    mode: HistoryMode | None = None,
    title: str | None = None,
    agent: str | None = None,
) -> SessionRecord:
    """Create an empty session for ``agent`` (one write, create-only: an existing id is a conflict), in
    ``mode`` or else the ``policy``'s default."""
    session_id = str(uuid.uuid4()) if session_id is None else session_id
    validate_session_id(session_id)
    mode = policy.mode_of_new(mode)
    served = agents.resolve(agent)
    served.for_mode(mode)  # fail before writing when the model API cannot serve this mode
    record = SessionRecord.new(session_id, user_id=store.user_id, mode=mode, title=title, agent=served.name)
    await fit_to_budget(store, record, policy.budget)
    return await store.save(record, etag=None)


async def load_session(store: SessionRepository, session_id: str) -> SessionRecord:
    record = await store.load(session_id)
    if record is None:
        raise SessionNotFoundError()
    return record


async def read_history(store: SessionRepository, session_id: str, *, before: int | None, limit: int) -> HistoryPage:
    """One page of the whole conversation, archive included."""
    return await read_page(await load_session(store, session_id), store.archive, before=before, limit=limit)


async def read_entry_page(store: SessionRepository, session_id: str, *, before: int | None, limit: int) -> EntryPage:
    """One page of the history entries the API shows (``limit`` and ``before`` count entries), archive included."""
    return await read_entries(await load_session(store, session_id), store.archive, before=before, limit=limit)


async def delete_session(store: SessionRepository, session_id: str) -> None:
    """Delete the session and, first, the child sessions of its delegations (theirs too): a retry after a
    failure finds the parent still there, naming the children left."""
    record = await store.load(session_id)
    if record is None:
        raise SessionNotFoundError()
    for child in children_of(record.session):
        with contextlib.suppress(SessionNotFoundError):
            await delete_session(store, child)
    if not await store.delete(session_id):
        raise SessionNotFoundError()


async def list_sessions(store: SessionRepository, *, limit: int, continuation_token: str | None) -> SessionPage:
    return await store.list_sessions(limit=limit, continuation_token=continuation_token)
