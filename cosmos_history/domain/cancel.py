"""Stopping a running turn: who may stop it, when, and what the session looks like afterwards.

A cancel stops the model call and its tools only while the turn works (:meth:`TurnControl.working`):
once the model answered, the turn is saved as usual and the cancel came too late. A stopped turn's
message and partial reply are not kept (the model never sees them; the client saw the partial reply in
the stream, and the turn's stored events keep it until their retention ends), but its number is used up:
the session is saved with one more turn and its conversation as it was before it (one conditional write,
under the turn's lease), so the turn's id stays unique and its record stays ``cancelled``. Tools with side
effects that started keep their journal entry, as after a crash (see :mod:`.tool_journal`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from cosmos_history.domain.budget import fit_to_budget
from cosmos_history.domain.errors import SessionConflictError, TurnCancelledError
from cosmos_history.domain.records import TurnItems, empty_like, utc_now

if TYPE_CHECKING:
    from cosmos_history.domain.supervisor import TurnSupervisor
    from cosmos_history.domain.turn import PreparedTurn

logger = logging.getLogger(__name__)

CANCELLED = "The turn was cancelled; its message and partial reply were not kept. The session takes the next message."


class TurnControl:
    """The stop switch of one running turn, registered with the runtime's supervisor under its
    ``(user id, session id, turn)`` while it runs, so a cancel on this instance reaches it at once."""

    def __init__(self, supervisor: TurnSupervisor | None = None) -> None:
        self.requested = False
        self._supervisor = supervisor
        self._key: tuple[str, str, int] | None = None
        self._task: asyncio.Task[Any] | None = None

    def started(self, user_id: str, session_id: str, turn: int) -> None:
        """The turn has its number: make it reachable by the supervisor."""
        self._key = (user_id, session_id, turn)
        if self._supervisor is not None:
            self._supervisor.register(self._key, self)

    def ended(self) -> None:
        if self._supervisor is not None and self._key is not None:
            self._supervisor.unregister(self._key, self)

    def cancel(self) -> bool:
        """Ask the turn to stop; returns whether it was still working (and so will stop)."""
        self.requested = True
        if self._task is None:
            return False
        self._task.cancel()
        return True

    @contextlib.contextmanager
    def working(self) -> Iterator[None]:
        """The span in which a cancel stops the turn: the model call and its tools."""
        self._task = asyncio.current_task()
        try:
            if self.requested:
                raise asyncio.CancelledError()
            yield
        finally:
            self._task = None

    def stopped(self, error: BaseException) -> bool:
        """Whether ``error`` is this control's cancel (not the host shutting down)."""
        return self.requested and isinstance(error, asyncio.CancelledError)


async def stop_turn(turn: PreparedTurn) -> TurnCancelledError:
    """End a cancelled turn consistently (see the module docstring); returns the error the turn ends with."""
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
    try:
        await use_up_number(turn)
    except Exception as error:  # the turn is stopped either way; the session stays as it was stored
        logger.warning("Could not save a cancelled turn's number: %s", type(error).__name__)
    finally:
        await turn.abandon()
    return TurnCancelledError(CANCELLED, extensions={"turn": turn.record.turns + 1})


async def use_up_number(turn: PreparedTurn) -> None:
    """Save the session as stored, with one more turn: conditional on the version it holds now."""
    store, record = turn.store, turn.record
    current = await store.load(record.id)
    if current is None:
        current = empty_like(record)
        current.tool_journal = []
    elif current.turns != record.turns:
        return  # another turn was saved meanwhile (our lease expired): nothing of ours to record
    current.turns = record.turns + 1
    current.updated_at = utc_now()
    try:
        await fit_to_budget(store, current, turn.policy.budget)
        await store.save(current, etag=current.etag, items=TurnItems(lease_etag=turn.lease_etag))
        turn.lease_etag = None  # released by that same write
    except SessionConflictError:
        logger.info("A cancelled turn's session changed meanwhile; its number was not recorded")
