"""A streamed turn's plumbing: the turn runs in a task of its own and hands its text to a reader.

The turn logic itself is the same for plain and streamed turns (:mod:`cosmos_history.domain.turn`);
this module only decouples the reader (an HTTP response that may go away) from the turn (which must
not: the model was paid for, so its reply is saved all the same).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Coroutine, Iterable
from typing import TYPE_CHECKING, Any

from agent_framework import Message

from cosmos_history.domain.approvals import json_arguments, json_result
from cosmos_history.domain.tool_journal import outcome_of

if TYPE_CHECKING:
    from cosmos_history.domain.turn import TurnResult

logger = logging.getLogger(__name__)

StreamEvent = tuple[str, dict[str, Any]]
"""One event of a streamed turn: ``("delta", {"text"})``, ``("tool_call", ...)``, ``("tool_result", ...)``
or ``("approval_required", ...)``."""


class TurnStream:
    """One turn running in a task of its own, so a reader that goes away (a client disconnecting
    mid-stream cancels the response) never cancels the turn: the model was paid for, so its reply
    is saved all the same. Read :meth:`deltas` once, then :meth:`result`.
    """

    def __init__(self) -> None:
        self._events: asyncio.Queue[StreamEvent | None] = asyncio.Queue()
        self._first_update: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._updates = 0
        self._task: asyncio.Task[TurnResult] | None = None

    def start(self, turn: Coroutine[Any, Any, TurnResult]) -> None:
        self._task = asyncio.create_task(self._run(turn), name="streamed turn")
        keep_running(self._task)

    async def _run(self, turn: Coroutine[Any, Any, TurnResult]) -> TurnResult:
        try:
            return await turn
        finally:
            self._signal_started()
            self._events.put_nowait(None)

    def deliver(self, events: Iterable[StreamEvent]) -> None:
        """One update from the model: what it adds (new text, tool activity), possibly nothing."""
        self._updates += 1
        self._signal_started()
        for event in events:
            self._events.put_nowait(event)

    def _signal_started(self) -> None:
        if not self._first_update.done():
            self._first_update.set_result(None)

    async def started(self) -> None:
        """Wait for the model's first update; raise the turn's error if it ended before any."""
        await asyncio.shield(self._first_update)
        assert self._task is not None
        if self._updates == 0 and self._task.done():
            self._task.result()

    def replayed(self) -> bool:
        """Whether the turn was an idempotent replay: known once :meth:`started` returned, since a replay
        delivers its stored reply and ends without awaiting anything."""
        task = self._task
        if task is None or not task.done() or task.cancelled() or task.exception() is not None:
            return False
        return task.result().replayed

    async def events(self) -> AsyncIterator[StreamEvent]:
        """The turn's events as they arrive; the ``delta`` texts add up to the reply exactly once."""
        while (event := await self._events.get()) is not None:
            yield event

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


class ToolEvents:
    """Turns streamed tool activity into events: a call once its arguments are complete (providers may
    stream them in pieces), its result once the tool ran, and the approvals the turn ends waiting for.

    ``answered`` (what the turn runs on) names the calls approved in an earlier turn, whose results come
    without their call in this stream."""

    def __init__(self, answered: Any = None) -> None:
        self._calls: dict[str, tuple[str, str]] = {}
        self._announced: set[str] = set()
        for message in (m for m in (answered if isinstance(answered, list) else [answered]) if isinstance(m, Message)):
            for call in (c.function_call for c in message.contents if c.function_call is not None):
                arguments = call.arguments if isinstance(call.arguments, str) else json.dumps(call.arguments or {})
                self._calls[call.call_id or ""] = (call.name or "", arguments)

    def feed(self, contents: Iterable[Any]) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        for content in contents:
            if content.type == "function_call" and content.call_id:
                events += self._call(content)
            elif content.type == "function_result" and content.call_id:
                events += self._announce(content.call_id)
                result = {"id": content.call_id, "result": json_result(content), "status": outcome_of(content)}
                events.append(("tool_result", result))
            elif content.type == "function_approval_request" and content.function_call is not None:
                call = content.function_call
                arguments = json_arguments(call.arguments)
                events.append(("approval_required", {"id": content.id, "name": call.name, "arguments": arguments}))
        return events

    def _call(self, content: Any) -> list[StreamEvent]:
        name, arguments = self._calls.get(content.call_id, ("", ""))
        if isinstance(content.arguments, str):
            arguments += content.arguments
        elif content.arguments is not None:
            arguments = json.dumps(content.arguments)
        self._calls[content.call_id] = (content.name or name, arguments)
        try:
            json.loads(arguments or "{}")
        except ValueError:
            return []  # more pieces of the arguments are coming
        return self._announce(content.call_id)

    def _announce(self, call_id: str) -> list[StreamEvent]:
        if call_id in self._announced:
            return []
        self._announced.add(call_id)
        name, arguments = self._calls.get(call_id, ("", "{}"))
        return [("tool_call", {"id": call_id, "name": name, "arguments": json_arguments(arguments or "{}")})]


_RUNNING_TURNS: set[asyncio.Task[Any]] = set()
"""Streamed turns (and the work that follows them) still running: a strong reference, so none is
garbage-collected mid-turn."""


def keep_running(task: asyncio.Task[Any]) -> None:
    """Hold ``task`` until it ends, whoever reads it, and let hosts wait for it when they shut down."""
    _RUNNING_TURNS.add(task)
    task.add_done_callback(_turn_done)


def _turn_done(task: asyncio.Task[Any]) -> None:
    _RUNNING_TURNS.discard(task)
    if not task.cancelled() and (error := task.exception()) is not None:
        logger.info("Streamed %s ended without saving: %s", task.get_name(), type(error).__name__)


async def wait_for_running_turns() -> None:
    """Let streamed turns whose clients went away finish saving (for hosts that shut down cleanly;
    bound it with ``asyncio.timeout``: cancelling this wait leaves the turns running)."""
    if _RUNNING_TURNS:
        await asyncio.wait(set(_RUNNING_TURNS))
