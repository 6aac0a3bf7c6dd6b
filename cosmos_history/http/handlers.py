"""The HTTP API's handlers: each parses its input, calls the domain and answers JSON (or SSE).

Handlers take a :class:`~cosmos_history.http.calls.Call` (the caller already resolved) and raise
typed errors, which the ``endpoint`` wrapper turns into problem+json. ``function_app.py`` maps
routes to them. Every response is a FastAPI type: the app runs on Functions HTTP streams.
"""

from __future__ import annotations

from typing import Any

from azurefunctions.extensions.http.fastapi import Request, Response

from cosmos_history.domain.conversations import (
    create_session,
    delete_session,
    list_sessions,
    load_session,
    read_entry_page,
)
from cosmos_history.domain.errors import TurnInProgressError
from cosmos_history.domain.results import TurnRequest, TurnResult
from cosmos_history.http.background import Multitasking, interrupt, queue_turn
from cosmos_history.http.bodies import (
    parse_approvals,
    parse_before,
    parse_limit,
    parse_new_message,
    parse_new_session,
)
from cosmos_history.http.calls import Call
from cosmos_history.http.responses import (
    agents_json,
    history_page_json,
    json_response,
    session_json,
    session_page_json,
    turn_json,
)
from cosmos_history.http.sse import event_stream_response, wants_event_stream


async def create_session_route(call: Call) -> Response:
    new = parse_new_session(await call.json_body(required=False))
    record = await create_session(
        call.store,
        call.agents,
        policy=call.turns.policy,
        session_id=new.id,
        mode=new.mode,
        title=new.title,
        agent=new.agent,
    )
    return json_response(session_json(record), status=201, headers={"Location": f"/api/sessions/{record.id}"})


async def list_sessions_route(call: Call) -> Response:
    page = await list_sessions(
        call.store,
        limit=parse_limit(call.query("limit")),
        continuation_token=call.query("continuationToken") or None,
    )
    return json_response(session_page_json(page))


async def get_session_route(call: Call) -> Response:
    record = await load_session(call.store, call.session_id())
    return json_response(session_json(record, with_messages=True))


async def delete_session_route(call: Call) -> Response:
    await delete_session(call.store, call.session_id())
    return Response(status_code=204)


async def post_message_route(call: Call) -> Response:
    new = parse_new_message(await call.json_body(), call.settings)
    how = Multitasking(new.stream, new.background, new.multitask)
    return await _turn_response(call, how, message=new.message, mode=new.mode, agent=new.agent)


async def post_approvals_route(call: Call) -> Response:
    """Continue the turn that waits for approvals: approved calls run (once), denied ones are reported."""
    answers = parse_approvals(await call.json_body(), call.settings)
    how = Multitasking(answers.stream, answers.background, answers.multitask)
    return await _turn_response(call, how, message="", approvals=answers.answers)


async def _turn_response(call: Call, how: Multitasking, **turn: Any) -> Response:
    request = TurnRequest(call.session_id(), idempotency_key=call.idempotency_key(), **turn)
    if how.background:
        return await queue_turn(call, request, how.multitask)
    try:
        result = await _run_or_stream(call, request, how.stream)
    except TurnInProgressError:
        if how.multitask == "enqueue":  # the message becomes the turn after the running one (and the queued)
            return await queue_turn(call, request, "enqueue", behind_running=True)
        if how.multitask != "interrupt":
            raise
        await interrupt(call, request.session_id)
        result = await _run_or_stream(call, request, how.stream)
    if isinstance(result, Response):
        return result
    return json_response(turn_json(result), headers={"Idempotent-Replayed": "true"} if result.replayed else None)


async def _run_or_stream(call: Call, request: TurnRequest, stream: bool) -> TurnResult | Response:
    if wants_event_stream(call.request, stream):
        started = await call.turns.stream(request, caller=call.user_id)
        return event_stream_response(started, location=f"/api/sessions/{request.session_id}/turns")
    return await call.turns.run(request, caller=call.user_id)


async def list_agents_route(call: Call) -> Response:
    return json_response(agents_json(call.agents))


async def list_messages_route(call: Call) -> Response:
    page = await read_entry_page(
        call.store,
        call.session_id(),
        before=parse_before(call.query("before")),
        limit=parse_limit(call.query("limit"), default=50, maximum=200),
    )
    return json_response(history_page_json(page))


async def health_route(call: Call) -> Response:
    await call.store.ping()
    return json_response({"status": "ok"})


async def openapi_route(req: Request) -> Response:
    from cosmos_history.http.openapi import openapi_document  # on first use: a cold start does not need it

    return Response(openapi_document(), media_type="application/json", headers={"X-Content-Type-Options": "nosniff"})


async def chat_page_route(req: Request) -> Response:
    """The chat page holds no data (it calls the API with the caller's own key or Easy Auth cookies)."""
    from cosmos_history.http.page import chat_page_response  # on first use: a cold start does not need it

    return chat_page_response()
