"""A streamed turn's plumbing: the turn runs in a task of its own and publishes typed events to a reader.

The turn logic itself is the same for plain and streamed turns (:mod:`cosmos_history.domain.turn`);
this module only decouples the reader (an HTTP response that may go away) from the turn (which must
not: the model was paid for, so its reply is saved all the same).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any

from agent_framework import Message

from cosmos_history.domain.approvals import expanded_approvals, json_arguments, json_result
from cosmos_history.domain.events import (
    ApprovalRequired,
    ModelAnswering,
    ToolCalled,
    ToolResult,
    TurnEvent,
    TurnStarted,
)
from cosmos_history.domain.tool_journal import outcome_of

if TYPE_CHECKING:
    from cosmos_history.domain.results import TurnResult
    from cosmos_history.domain.supervisor import TurnSupervisor

logger = logging.getLogger(__name__)


class TurnStream:
    """The live subscriber of one turn running in a task of its own (started by the runtime's
    :class:`~cosmos_history.domain.supervisor.TurnSupervisor`), so a reader that goes away (a client
    disconnecting mid-stream cancels the response) never cancels the turn: the model was paid for, so its
    reply is saved all the same. Read :meth:`events` once (it ends with :class:`TurnCompleted` or
    :class:`TurnFailed`), then :meth:`result` if needed.
    """

    def __init__(self, *, ready: Callable[[], Awaitable[None]] | None = None) -> None:
        self._ready = ready
        """Awaited before the stream starts (the turn's durable record stored); what it raises fails the turn."""
        self._events: asyncio.Queue[TurnEvent | None] = asyncio.Queue()
        self._first_update: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._answering = False
        self._replayed = False
        self._task: asyncio.Task[TurnResult] | None = None
        self.turn: int | None = None
        """The turn's number, known once it started (before :meth:`started` returns for a turn that runs)."""

    def start(self, turn: Coroutine[Any, Any, TurnResult], supervisor: TurnSupervisor, *, session_id: str) -> None:
        self._task = supervisor.start(self._run(turn), name="streamed turn", session_id=session_id)

    async def _run(self, turn: Coroutine[Any, Any, TurnResult]) -> TurnResult:
        try:
            return await turn
        finally:
            self._signal_started()
            self._events.put_nowait(None)

    async def publish(self, event: TurnEvent) -> None:
        """One event of the turn (:class:`~cosmos_history.domain.events.EventSink`)."""
        if isinstance(event, TurnStarted):
            self.turn, self._replayed = event.turn, event.replayed
            return
        if isinstance(event, ModelAnswering):
            if self._ready is not None:
                await self._ready()
            self._answering = True
            self._signal_started()
            return
        self._events.put_nowait(event)
        # Let the reader send it now: while the model's stream has more data buffered, the turn would
        # otherwise run on without yielding, and the event would wait for the turn's next real wait.
        await asyncio.sleep(0)

    def _signal_started(self) -> None:
        if not self._first_update.done():
            self._first_update.set_result(None)

    async def started(self) -> None:
        """Wait for the model's first update; raise the turn's error if it ended before any."""
        await asyncio.shield(self._first_update)
        assert self._task is not None
        if not self._answering and self._task.done():
            self._task.result()

    def replayed(self) -> bool:
        """Whether the turn is an idempotent replay: known once :meth:`started` returned (the turn says so
        as it starts answering), however far its stored reply has been delivered."""
        return self._replayed

    async def events(self) -> AsyncIterator[TurnEvent]:
        """The turn's events as they arrive; the :class:`TextDelta` texts add up to the reply exactly once.
        They are the events streams show (:func:`~cosmos_history.domain.events.shown`): the n-th is event n
        of the turn's stored events too."""
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

    def feed(self, contents: Iterable[Any]) -> list[TurnEvent]:
        events: list[TurnEvent] = []
        for content in contents:
            if content.type == "function_call" and content.call_id:
                events += self._call(content)
            elif content.type == "function_result" and content.call_id:
                events += self._announce(content.call_id)
                events.append(ToolResult(content.call_id, json_result(content), outcome_of(content)))
            elif content.type == "function_approval_request" and content.function_call is not None:
                # A delegation's request stands for its child's approvals: those are what the caller answers.
                events += [ApprovalRequired(a.id, a.name, a.arguments) for a in expanded_approvals(content)]
        return events

    def _call(self, content: Any) -> list[TurnEvent]:
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

    def _announce(self, call_id: str) -> list[TurnEvent]:
        if call_id in self._announced:
            return []
        self._announced.add(call_id)
        name, arguments = self._calls.get(call_id, ("", "{}"))
        return [ToolCalled(call_id, name, json_arguments(arguments or "{}"))]
