"""Which session and agent a turn runs on: the stored session (or a new one), its mode and its agent."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cosmos_history.domain.errors import AgentMismatchError, ModeConflictError
from cosmos_history.domain.modes import HistoryMode
from cosmos_history.domain.policy import HistoryPolicy
from cosmos_history.domain.records import SessionRecord

if TYPE_CHECKING:
    from cosmos_history.domain.ports import AgentCatalog, SessionRepository


async def load_or_new(
    store: SessionRepository, session_id: str, mode: HistoryMode | None, agent: str, policy: HistoryPolicy
) -> SessionRecord:
    """The stored session, or a new (unsaved) one for ``agent``; refuses to switch an existing session's mode."""
    return stored_or_new(await store.load(session_id), store, session_id, mode, agent, policy)


def stored_or_new(
    record: SessionRecord | None,
    store: SessionRepository,
    session_id: str,
    mode: HistoryMode | None,
    agent: str,
    policy: HistoryPolicy,
) -> SessionRecord:
    """``record`` (as read), or a new (unsaved) session for ``agent`` when there is none (in ``mode``, else
    the policy's default mode).

    Raises:
        ModeConflictError: ``mode`` is not the stored session's.
    """
    if record is None:
        return SessionRecord.new(session_id, user_id=store.user_id, mode=policy.mode_of_new(mode), agent=agent)
    if mode is not None and mode != record.mode:
        raise ModeConflictError(
            f"Session {session_id!r} uses history mode {record.mode!r}; a session's mode never changes."
        )
    return record


def agent_of(agents: AgentCatalog, record: SessionRecord, *, named: str | None) -> Any:
    """The agent instance serving ``record``: the session's own agent, in the session's history mode.

    Raises:
        AgentMismatchError: the request names another agent than the session's (one agent's session
            state is not guaranteed to load into another).
        AgentNotFoundError: the session's agent is no longer served by this app.
    """
    own = record.agent or agents.default
    if named is not None and named != own:
        raise AgentMismatchError(f"This session belongs to agent {own!r}; a turn cannot switch it to {named!r}.")
    return agents.resolve(own).for_mode(record.mode)
