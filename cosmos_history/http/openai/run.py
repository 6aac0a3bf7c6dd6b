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
from cosmos_history.domain.results import TurnResult
from cosmos_history.domain.streaming import TurnStream, keep_running
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
        builder.feed("tool_call", {"id": call.id, "name": call.name, "arguments": call.arguments})
        builder.feed("tool_result", {"id": call.id, "result": call.result, "status": call.status})
    if result.reply:
        builder.feed("delta", {"text": result.reply})
    builder.close(result)
    return finished(builder, response, result, finish)


class ResponseRun:
    """A streamed response: read :meth:`events`; the work goes on if the reader goes away."""

    def __init__(self, turn: TurnStream, builder: OutputBuilder, response: dict[str, Any], finish: Finish) -> None:
        self._turn, self._builder, self._response, self._finish = turn, builder, response, finish
        self._events: asyncio.Queue[Event | None] = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name="response")
        keep_running(self._task)

    async def _run(self) -> dict[str, Any]:
        try:
            async for kind, data in self._turn.events():
                self._publish(self._builder.feed(kind, data))
            try:
                result = await self._turn.result()
            except ProblemError as error:
                self._publish([{"type": "response.failed", "response": self._failed(error)}])
                raise
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
