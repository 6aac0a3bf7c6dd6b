"""The framework's ``SessionStore`` contract over any :class:`SessionRepository`.

Hosting code (``agent_framework_hosting``, the Foundry host) treats stores as interchangeable: it
calls ``get``/``set``/``delete`` with keys it chose and expects its sessions back exactly as set.
So the key and the session's own ``session_id`` stay separate, the caller's object is never changed
(the store keeps a copy made through ``to_dict``/``from_dict``), and a session is validated the way
the framework's ``FileSessionStore`` validates it before writing, with the same exception types and
messages, since callers match on them. The framework keeps that validation private, so it is
mirrored here; ``tests/contract`` checks both raise the same errors for the same sessions.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Container, Mapping
from typing import TYPE_CHECKING, Any

from agent_framework import AgentSession, SessionStore

from cosmos_history.domain.budget import fit_to_budget
from cosmos_history.domain.errors import SessionNotFoundError, UnstorableStateError, UnstorableTypeError
from cosmos_history.domain.policy import DEFAULT_POLICY, HistoryPolicy
from cosmos_history.domain.records import SessionRecord, utc_now, validate_session_id

if TYPE_CHECKING:
    from cosmos_history.domain.ports import SessionRepository

# SessionStore is marked experimental in agent-framework-core; building on it is deliberate (it is the
# contract hosting code expects), so its warning is not repeated at every import.
warnings.filterwarnings("ignore", message=r"\[SESSION_STORE\]")

_SCALARS = (str, int, float, bool, type(None))


class RepositorySessionStore(SessionStore):
    """A ``SessionStore`` acting for one user of a repository; writes are conditional, as every write here.
    ``policy`` gives a new session its mode and every session document its budget."""

    def __init__(self, repository: SessionRepository, *, policy: HistoryPolicy = DEFAULT_POLICY) -> None:
        self.repository = repository
        self.policy = policy

    @staticmethod
    def validate_session_id(session_id: str) -> None:
        validate_session_id(session_id)

    async def get(self, session_id: str) -> AgentSession | None:
        """A fresh copy of the stored session (another user's looks missing), or ``None``."""
        validate_session_id(session_id)
        try:
            record = await self.repository.load(session_id)
        except SessionNotFoundError:
            return None
        return record.session if record is not None else None

    async def set(self, session_id: str, session: AgentSession) -> None:
        """Store a copy of ``session`` under ``session_id``, keeping the document's metadata.

        Raises:
            ValueError: the key is empty or over 128 characters (:class:`InvalidSessionIdError`), or the
                state holds ``nan``/``inf`` (:class:`UnstorableStateError`).
            TypeError: ``session`` is a subclass, or its state holds a value the store cannot keep
                (:class:`UnstorableTypeError`).
        """
        validate_session_id(session_id)
        snapshot = self.durable_copy(session)
        record = await self.repository.load(session_id)
        etag = record.etag if record is not None else None
        if record is None:
            record = SessionRecord.new(session_id, user_id=self.repository.user_id, mode=self.policy.default_mode)
        record.session = snapshot
        record.key = session_id if snapshot.session_id != session_id else None
        record.loaded_bytes = None  # a replaced session: its size says nothing about the new one
        record.updated_at = utc_now()
        await fit_to_budget(self.repository, record, self.policy.budget)
        await self.repository.save(record, etag=etag)

    async def delete(self, session_id: str) -> None:
        """Delete the session if present (the contract ignores missing ones)."""
        validate_session_id(session_id)
        with contextlib.suppress(SessionNotFoundError):
            await self.repository.delete(session_id)

    def durable_copy(self, session: AgentSession) -> AgentSession:
        """A copy of ``session`` the store may change freely, checked as ``FileSessionStore`` checks it."""
        if type(session) is not AgentSession:
            raise UnstorableTypeError(
                f"{type(self).__name__} supports AgentSession instances only; "
                "custom AgentSession subclasses require a custom SessionStore."
            )
        data = session.to_dict()
        check_durable(data["state"], path="state")
        return AgentSession.from_dict(data)


def check_durable(value: Any, *, path: str, known: Container[int] = ()) -> None:
    """Mirror of the framework's durable-state check (``_validate_durable_state_value``), same messages.

    ``known``: ids of values read from a stored document (JSON, written after this same check): not walked again.
    """
    if known and id(value) in known:
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise UnstorableStateError(f"Session state value at {path} must be a finite float.")
    if type(value) in _SCALARS:
        return
    if isinstance(value, list):
        for index, item in enumerate(value):
            check_durable(item, path=f"{path}[{index}]", known=known)
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            check_durable(item, path=f"{path}.{key}", known=known)
        return
    raise UnstorableTypeError(
        f"Session state value at {path} has unsupported serialized type {type(value).__name__!r}; "
        "call register_state_type() with a codec that returns JSON-compatible values."
    )
