"""The OpenAI Responses-compatible routes (``/api/v1/...``) over the app's own sessions and turns.

A response is one turn of a session: ``previous_response_id`` continues the session that made it,
``conversation`` names a session directly, and neither starts a new one. The turn runs through the
same domain code as the native API (lease, etag, idempotency, identity), so everything the native
API guarantees holds here too. Errors are OpenAI's error body (:func:`objects.error_response`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
import uuid
from typing import Any

from azurefunctions.extensions.http.fastapi import Response, StreamingResponse

from cosmos_history.domain.errors import (
    AgentNotFoundError,
    BadRequestError,
    IdempotentResultGoneError,
    NotLatestResponseError,
    ResponseNotFoundError,
    SessionConflictError,
    SessionNotFoundError,
)
from cosmos_history.domain.ports import ResponseLog
from cosmos_history.domain.results import TurnRequest, TurnResult
from cosmos_history.http.bodies import parse_limit
from cosmos_history.http.calls import Call
from cosmos_history.http.openai import background, objects
from cosmos_history.http.openai.ids import not_found_message, parse_response_id, response_id, unstored_response_id
from cosmos_history.http.openai.output import OutputBuilder
from cosmos_history.http.openai.requests import CreateRequest, in_effect, parse_create
from cosmos_history.http.openai.run import Completion, PlainKeeper, ResponseRun
from cosmos_history.http.responses import json_response
from cosmos_history.http.sse import EVENT_STREAM, sse_event

logger = logging.getLogger(__name__)


class ModelNotFoundError(AgentNotFoundError):
    slug = "model-not-found"


async def create_response_route(call: Call) -> Response:
    """``POST /v1/responses``: run one turn and answer with the response object (or its events)."""
    request = parse_create(await call.json_body(), call.settings)
    if request.model not in call.agents:
        raise ModelNotFoundError(
            f"The model {request.model!r} does not exist: models are this app's agents (GET /v1/models).",
            param="model",
        )
    call.turns.check_client_tools(request.model, request.client_tools)
    request = dataclasses.replace(request, echo=in_effect(request.echo, call.agents[request.model].sampling()))
    key = call.idempotency_key()
    if key is not None and not request.store:
        raise BadRequestError(
            "An Idempotency-Key replays the stored response of its first request; with 'store': false nothing "
            "is stored, so send one or the other.",
            param="store",
        )
    session_id, expected = await _continued_turn(call, request, key)
    if request.background:
        return await background.create_background(call, request, session_id)
    response = objects.response_object(
        response_id(session_id, expected + 1) if request.store else unstored_response_id(),
        request.model,
        request.echo,
        created_at=time.time(),
        previous_response_id=request.previous.id if request.previous else None,
        conversation=request.conversation,
        store=request.store,
    )
    turn_request = _turn_request(call, request, session_id, expected, key)
    completion = _completion(call, request, session_id, response)
    stores = request.store and call.responses is not None
    try:
        if not request.stream:
            plain = PlainKeeper(completion)
            result = await call.turns.run(turn_request, caller=call.user_id, keep=plain.keep if stores else None)
            return json_response(await plain.final(result), headers=_replayed(result.replayed))
        run = ResponseRun(completion, response)
        stream = await call.turns.stream(
            turn_request, caller=call.user_id, keep=run.keep if stores else None, subscriber=run
        )
    except NotLatestResponseError as error:
        if request.previous is not None:
            raise
        if turn_request.expected_turn == 0:  # the conversation this key starts has turns, but the key no answer
            raise IdempotentResultGoneError(
                "This Idempotency-Key already started a conversation; its answer is no longer kept."
            ) from error
        raise SessionConflictError("Another turn of this conversation ran meanwhile; retry.", retry_after=1) from error
    except SessionNotFoundError as error:
        if request.previous is None:
            raise
        raise ResponseNotFoundError(not_found_message(request.previous.id), param="previous_response_id") from error
    return StreamingResponse(
        (sse_event(event["type"], event) async for event in run.events()),
        media_type=EVENT_STREAM,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **_replayed(stream.replayed())},
    )


def _replayed(replayed: bool) -> dict[str, str]:
    """Replays say so, as the native API's do."""
    return {"Idempotent-Replayed": "true"} if replayed else {}


def _turn_request(call: Call, request: CreateRequest, session_id: str, expected: int, key: str | None) -> TurnRequest:
    """The domain's turn for this request; it must still be at ``expected`` unless it is a new session
    (one started under a key must still be new: its retries find it, and the key's answer, by the key)."""
    starts = request.previous is None and request.conversation is None
    return TurnRequest(
        session_id,
        request.message,
        agent=request.model,
        idempotency_key=key,
        approvals=request.approvals,
        inputs=request.inputs,
        options=request.options,
        client_tools=request.client_tools,
        expected_turn=expected if expected or request.previous or (starts and key) else None,
        store=request.store,
        parameters=request.echo,
    )


async def _continued_turn(call: Call, request: CreateRequest, key: str | None) -> tuple[str, int]:
    """The session the response continues and the turn it continues from (0 for a new session).

    A plain ``conversation`` request continues whatever turn is latest (its response id is set from the
    turn it made); only a streamed one reads the session first, since ``response.created`` names the id.
    A new conversation started under an ``Idempotency-Key`` gets an id derived from the caller and the
    key, so that a retry of it reaches the same session and replays its first answer.
    """
    if request.previous is not None:
        return request.previous.session_id, request.previous.turn
    if request.conversation is not None and request.stream:
        return request.conversation, await call.turns.latest_turn(request.conversation, caller=call.user_id)
    if request.conversation is not None:
        return request.conversation, 0
    if key is not None:
        digest = hashlib.sha256(f"{call.user_id}\n{key}".encode()).hexdigest()
        return f"conv_{digest[:32]}", 0
    return f"conv_{uuid.uuid4().hex}", 0


def _completion(call: Call, request: CreateRequest, session_id: str, response: dict[str, Any]) -> Completion:
    """The response's final object: stored with its turn (named after it), or, for a replay, the one stored first."""
    log, user_id = call.responses, call.user_id

    async def stored(result: TurnResult) -> dict[str, Any] | None:
        return None if log is None else await log.find(session_id, user_id, result.turn)

    return Completion(
        OutputBuilder(request.model, {tool.name for tool in request.client_tools}),
        response,
        named=(lambda result: response_id(session_id, result.turn)) if request.store and log is not None else None,
        inputs=list(request.input_items),
        stored=stored,
    )


async def get_response_route(call: Call) -> Response:
    """The response; a background one as it stands (``?stream=true``: its events, ``starting_after`` one)."""
    record = await background.background_record(call, call.route("id"))
    if call.query("stream") == "true":
        if record is None:
            raise BadRequestError("Only background responses can be streamed again.", param="stream")
        return await background.retrieve_stream(call, record)
    if record is not None:
        return json_response(await background.current_response(call, record))
    stored = await _stored(call)
    return json_response(stored["response"])


async def cancel_response_route(call: Call) -> Response:
    """``POST /v1/responses/{id}/cancel``: cancel a background response (queued or running)."""
    return json_response(await background.cancel_response(call, call.route("id")))


async def delete_response_route(call: Call) -> Response:
    """Deletes the stored response object; the conversation (the session) stays, as its other turns do."""
    ref = parse_response_id(call.route("id"))
    if not await _log(call).delete(ref.session_id, call.user_id, ref.turn):
        raise _not_found(call.route("id"))
    return json_response({"id": call.route("id"), "object": "response", "deleted": True})


async def list_input_items_route(call: Call) -> Response:
    stored = await _stored(call)
    items: list[dict[str, Any]] = list(stored.get("input", []))
    order = call.query("order") or "desc"
    if order not in ("asc", "desc"):
        raise BadRequestError("'order' must be asc or desc.", param="order")
    if order == "desc":
        items.reverse()
    after = call.query("after")
    if after:
        ids = [item["id"] for item in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    limit = parse_limit(call.query("limit"), default=20, maximum=100)
    return json_response(objects.items_page(items[:limit], has_more=len(items) > limit))


async def list_models_route(call: Call) -> Response:
    return json_response(objects.models_object(call.agents))


async def get_model_route(call: Call) -> Response:
    name = call.route("id")
    if name not in call.agents:
        raise ModelNotFoundError(f"The model {name[:100]!r} does not exist.", param="model")
    return json_response(objects.model_object(name))


async def _stored(call: Call) -> dict[str, Any]:
    ref = parse_response_id(call.route("id"))
    stored = await _log(call).find(ref.session_id, call.user_id, ref.turn)
    if stored is None:
        raise _not_found(call.route("id"))
    return stored


def _log(call: Call) -> ResponseLog:
    if call.responses is None:
        raise _not_found(call.route("id"))
    return call.responses


def _not_found(value: str) -> ResponseNotFoundError:
    return ResponseNotFoundError(not_found_message(value))
