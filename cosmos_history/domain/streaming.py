"""A streamed turn's plumbing: the turn runs in a task of its own and hands its text to a reader.

The turn logic itself is the same for plain and streamed turns (:mod:`cosmos_history.domain.turn`);
this module only decouples the reader (an HTTP response that may go away) from the turn (which must
not: the model was paid for, so its reply is saved all the same).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cosmos_history.domain.turn import TurnResult

logger = logging.getLogger(__name__)


class TurnStream:
    """One turn running in a task of its own, so a reader that goes away (a client disconnecting
    mid-stream cancels the response) never cancels the turn: the model was paid for, so its reply
    is saved all the same. Read :meth:`deltas` once, then :meth:`result`.
    """

    def __init__(self) -> None:
        self._pieces: asyncio.Queue[str | None] = asyncio.Queue()
        self._first_update: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._updates = 0
        self._task: asyncio.Task[TurnResult] | None = None

    def start(self, turn: Coroutine[Any, Any, TurnResult]) -> None:
        self._task = asyncio.create_task(self._run(turn), name="streamed turn")
        _RUNNING_TURNS.add(self._task)
        self._task.add_done_callback(_turn_done)

    async def _run(self, turn: Coroutine[Any, Any, TurnResult]) -> TurnResult:
        try:
            return await turn
        finally:
            self._signal_started()
            self._pieces.put_nowait(None)

    def deliver(self, pieces: Iterable[str]) -> None:
        """One update from the model: its new text, possibly none."""
        self._updates += 1
        self._signal_started()
        for piece in pieces:
            self._pieces.put_nowait(piece)

    def _signal_started(self) -> None:
        if not self._first_update.done():
            self._first_update.set_result(None)

    async def started(self) -> None:
        """Wait for the model's first update; raise the turn's error if it ended before any."""
        await asyncio.shield(self._first_update)
        assert self._task is not None
        if self._updates == 0 and self._task.done():
            self._task.result()

    async def deltas(self) -> AsyncIterator[str]:
        """The reply's text as it arrives; the pieces add up to the reply exactly once."""
        while (piece := await self._pieces.get()) is not None:
            yield piece

    async def result(self) -> TurnResult:
        """The saved turn, or the turn's :class:`ProblemError`. Cancelling the caller leaves the turn running."""
        assert self._task is not None
        return await asyncio.shield(self._task)


class TextDeltas:
    """Turns streamed text contents into new text only.

    Providers may close an output item with a content repeating the item's whole text
    (``merge_mode="replace"``: the Responses API's ``output_text.done``). Only what such a content
    adds beyond the text already sent for that item is new; everything else is appended as it comes.
    """

    def __init__(self) -> None:
        self._sent: dict[Any, str] = {}

    def feed(self, contents: Iterable[Any]) -> list[str]:
        pieces = []
        for content in contents:
            if content.type != "text" or not content.text:
                continue
            item = getattr(content.raw_representation, "item_id", None)
            sent = self._sent.get(item, "")
            if getattr(content, "merge_mode", None) == "replace":
                piece = content.text[len(sent) :] if content.text.startswith(sent) else ""
                self._sent[item] = content.text
            else:
                piece = content.text
                self._sent[item] = sent + piece
            if piece:
                pieces.append(piece)
        return pieces


_RUNNING_TURNS: set[asyncio.Task[TurnResult]] = set()
"""Streamed turns still running: a strong reference, so none is garbage-collected mid-turn."""


def _turn_done(task: asyncio.Task[TurnResult]) -> None:
    _RUNNING_TURNS.discard(task)
    if not task.cancelled() and (error := task.exception()) is not None:
        logger.info("Streamed %s ended without saving: %s", task.get_name(), type(error).__name__)


async def wait_for_running_turns() -> None:
    """Let streamed turns whose clients went away finish saving (for hosts that shut down cleanly;
    bound it with ``asyncio.timeout``: cancelling this wait leaves the turns running)."""
    if _RUNNING_TURNS:
        await asyncio.wait(set(_RUNNING_TURNS))
