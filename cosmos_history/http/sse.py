"""Server-Sent Events for a streamed turn: ``delta`` events (and ``tool_call``, ``tool_result`` and
``approval_required`` as tools work), then one ``done`` or ``error`` event, each encoded from the turn's
typed events (:mod:`cosmos_history.domain.events`) as its durable log stores them
(:func:`~cosmos_history.domain.event_log.stored_event`), so a replay sends the same events with the same ids.

The response starts only after :meth:`Turns.stream` returned, so every error found before
the model's first update is still a plain problem+json answer with its status. Errors after that
can only travel inside the stream: ``event: error`` carries the same problem+json document.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from azurefunctions.extensions.http.fastapi import Request, StreamingResponse

from cosmos_history.domain.errors import ProblemError
from cosmos_history.http.responses import json_bytes, stored_problem

if TYPE_CHECKING:
    # Loaded by the turn service when a turn streams: a plain turn, which only asks wants_event_stream, needs none.
    from cosmos_history.domain.events import TurnEvent
    from cosmos_history.domain.streaming import TurnStream
    from cosmos_history.domain.turn_records import StoredEvent

logger = logging.getLogger(__name__)

EVENT_STREAM = "text/event-stream"


def wants_event_stream(request: Request, stream_requested: bool) -> bool:
    """Whether the client asked for SSE: ``"stream": true`` in the body or ``Accept: text/event-stream``."""
    if stream_requested:
        return True
    accepted = (part.split(";")[0].strip().lower() for part in request.headers.get("accept", "").split(","))
    return EVENT_STREAM in accepted


def event_stream_response(turn: TurnStream, *, location: str | None = None) -> StreamingResponse:
    """Stream ``turn`` as SSE. Disconnecting cancels only this response, never the turn itself.

    ``location`` (the turn's address) goes out as ``Content-Location`` when the turn has a number, so a
    client that loses the stream knows where to resume it (``.../events`` with its ``Last-Event-ID``)."""
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    if location is not None and turn.turn is not None:
        headers["Content-Location"] = f"{location}/{turn.turn}"
    # Proxies must pass each event on as it comes instead of buffering the answer.
    return StreamingResponse(turn_events(turn), media_type=EVENT_STREAM, headers=headers)


async def turn_events(turn: TurnStream) -> AsyncIterator[str]:
    """The turn's typed events as SSE, in the order the turn published them; the last is ``done`` or ``error``.
    Each carries the id ``<turn>:<n>``: event n of the turn, as its stored events number it."""
    seq = 0
    async for event in turn.events():
        seq += 1
        if (encoded := encode(event, seq, turn.turn)) is not None:
            yield encoded


def stored_events_stream(events: AsyncIterator[StoredEvent], prefix: str = "") -> StreamingResponse:
    """Stored (and then followed) events as SSE, each with the id ``<prefix><seq>`` (a turn's ``<turn>:``, so
    a turn's ids are the ones its live stream gave); an event numbered 0 (made up by the follower, not stored)
    goes out without an id, so a client resuming from its last id misses nothing."""

    async def encoded() -> AsyncIterator[str]:
        async for event in events:
            yield encode_stored(event, f"{prefix}{event.seq}" if event.seq else None)

    return StreamingResponse(
        encoded(), media_type=EVENT_STREAM, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


def encode(event: TurnEvent, seq: int = 0, turn: int | None = None) -> str | None:
    """One typed event as the native API's SSE event (:func:`stored_event` names it); ``None`` for events this
    stream does not show. ``seq`` and ``turn`` make its ``id``."""
    from cosmos_history.domain.event_log import stored_event
    from cosmos_history.domain.events import TurnFailed

    if isinstance(event, TurnFailed) and not isinstance(event.error, ProblemError):
        # Types only at the default level: an exception's text may quote the user's message.
        logger.error("Unhandled %s in a streamed turn", type(event.error).__name__)
        logger.debug("Streamed turn failure details", exc_info=event.error)
    stored = stored_event(seq, event)
    if stored is None:
        return None
    return encode_stored(stored, f"{turn}:{seq}" if turn is not None and seq else None)


def encode_stored(event: StoredEvent, event_id: str | None) -> str:
    """A stored event as SSE: an error's stored fields become its problem document."""
    data = stored_problem(event.data) if event.name == "error" else event.data
    return sse_event(event.name, data, event_id=event_id)


def sse_event(event: str, data: Any, *, event_id: str | None = None) -> str:
    """One event; ``data`` is JSON on a single line, so it never needs splitting."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json_bytes(data).decode('utf-8')}\n\n"
