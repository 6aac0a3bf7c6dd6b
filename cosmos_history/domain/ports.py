"""What the turn and the session operations need from storage, as small protocols.

Two adapters implement them: ``adapters/cosmos`` (production) and ``adapters/memory`` (tests, and a
reference for another store). One contract suite (``tests/contract``) runs against both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from agent_framework import Message

from cosmos_history.domain.budget import StoredSize
from cosmos_history.domain.modes import CompactionSettings, HistoryMode
from cosmos_history.domain.records import NO_ITEMS, LeaseClaim, SessionPage, SessionRecord, TurnItems


class CatalogAgent(Protocol):
    """One agent the app serves, as a turn needs it."""

    @property
    def name(self) -> str: ...

    @property
    def summary_prompt(self) -> str | None: ...

    def for_mode(self, mode: HistoryMode) -> Any:
        """The agent instance that keeps its history the ``mode`` way."""
        ...

    def tools(self) -> Sequence[Any]:
        """The agent's own tools (each has a ``name``)."""
        ...


class AgentCatalog(Protocol):
    """The app's agents (:class:`cosmos_history.agents.catalog.Agents` implements it)."""

    @property
    def default(self) -> str: ...

    @property
    def compaction(self) -> CompactionSettings: ...

    def resolve(self, name: str | None) -> CatalogAgent:
        """The agent called ``name`` (the default for ``None``).

        Raises:
            AgentNotFoundError: no agent is called ``name``.
        """
        ...


class ArchiveChunks(Protocol):
    """Append-only chunks of a session's oldest messages (see :mod:`cosmos_history.domain.archive`)."""

    async def write(self, record: SessionRecord, chunk: int, messages: list[Message]) -> None: ...

    async def read(self, record: SessionRecord, chunk: int) -> list[Message] | None:
        """The chunk's messages, or ``None`` when retention removed it."""
        ...

    async def renew(self, record: SessionRecord) -> None:
        """Extend the chunks' retention when the session is active (a no-op where nothing expires)."""
        ...


class SessionRepository(Protocol):
    """One user's sessions: etag-aware load and conditional save, listing and deletion.

    Storage only: which mode a new session gets and how large a document may grow are the domain's
    :class:`~.policy.HistoryPolicy`; a repository stores records as given and reports their sizes.

    Session ids are per user: every item is stored under the key ``(user id, session id)``, so another
    user's session is never reached (it loads as missing) and two users may use the same id.
    """

    user_id: str
    archive: ArchiveChunks
    commits_chunks: bool
    """Whether :meth:`save` writes the record's ``pending_chunks`` itself (in the turn's atomic commit where it can,
    else before the document); when false, the budget writes each chunk before the save, as it plans it."""

    def for_user(self, user_id: str) -> SessionRepository: ...

    def measure(self, record: SessionRecord) -> StoredSize:
        """Sizes of the document :meth:`save` would write for ``record``, serialized as it would be.

        Raises:
            UnstorableStateError, UnstorableTypeError: the state cannot be stored.
        """
        ...

    async def load(self, session_id: str) -> SessionRecord | None:
        """The caller's stored session, ``None`` when there is none (whatever other users have under this id).

        Raises:
            SessionNotFoundError: what is stored under the caller's key is not a session of the caller
                (never written by this app); it must look exactly like a missing one.
        """
        ...

    async def save(self, record: SessionRecord, *, etag: str | None, items: TurnItems = NO_ITEMS) -> SessionRecord:
        """Write ``record`` as given (the domain has already fitted it to its policy's budget), only if the stored
        version still has ``etag`` (``None``: only if none exists yet): the unit
        of work of a turn, which commits ``items`` (the lease's release, the replay entry, the stored
        response) in the same atomic write, all or nothing. Without items it is one conditional write.

        Raises:
            SessionConflictError: someone else wrote first, or took the lease over; nothing was written.
            SessionExistsError: a create found one; nothing was written.
        """
        ...

    async def note_started(self, record: SessionRecord) -> str:
        """Store ``record.tool_journal`` on the stored session, every other field left as stored, only if it
        still has ``record.etag`` (``None``: create it as a new empty session); returns the new etag.

        Raises:
            SessionConflictError: someone else wrote first. SessionExistsError: a create found one.
        """
        ...

    async def delete(self, session_id: str) -> bool:
        """Delete the session and everything stored for it; ``False`` when there was none."""
        ...

    async def list_sessions(self, *, limit: int = 20, continuation_token: str | None = None) -> SessionPage:
        """The caller's sessions, newest first; following ``continuation_token`` never skips or repeats one
        (sessions updated in the same instant included). A token may promise more and lead to an empty page.

        Raises:
            BadRequestError: the token is not one this repository issued.
        """
        ...

    async def ping(self) -> None: ...


class TurnLease(Protocol):
    """A short claim on a session, so a racing turn is refused before it pays for a model call.

    The claim and the read of the session are one request, and the turn's commit releases the lease
    (:meth:`SessionRepository.save` with ``TurnItems(lease_etag=...)``): a steady turn makes two.
    """

    seconds: float

    async def claim(self, session_id: str, user_id: str) -> LeaseClaim:
        """Claim the lease (free, or expired: a crashed turn's) and read the session, atomically.

        Raises:
            TurnInProgressError: another turn holds it (``retry_after`` says when to try again); nothing changed.
            SessionNotFoundError: what is stored under the caller's key is not a session of the caller
                (the lease is not held then).
        """
        ...

    async def renew(self, session_id: str, user_id: str, lease_etag: str) -> str | None:
        """Extend our claim by a whole lease; returns the claim's token for the next renewal (the same one,
        or a new one, as the adapter keeps them), ``None`` when another turn took the lease over."""
        ...

    async def release(self, session_id: str, user_id: str, lease_etag: str) -> None:
        """Free our claim at once (a turn that ends without a commit); best effort, as expiry frees it anyway."""
        ...


class ReplayCache(Protocol):
    """Results of turns made with an ``Idempotency-Key``. Only a cache: the session document decides
    whether a key's turn happened (:meth:`SessionRecord.committed_key`). A turn writes its entry in its
    commit (:class:`TurnItems`); :meth:`record` is for other writers."""

    ttl_seconds: int

    async def find(self, session_id: str, user_id: str, key_hash: str, *, turn: int) -> dict[str, Any] | None: ...

    async def record(
        self, session_id: str, user_id: str, key_hash: str, *, turn: int, result: dict[str, Any]
    ) -> None: ...


class ResponseLog(Protocol):
    """Response objects of the OpenAI-compatible endpoint, by session and turn, so they can be read back.

    They live beside the session (deleted with it). A foreground turn's is written in the turn's commit
    (:class:`TurnItems`): a turn that is in the session has its response, and one that is not has none. A
    background response is stored by :meth:`record` when it is first built from the turn's stored events.
    """

    async def record(self, session_id: str, user_id: str, turn: int, response: dict[str, Any]) -> None: ...

    async def find(self, session_id: str, user_id: str, turn: int) -> dict[str, Any] | None:
        """The stored response, ``None`` when there is none (or it is another user's)."""
        ...

    async def delete(self, session_id: str, user_id: str, turn: int) -> bool: ...


class JobQueue(Protocol):
    """Work for a queue-triggered function (a background turn): a small JSON message, delivered at least once."""

    async def enqueue(self, job: dict[str, Any], *, delay_seconds: int = 0) -> None:
        """Send ``job`` (hidden for ``delay_seconds``); once this returns, a worker will run it (again, after a
        crash) until it ends.

        Raises:
            StoreUnavailableError: the queue cannot be reached (nothing was sent).
        """
        ...
