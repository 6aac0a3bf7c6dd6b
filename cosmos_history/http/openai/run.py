"""Making a response from a turn. A streamed one runs in a task of its own: the turn's events become
output items and streaming events, and the finished response is stored even if the client left
mid-stream (the turn is saved, as in the native API, and its response can still be retrieved).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from cosmos_history.domain.errors import ProblemError
from cosmos_history.domain.events import TextDelta, ToolCalled, ToolResult, TurnCompleted, TurnFailed
from cosmos_history.domain.results import TurnResult
from cosmos_history.domain.streaming import TurnStream
from cosmos_history.domain.supervisor import TurnSupervisor
from cosmos_history.http.openai import objects
from cosmos_history.http.openai.output import Event, OutputBuilder

logger = logging.getLogger(__name__)

Finish = Callable[[TurnResult, dict[str, Any]], Awaitable[dict[str, Any]]]
"""Turns the completed response object into the final one (stored, or the stored one on a replay)."""


async def finished(
    builder: OutputBuilder, response: dict[str, Any], result: TurnResult, finish: Finish
) -> dict[str, Any]:
    """The completed response object of ``result``, once ``builder`` has seen all of the turn."""
    return await finish(result, objects.complete(response, builder.output, dict(result.usage or {}) or None))


def plain_response(
    builder: OutputBuilder, response: dict[str, Any], result: TurnResult, finish: Finish
) -> Awaitable[dict[str, Any]]:
    """A turn that was not streamed, built from its result: its tools' calls, then its text."""
    for call in result.tool_calls:
        builder.feed(ToolCalled(call.id, call.name, call.arguments))
        builder.feed(ToolResult(call.id, call.result, call.status))
    if result.reply:
        builder.feed(TextDelta(result.reply))
    builder.close(result)
    return finished(builder, response, result, finish)


class ResponseRun:
    """A streamed response: read :meth:`events`; the work goes on if the reader goes away."""

    def __init__(
        self,
        turn: TurnStream,
        builder: OutputBuilder,
        response: dict[str, Any],
        finish: Finish,
        supervisor: TurnSupervisor,
    ) -> None:
        self._turn, self._builder, self._response, self._finish = turn, builder, response, finish
        self._events: asyncio.Queue[Event | None] = asyncio.Queue()
        self._task = supervisor.start(self._run(), name="response")

    async def _run(self) -> dict[str, Any]:
        try:
            result = None
            async for event in self._turn.events():
                if isinstance(event, TurnFailed) and isinstance(event.error, ProblemError):
                    self._publish([{"type": "response.failed", "response": self._failed(event.error)}])
                    raise event.error
                if isinstance(event, TurnFailed):
                    raise event.error
                if isinstance(event, TurnCompleted):
                    result = event.result
                self._publish(self._builder.feed(event))
            if result is None:  # the events end with how the turn ended; this is the turn's own error
                result = await self._turn.result()
            self._publish(self._builder.close(result))
            final = await finished(self._builder, self._response, result, self._finish)
            self._publish([{"type": "response.completed", "response": final}])
            return final
        except ProblemError:
            raise
        except Exception as error:
            logger.error("Unhandled %s while making a response", type(error).__name__)
            logger.debug("Response failure details", exc_info=error)
            problem = ProblemError("The server failed to handle this request.")
            self._publish([{"type": "response.failed", "response": self._failed(problem)}])
            raise problem from None
        finally:
            self._events.put_nowait(None)

    def _failed(self, error: ProblemError) -> dict[str, Any]:
        return objects.failed(self._response, self._builder.output, error)

    def _publish(self, events: list[Event]) -> None:
        for event in events:
            self._events.put_nowait(event)

    async def events(self) -> AsyncIterator[Event]:
        """Every streaming event, numbered: ``response.created`` and ``response.in_progress`` first."""
        sequence = 0
        for kind in ("response.created", "response.in_progress"):
            yield {"type": kind, "sequence_number": sequence, "response": self._response}
            sequence += 1
        while (event := await self._events.get()) is not None:
            yield {**event, "sequence_number": sequence}
            sequence += 1
