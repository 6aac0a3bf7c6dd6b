"""One response being made: the turn's events become output items and streaming events, and the
finished response is stored, in a task of its own, so a client that leaves mid-stream loses nothing
(the turn is saved, as in the native API, and its response can still be retrieved).
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


class ResponseRun:
    """Read :meth:`events` (streaming) or await :meth:`result` (plain); the work goes on either way."""

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
            done = objects.complete(self._response, self._builder.output, dict(result.usage or {}) or None)
            final = await self._finish(result, done)
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

    async def result(self) -> dict[str, Any]:
        """The finished response; raises the turn's :class:`ProblemError`. Cancelling the caller leaves it running."""
        return await asyncio.shield(self._task)
