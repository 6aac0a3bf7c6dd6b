"""The turns running in one runtime: started, found by session, cancelled and drained here.

A streamed turn runs in a task of its own, so that a reader going away never cancels it (the model was
paid for, so its reply is saved all the same). The supervisor holds those tasks (a strong reference, so
none is garbage-collected mid-turn) and lets a host wait for them as it shuts down. The runtime owns one;
nothing about running turns is process-wide.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from cosmos_history.domain.cancel import TurnControl

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


class TurnSupervisor:
    """The running turns (and the work that follows them, such as storing a response) of one runtime."""

    def __init__(self) -> None:
        self._running: dict[asyncio.Task[Any], str | None] = {}
        self._controls: dict[tuple[str, str, int], TurnControl] = {}

    def start(self, work: Coroutine[Any, Any, _T], *, name: str, session_id: str | None = None) -> asyncio.Task[_T]:
        """Run ``work`` in a task of its own, held until it ends whoever reads it."""
        task = asyncio.create_task(work, name=name)
        self._running[task] = session_id
        task.add_done_callback(self._done)
        return task

    def running(self, session_id: str) -> list[asyncio.Task[Any]]:
        """The tasks still running for ``session_id``."""
        return [task for task, session in self._running.items() if session == session_id]

    def cancel(self, session_id: str) -> int:
        """Cancel what runs for ``session_id``; returns how many tasks were asked to stop."""
        tasks = self.running(session_id)
        for task in tasks:
            task.cancel()
        return len(tasks)

    def register(self, key: tuple[str, str, int], control: TurnControl) -> None:
        """A running turn's stop switch, by ``(user id, session id, turn)``."""
        self._controls[key] = control

    def unregister(self, key: tuple[str, str, int], control: TurnControl) -> None:
        if self._controls.get(key) is control:
            del self._controls[key]

    def cancel_turn(self, key: tuple[str, str, int]) -> bool:
        """Stop the turn ``key`` if it runs here; returns whether it was running here."""
        control = self._controls.get(key)
        if control is None:
            return False
        control.cancel()
        return True

    async def drain(self) -> None:
        """Wait for every running task (bound it with ``asyncio.timeout``: cancelling the wait leaves them running)."""
        while self._running:
            await asyncio.wait(set(self._running))

    def __len__(self) -> int:
        return len(self._running)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._running.pop(task, None)
        if not task.cancelled() and (error := task.exception()) is not None:
            logger.info("Streamed %s ended without saving: %s", task.get_name(), type(error).__name__)
