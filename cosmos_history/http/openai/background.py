"""Background responses (``background: true``), as OpenAI documents them: ``POST /v1/responses`` answers at once
with the response ``queued``; the turn runs in a queue worker as a background turn of the conversation (see
:mod:`cosmos_history.domain.background`); ``GET /v1/responses/{id}`` polls it, ``?stream=true&starting_after=N``
streams its events from the one after ``sequence_number`` N (replayed from the turn's stored events, then
followed live, on any instance), and ``POST /v1/responses/{id}/cancel`` cancels it.

The response object made at creation is kept in the turn's record; once the turn ended, the finished response
is built from the turn's stored events by the same encoder as a live stream (so a replay names every item as
the stream did) and stored like any response.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from azurefunctions.extensions.http.fastapi import Response, StreamingResponse

from cosmos_history import telemetry
from cosmos_history.domain import result_codec
from cosmos_history.domain.errors import (
    BackgroundNotConfiguredError,
    BadRequestError,
    EventsGoneError,
    NotLatestResponseError,
    ProblemError,
    ResponseNotFoundError,
)
from cosmos_history.domain.events import ApprovalRequired, TextDelta, ToolCalled, ToolResult, TurnEvent
from cosmos_history.domain.results import TurnRequest
from cosmos_history.domain.turn_records import StoredEvent, TurnRecord
from cosmos_history.http.calls import Call
from cosmos_history.http.openai import objects
from cosmos_history.http.openai.ids import not_found_message, parse_response_id, response_id
from cosmos_history.http.openai.output import Event, OutputBuilder
from cosmos_history.http.openai.requests import CreateRequest
from cosmos_history.http.responses import json_response
from cosmos_history.http.sse import EVENT_STREAM, sse_event


async def create_background(call: Call, request: CreateRequest, session_id: str) -> Response:
    """Queue the response's turn; answer the response ``queued`` (or stream its events with ``stream``)."""
    if call.background is None:
        raise BackgroundNotConfiguredError(
            "This app has no queue for background responses: set AzureWebJobsStorage (the Functions host's storage)."
        )
    if call.idempotency_key() is not None:
        raise BadRequestError("An Idempotency-Key cannot be used with 'background': poll the response instead.")
    if request.previous is not None:
        latest = await call.turns.latest_turn(session_id, caller=call.user_id)
        if latest != request.previous.turn:
            raise NotLatestResponseError(
                "The conversation has moved on; continue from its latest response.", param="previous_response_id"
            )
    created = time.time()

    def kept(turn: int) -> dict[str, Any]:
        response = objects.response_object(
            response_id(session_id, turn),
            request.model,
            request.echo,
            status="queued",
            created_at=created,
            previous_response_id=request.previous.id if request.previous else None,
            conversation=request.conversation,
        )
        return {"openai": {"response": {**response, "background": True}, "input": list(request.input_items)}}

    turn = TurnRequest(
        session_id,
        request.message,
        agent=request.model,
        approvals=request.approvals,
        options=request.options or None,
        parameters=request.echo or None,
    )
    record = await call.background.submit(turn, caller=call.user_id, trace=telemetry.carrier(), extra=kept)
    if request.stream:
        return _stream(call, record, after=-1)
    return json_response(await current_response(call, record))


async def background_record(call: Call, value: str) -> TurnRecord | None:
    """The background turn the response id names, ``None`` when it names no background response."""
    ref = parse_response_id(value)
    log = call.turns.log
    record = await log.find(ref.session_id, call.user_id, ref.turn) if log is not None else None
    if record is None or _kept(record) is None:
        return None
    return record


async def current_response(call: Call, record: TurnRecord) -> dict[str, Any]:
    """The response as it stands: ``queued``, ``in_progress``, or how it ended (stored once it has)."""
    kept = _kept(record)
    assert kept is not None
    response, status = kept["response"], record.answer_json(time.time())["status"]
    if status in ("queued", "in_progress"):
        return {**response, "status": status}
    if status == "cancelled":
        return {**response, "status": "cancelled"}
    if status == "failed":
        return objects.failed(response, [], ProblemError(record.reason or "The response failed."))
    stored = await call.responses.find(record.session_id, call.user_id, record.turn) if call.responses else None
    if stored is not None:
        return dict(stored["response"])
    final = response
    async for event in _events(call, record, response):
        final = event.get("response", final)
    return dict(final)


def _ended(record: TurnRecord, response: dict[str, Any]) -> Event:
    """How the turn ended, from its record alone (its events are past their retention, or it stored none)."""
    status = record.answer_json(time.time())["status"]
    if status in ("completed", "awaiting_approval"):
        result = result_codec.decode(record.result or {}, replayed=False)
        builder = _builder(record, response)
        if result.reply:
            builder.feed(TextDelta(result.reply))
        builder.close(result)
        return {"type": "response.completed", "response": objects.complete(response, builder.output, None)}
    failed = objects.failed(response, [], ProblemError(record.reason or "The response failed."))
    return {
        "type": "response.failed",
        "response": {**failed, **({"status": "cancelled"} if status == "cancelled" else {})},
    }


async def retrieve_stream(call: Call, record: TurnRecord) -> Response:
    after = call.query("starting_after")
    if after is not None and not (after.isascii() and after.isdigit() and len(after) <= 9):
        raise BadRequestError("'starting_after' must be a sequence number.", param="starting_after")
    return _stream(call, record, after=-1 if after is None else int(after))


async def cancel_response(call: Call, value: str) -> dict[str, Any]:
    record = await background_record(call, value)
    if record is None:
        raise ResponseNotFoundError(not_found_message(value) + " Only background responses can be cancelled.")
    await call.turns.cancel(record.session_id, record.turn, caller=call.user_id)
    current = await background_record(call, value)
    return await current_response(call, current or record)


def _stream(call: Call, record: TurnRecord, *, after: int) -> Response:
    kept = _kept(record)
    assert kept is not None

    async def numbered() -> AsyncIterator[str]:
        async for event in _events(call, record, kept["response"]):
            if event["sequence_number"] > after:
                yield sse_event(event["type"], event)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(numbered(), media_type=EVENT_STREAM, headers=headers)


async def _events(call: Call, record: TurnRecord, response: dict[str, Any]) -> AsyncIterator[Event]:
    """Every streaming event of the response, numbered from 0, the same on every read: ``response.created``,
    ``response.in_progress``, then the turn's stored events (followed while it runs) as output events, and
    ``response.completed`` or ``response.failed``."""
    sequence = itertools.count()
    yield {"type": "response.created", "sequence_number": next(sequence), "response": response}
    running = {**response, "status": "in_progress"}
    yield {"type": "response.in_progress", "sequence_number": next(sequence), "response": running}
    builder = _builder(record, response)
    try:
        stored = await call.turns.follow(record.session_id, record.turn, caller=call.user_id, after=0)
    except EventsGoneError:
        current = await call.turns.log.find(record.session_id, record.user_id, record.turn) if call.turns.log else None
        yield {**_ended(current or record, response), "sequence_number": next(sequence)}
        return
    async for event in stored:
        for made in _encode(builder, response, event):
            if made["type"] == "response.completed":  # one finished response, whichever read made it first
                made = {**made, "response": await _kept_final(call, record, made["response"])}
            yield {**made, "sequence_number": next(sequence)}
        if event.terminal:
            return


async def _kept_final(call: Call, record: TurnRecord, final: dict[str, Any]) -> dict[str, Any]:
    """The finished response as stored by the first read that built it (stored now when none did)."""
    log = call.responses
    if log is None:
        return final
    stored = await log.find(record.session_id, call.user_id, record.turn)
    if stored is not None:
        return dict(stored["response"])
    kept = _kept(record) or {}
    with contextlib.suppress(ProblemError):  # answered all the same; the next read builds it again
        await log.record(record.session_id, call.user_id, record.turn, {**kept, "response": final})
    return final


def _encode(builder: OutputBuilder, response: dict[str, Any], event: StoredEvent) -> list[Event]:
    if event.name == "done":
        result = result_codec.decode(event.data, replayed=False)
        made = builder.close(result)
        final = objects.complete(response, builder.output, None)
        return [*made, {"type": "response.completed", "response": final}]
    if event.name == "error":
        cancelled = event.data.get("slug") == "turn-cancelled"
        error = ProblemError(str(event.data.get("detail") or "The response failed."))
        ended = {**objects.failed(response, builder.output, error), **({"status": "cancelled"} if cancelled else {})}
        return [{"type": "response.failed", "response": ended}]
    typed = _typed(event)
    return builder.feed(typed) if typed is not None else []


def _typed(event: StoredEvent) -> TurnEvent | None:
    data = event.data
    if event.name == "delta":
        return TextDelta(data["text"])
    if event.name == "tool_call":
        return ToolCalled(data["id"], data["name"], data["arguments"])
    if event.name == "tool_result":
        return ToolResult(data["id"], data["result"], data["status"])
    if event.name == "approval_required":
        return ApprovalRequired(data["id"], data["name"], data["arguments"])
    return None


def _builder(record: TurnRecord, response: dict[str, Any]) -> OutputBuilder:
    counter = itertools.count(1)
    ids: Callable[[str], str] = lambda kind: f"{kind}_{record.attempt}{next(counter):04d}"  # noqa: E731
    return OutputBuilder(response["model"], set(), ids=ids)


def _kept(record: TurnRecord) -> dict[str, Any] | None:
    extra = (record.request or {}).get("extra") or {}
    kept = extra.get("openai")
    return kept if isinstance(kept, dict) else None
