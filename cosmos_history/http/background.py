"""Turns that answer before they run (``"background": true``), and what a message sent while another turn of
the session runs does (``"multitask"``: ``reject``, ``enqueue`` or ``interrupt``).

A queued turn answers ``202`` with the turn in the turn answer's shape plus ``status`` (``queued``) and a
``Location`` to poll (``GET /api/sessions/{id}/turns/{turn}``) or to stream (``.../events``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from azurefunctions.extensions.http.fastapi import Response

from cosmos_history import telemetry
from cosmos_history.domain.errors import (
    BackgroundNotConfiguredError,
    TurnFinishedError,
    TurnInProgressError,
    TurnNotFoundError,
)
from cosmos_history.domain.results import TurnRequest
from cosmos_history.http.calls import Call
from cosmos_history.http.responses import json_response
from cosmos_history.settings import Multitask

if TYPE_CHECKING:
    from cosmos_history.domain.turn_records import TurnRecord


@dataclass(frozen=True)
class Multitasking:
    """How a turn request wants to run: streamed, in the background, and what it does to a running turn."""

    stream: bool = False
    background: bool = False
    multitask: Multitask = "reject"


def turn_location(session_id: str, turn: int) -> str:
    return f"/api/sessions/{session_id}/turns/{turn}"


async def queue_turn(
    call: Call, request: TurnRequest, multitask: Multitask, *, behind_running: bool = False
) -> Response:
    """Queue ``request`` as a background turn of the caller's session: 202 with the turn.

    Raises:
        BackgroundNotConfiguredError: the app has no queue. TurnInProgressError: the session's next turn is
            queued or running and ``multitask`` is ``reject``.
    """
    if call.background is None:
        raise BackgroundNotConfiguredError(
            "This app has no queue for background turns: set AzureWebJobsStorage (the Functions host's storage)."
        )
    submit = call.background.submit
    trace = telemetry.carrier()
    enqueue = multitask == "enqueue"
    try:
        record = await submit(request, caller=call.user_id, enqueue=enqueue, behind_running=behind_running, trace=trace)
    except TurnInProgressError:
        if multitask != "interrupt":
            raise
        await interrupt(call, request.session_id)
        record = await submit(request, caller=call.user_id, trace=trace)
    return queued_response(record)


async def interrupt(call: Call, session_id: str) -> None:
    """Cancel the session's running (or next queued) turn, so the interrupting message runs now.

    Raises:
        TurnInProgressError: the running turn keeps no record (a plain turn): it cannot be stopped.
    """
    turn = await call.turns.latest_turn(session_id, caller=call.user_id) + 1
    try:
        await call.turns.cancel(session_id, turn, caller=call.user_id)
    except TurnFinishedError:
        return  # it ended meanwhile: the session is free
    except TurnNotFoundError:
        raise TurnInProgressError(
            "The running turn is a plain (not streamed, not background) turn of another request: it cannot be "
            "interrupted. Send the message again when it ended.",
            retry_after=2,
        ) from None


def queued_response(record: TurnRecord) -> Response:
    return json_response(
        record.answer_json(time.time()),
        status=202,
        headers={"Location": turn_location(record.session_id, record.turn)},
    )
