"""The HTTP API: each route parses its input, calls ``cosmos_history`` and returns JSON (or SSE).

Errors are raised as typed exceptions and turned into problem+json by ``endpoint``. Every route
takes and returns FastAPI types: the app runs on Functions HTTP streams (see README, "Streaming").
"""

import azure.functions as func
from azurefunctions.extensions.http.fastapi import Request, Response

from cosmos_history import (
    Call,
    chat_page_response,
    create_session,
    current_settings,
    delete_session,
    endpoint,
    event_stream_response,
    json_response,
    list_sessions,
    load_session,
    openapi_document,
    parse_before,
    parse_limit,
    parse_new_message,
    parse_new_session,
    read_history,
    run_turn,
    run_turn_stream,
    session_json,
    wants_event_stream,
)

app = func.FunctionApp(http_auth_level=func.AuthLevel[current_settings().http_auth_level.upper()])


@app.route(route="sessions", methods=["POST"])
@endpoint
async def create_session_route(call: Call) -> Response:
    new = parse_new_session(await call.json_body(required=False))
    record = await create_session(call.store, call.agents, session_id=new.id, mode=new.mode, title=new.title)
    return json_response(session_json(record), status=201, headers={"Location": f"/api/sessions/{record.id}"})


@app.route(route="sessions", methods=["GET"])
@endpoint
async def list_sessions_route(call: Call) -> Response:
    page = await list_sessions(
        call.store,
        limit=parse_limit(call.query("limit")),
        continuation_token=call.query("continuationToken") or None,
    )
    return json_response(page.to_json())


@app.route(route="sessions/{id}", methods=["GET"])
@endpoint
async def get_session_route(call: Call) -> Response:
    record = await load_session(call.store, call.route("id"))
    return json_response(session_json(record, with_messages=True))


@app.route(route="sessions/{id}", methods=["DELETE"])
@endpoint
async def delete_session_route(call: Call) -> Response:
    await delete_session(call.store, call.route("id"))
    return Response(status_code=204)


@app.route(route="sessions/{id}/messages", methods=["POST"])
@endpoint
async def post_message_route(call: Call) -> Response:
    new = parse_new_message(await call.json_body(), call.settings)
    turn = {
        "session_id": call.route("id"),
        "message": new.message,
        "mode": new.mode,
        "idempotency_key": call.idempotency_key(),
        "guards": call.guards,
    }
    if wants_event_stream(call.request, new.stream):
        return event_stream_response(await run_turn_stream(call.store, call.agents, **turn))
    result = await run_turn(call.store, call.agents, **turn)
    return json_response(result.to_json(), headers={"Idempotent-Replayed": "true"} if result.replayed else None)


@app.route(route="sessions/{id}/messages", methods=["GET"])
@endpoint
async def list_messages_route(call: Call) -> Response:
    page = await read_history(
        call.store,
        call.route("id"),
        before=parse_before(call.query("before")),
        limit=parse_limit(call.query("limit"), default=50, maximum=200),
    )
    return json_response(page.to_json())


@app.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def openapi_route(req: Request) -> Response:
    return Response(openapi_document(), media_type="application/json")


@app.route(route="health", methods=["GET"])
@endpoint
async def health_route(call: Call) -> Response:
    await call.store.ping()
    return json_response({"status": "ok"})


# The chat page holds no data (it calls the API above with the caller's own key or Easy Auth
# cookies), so it is anonymous whatever HTTP_AUTH_LEVEL the API routes use.
@app.route(route="chat", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def chat_page_route(req: Request) -> Response:
    return chat_page_response()
