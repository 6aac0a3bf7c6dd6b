"""The routes of addressable turns: read a turn, stream its events (replayed, then followed), cancel it.

They answer from the stored turn records (:mod:`cosmos_history.domain.turn_reads`), so any instance
serves them, including one that is not running the turn.
"""

from __future__ import annotations

import re

from azurefunctions.extensions.http.fastapi import Response

from cosmos_history.domain.errors import BadRequestError
from cosmos_history.http.calls import Call
from cosmos_history.http.responses import json_response
from cosmos_history.http.sse import stored_events_stream

_NUMBER = re.compile(r"^(0|[1-9][0-9]{0,8})$")
_EVENT_ID = re.compile(r"^(?:([1-9][0-9]{0,8}):)?(0|[1-9][0-9]{0,8})$")


def turn_location(session_id: str, turn: int) -> str:
    return f"/api/sessions/{session_id}/turns/{turn}"


def parse_turn(value: str) -> int:
    """The ``{turn}`` of a route: a turn number (1, 2, ...)."""
    if not _NUMBER.match(value) or int(value) == 0:
        raise BadRequestError("The turn must be a turn number: 1, 2, ...")
    return int(value)


def parse_after(call: Call, turn: int | None) -> int:
    """The last event the client has (``Last-Event-ID``, as ``<turn>:<n>`` or ``<n>``, or ``?after=<n>``); 0: none.
    ``turn`` ``None``: a stream whose ids are plain numbers (a workflow run's)."""
    after = call.query("after")
    if after is not None:
        if not _NUMBER.match(after):
            raise BadRequestError("after must be the number of an event the client has (0 for none).")
        return int(after)
    last = call.request.headers.get("last-event-id")
    if last is None or not last.strip():
        return 0
    match = _EVENT_ID.match(last.strip())
    if match is None or (turn is None and match.group(1) is not None):
        form = "<n>" if turn is None else "<turn>:<n>"
        raise BadRequestError(f"Last-Event-ID must be an id this stream sent ({form}), or ?after=<n>.")
    if match.group(1) is not None and int(match.group(1)) != turn:
        raise BadRequestError(f"Last-Event-ID {last.strip()!r} is an event of another turn than {turn}.")
    return int(match.group(2))


async def get_turn_route(call: Call) -> Response:
    session_id, turn = call.session_id(), parse_turn(call.route("turn"))
    return json_response(await call.turns.read_turn(session_id, turn, caller=call.user_id))


async def turn_events_route(call: Call) -> Response:
    """SSE: the turn's events after the client's last one, then the live turn's to its end (from storage)."""
    session_id, turn = call.session_id(), parse_turn(call.route("turn"))
    after = parse_after(call, turn)
    events = await call.turns.follow(session_id, turn, caller=call.user_id, after=after)
    return stored_events_stream(events, f"{turn}:")


async def cancel_turn_route(call: Call) -> Response:
    """Stop a queued or running turn: 200 with the turn once it stopped, 202 while it is still stopping."""
    session_id, turn = call.session_id(), parse_turn(call.route("turn"))
    body = await call.turns.cancel(session_id, turn, caller=call.user_id)
    if body["status"] in ("queued", "in_progress"):
        return json_response(body, status=202, headers={"Location": turn_location(session_id, turn)})
    return json_response(body)
