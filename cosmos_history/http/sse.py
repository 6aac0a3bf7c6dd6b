"""Server-Sent Events for a streamed turn: ``delta`` events (and ``tool_call``, ``tool_result`` and
``approval_required`` as tools work), then one ``done`` or ``error`` event, each encoded from the turn's
typed events (:mod:`cosmos_history.domain.events`).

The response starts only after :meth:`Turns.stream` returned, so every error found before
the model's first update is still a plain problem+json answer with its status. Errors after that
can only travel inside the stream: ``event: error`` carries the same problem+json document.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from azurefunctions.extensions.http.fastapi import Request, StreamingResponse

from cosmos_history.domain.errors import ProblemError
from cosmos_history.domain.events import (
    ApprovalRequired,
    TextDelta,
    ToolCalled,
    ToolResult,
    TurnCompleted,
    TurnEvent,
    TurnFailed,
)
from cosmos_history.domain.streaming import TurnStream
from cosmos_history.http.responses import json_bytes, problem_body, turn_json

logger = logging.getLogger(__name__)

EVENT_STREAM = "text/event-stream"


def wants_event_stream(request: Request, stream_requested: bool) -> bool:
    """Whether the client asked for SSE: ``"stream": true`` in the body or ``Accept: text/event-stream``."""
    if stream_requested:
        return True
    accepted = (part.split(";")[0].strip().lower() for part in request.headers.get("accept", "").split(","))
    return EVENT_STREAM in accepted


def event_stream_response(turn: TurnStream) -> StreamingResponse:
    """Stream ``turn`` as SSE. Disconnecting cancels only this response, never the turn itself."""
    return StreamingResponse(
        turn_events(turn),
        media_type=EVENT_STREAM,
        # Proxies must pass each event on as it comes instead of buffering the answer.
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def turn_events(turn: TurnStream) -> AsyncIterator[str]:
    """The turn's typed events as SSE, in the order the turn published them; the last is ``done`` or ``error``."""
    async for event in turn.events():
        if (encoded := encode(event)) is not None:
            yield encoded


def encode(event: TurnEvent) -> str | None:
    """One typed event as the native API's SSE event; ``None`` for events this stream does not show."""
    match event:
        case TextDelta(text=text):
            return sse_event("delta", {"text": text})
        case ToolCalled(id=call_id, name=name, arguments=arguments):
            return sse_event("tool_call", {"id": call_id, "name": name, "arguments": arguments})
        case ToolResult(id=call_id, result=result, status=status):
            return sse_event("tool_result", {"id": call_id, "result": result, "status": status})
        case ApprovalRequired(id=approval_id, name=name, arguments=arguments):
            return sse_event("approval_required", {"id": approval_id, "name": name, "arguments": arguments})
        case TurnCompleted(result=result):
            return sse_event("done", turn_json(result))
        case TurnFailed(error=ProblemError() as error):
            return sse_event("error", problem_body(error))
        case TurnFailed(error=error):
            # Types only at the default level: an exception's text may quote the user's message.
            logger.error("Unhandled %s in a streamed turn", type(error).__name__)
            logger.debug("Streamed turn failure details", exc_info=error)
            return sse_event("error", problem_body(ProblemError("The server failed to handle this request.")))
    return None


def sse_event(event: str, data: Any) -> str:
    """One event; ``data`` is JSON on a single line, so it never needs splitting."""
    return f"event: {event}\ndata: {json_bytes(data).decode('utf-8')}\n\n"
