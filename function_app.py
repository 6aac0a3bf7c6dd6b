"""The HTTP API: each route parses its input, calls ``cosmos_history`` and returns JSON.

Errors are raised as typed exceptions and turned into problem+json by ``endpoint``.
"""

import azure.functions as func

from cosmos_history import (
    Call,
    chat_page_response,
    create_session,
    current_settings,
    delete_session,
    endpoint,
    json_response,
    list_sessions,
    load_session,
    parse_limit,
    parse_new_message,
    parse_new_session,
    run_turn,
    session_json,
)

app = func.FunctionApp(http_auth_level=func.AuthLevel[current_settings().http_auth_level.upper()])


@app.route(route="sessions", methods=["POST"])
@endpoint
async def create_session_route(call: Call) -> func.HttpResponse:
    new = parse_new_session(call.json_body(required=False))
    record = await create_session(call.store, call.agents, session_id=new.id, mode=new.mode, title=new.title)
    return json_response(session_json(record), status=201, headers={"Location": f"/api/sessions/{record.id}"})


@app.route(route="sessions", methods=["GET"])
@endpoint
async def list_sessions_route(call: Call) -> func.HttpResponse:
    page = await list_sessions(
        call.store,
        limit=parse_limit(call.request.params.get("limit")),
        continuation_token=call.request.params.get("continuationToken") or None,
    )
    return json_response(page.to_json())


@app.route(route="sessions/{id}", methods=["GET"])
@endpoint
async def get_session_route(call: Call) -> func.HttpResponse:
    record = await load_session(call.store, call.route("id"))
    return json_response(session_json(record, with_messages=True))


@app.route(route="sessions/{id}", methods=["DELETE"])
@endpoint
async def delete_session_route(call: Call) -> func.HttpResponse:
    await delete_session(call.store, call.route("id"))
    return func.HttpResponse(status_code=204)


@app.route(route="sessions/{id}/messages", methods=["POST"])
@endpoint
async def post_message_route(call: Call) -> func.HttpResponse:
    new = parse_new_message(call.json_body(), call.settings)
    result = await run_turn(call.store, call.agents, session_id=call.route("id"), message=new.message, mode=new.mode)
    return json_response(result.to_json())


@app.route(route="health", methods=["GET"])
@endpoint
async def health_route(call: Call) -> func.HttpResponse:
    await call.store.ping()
    return json_response({"status": "ok"})


# The chat page holds no data (it calls the API above with the caller's own key or Easy Auth
# cookies), so it is anonymous whatever HTTP_AUTH_LEVEL the API routes use.
@app.route(route="chat", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def chat_page_route(req: func.HttpRequest) -> func.HttpResponse:
    return chat_page_response()
