"""Making a response from a turn. The finished response object is made just before the turn commits and
is stored in that same commit (:class:`Completion.keep`), so a turn that is in the session has its
response and one that is not has none. A streamed response hears the turn's events in the turn's own
task (:class:`ResponseRun` is a subscriber of the turn): the stored object is the streamed one, and the
work goes on, and is saved, if the client left mid-stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from cosmos_history.domain.errors import ProblemError
from cosmos_history.domain.events import TextDelta, ToolCalled, ToolResult, TurnCompleted, TurnEvent, TurnFailed
from cosmos_history.domain.results import TurnResult
from cosmos_history.http.openai import objects
from cosmos_history.http.openai.output import Event, OutputBuilder

logger = logging.getLogger(__name__)

Stored = Callable[[TurnResult], Awaitable[dict[str, Any] | None]]
"""The stored response of a replayed turn (``None`` when it is no longer kept)."""


class Completion:
    """The final response object of one turn, made once from what ``builder`` saw of the turn.

    ``named`` gives a stored turn's response its id; ``inputs`` are the input items stored beside it;
    ``stored`` reads back the response a replayed turn stored the first time.
    """

    def __init__(
        self,
        builder: OutputBuilder,
        response: dict[str, Any],
        *,
        named: Callable[[TurnResult], str] | None,
        inputs: list[dict[str, Any]],
        stored: Stored,
    ) -> None:
        self.builder, self._response, self._named, self._inputs, self._stored = builder, response, named, inputs, stored
        self._final: dict[str, Any] | None = None
        self._closing: list[Event] = []

    def close(self, result: TurnResult) -> list[Event]:
        """The end of the output (once); returns the streaming events it makes."""
        if self._final is None:
            self._closing = self.builder.close(result)
            done = objects.complete(self._response, self.builder.output, dict(result.usage or {}) or None)
            self._final = {**done, "id": self._named(result)} if self._named is not None else done
            return self._closing
        return []

    async def keep(self, result: TurnResult) -> dict[str, Any]:
        """The item stored with the turn (a :data:`~cosmos_history.domain.results.ResponseKeeper`)."""
        self.close(result)
        assert self._final is not None
        return {"response": self._final, "input": self._inputs}

    async def final(self, result: TurnResult) -> dict[str, Any]:
        """What the client gets: the object stored with the turn (the first one, for a replay)."""
        self.close(result)
        assert self._final is not None
        if result.replayed and self._named is not None:
            stored = await self._stored(result)
            if stored is not None:
                response: dict[str, Any] = stored["response"]
                return response
        return self._final


def from_result(builder: OutputBuilder, result: TurnResult) -> None:
    """A turn that was not streamed, fed to ``builder`` from its result: its tools' calls, then its text."""
    for call in result.tool_calls:
        builder.feed(ToolCalled(call.id, call.name, call.arguments))
        builder.feed(ToolResult(call.id, call.result, call.status))
    if result.reply:
        builder.feed(TextDelta(result.reply))


class PlainKeeper:
    """``keep`` of a plain (not streamed) turn: the output is made from the result, then kept."""

    def __init__(self, completion: Completion) -> None:
        self.completion = completion
        self._fed = False

    async def keep(self, result: TurnResult) -> dict[str, Any]:
        self._feed(result)
        return await self.completion.keep(result)

    async def final(self, result: TurnResult) -> dict[str, Any]:
        self._feed(result)
        return await self.completion.final(result)

    def _feed(self, result: TurnResult) -> None:
        if not self._fed:
            self._fed = True
            from_result(self.completion.builder, result)


class ResponseRun:
    """A streamed response: a subscriber of the turn's events (in the turn's task); read :meth:`events`."""

    def __init__(self, completion: Completion, response: dict[str, Any]) -> None:
        self._completion, self._response = completion, response
        self._events: asyncio.Queue[Event | TurnResult | None] = asyncio.Queue()
        """Streaming events; then the completed turn (its final object is read by the reader, not in the turn's
        task: a replay's is read back from the store) or ``None`` after a failure."""
        self._ended = False

    async def publish(self, event: TurnEvent) -> None:
        """One event of the turn, as streaming events (an ``EventSink``); never raises into the turn."""
        if self._ended:
            return
        try:
            if isinstance(event, TurnFailed):
                self._fail(event.error)
            elif isinstance(event, TurnCompleted):
                self._put(self._completion.close(event.result))
                self._ended = True
                self._events.put_nowait(event.result)
            else:
                self._put(self._completion.builder.feed(event))
        except Exception as error:  # the turn itself is not this encoder's to fail
            self._fail(error)

    async def keep(self, result: TurnResult) -> dict[str, Any]:
        """The response stored with the turn: the output streamed so far, closed."""
        self._put(self._completion.close(result))
        return await self._completion.keep(result)

    def _fail(self, error: BaseException) -> None:
        self._put([self._failed(error)])
        self._end()

    def _failed(self, error: BaseException) -> Event:
        if not isinstance(error, ProblemError):
            logger.error("Unhandled %s while making a response", type(error).__name__)
            logger.debug("Response failure details", exc_info=error)
            error = ProblemError("The server failed to handle this request.")
        return {"type": "response.failed", "response": objects.failed(self._response, self.output, error)}

    @property
    def output(self) -> list[dict[str, Any]]:
        return self._completion.builder.output

    def _put(self, events: list[Event]) -> None:
        for event in events:
            self._events.put_nowait(event)

    def _end(self) -> None:
        self._ended = True
        self._events.put_nowait(None)

    async def events(self) -> AsyncIterator[Event]:
        """Every streaming event, numbered: ``response.created`` and ``response.in_progress`` first."""
        sequence = 0
        for kind in ("response.created", "response.in_progress"):
            yield {"type": kind, "sequence_number": sequence, "response": self._response}
            sequence += 1
        while (event := await self._events.get()) is not None:
            if isinstance(event, TurnResult):
                try:
                    event = {"type": "response.completed", "response": await self._completion.final(event)}
                except Exception as error:
                    event = self._failed(error)
                yield {**event, "sequence_number": sequence}
                return
            yield {**event, "sequence_number": sequence}
            sequence += 1
