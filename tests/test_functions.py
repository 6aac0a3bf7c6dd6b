"""Every registered function called with a FastAPI ``Request``, as the worker passes it under HTTP
streams: happy paths and each error status."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from fastapi import Response
from fastapi.responses import StreamingResponse

from cosmos_history import SessionRecord, load_settings
from devtools.chat import read_events

from .http_calls import COMPLETED, assert_problem, call, post_message, request, stored_document

pytestmark = pytest.mark.integration


# --- happy paths -----------------------------------------------------------------------------


async def test_create_session_returns_201_with_the_new_session(functions, session_id):
    status, body, response = await call(
        functions, "create_session_route", request("POST", "/api/sessions", body={"id": session_id, "title": "Plans"})
    )

    assert status == 201 and response.headers["Location"] == f"/api/sessions/{session_id}"
    assert body["id"] == session_id and body["mode"] == "local" and body["turns"] == 0
    assert body["createdAt"] == body["updatedAt"]


async def test_create_session_without_a_body_generates_an_id(functions):
    status, body, _ = await call(functions, "create_session_route", request("POST", "/api/sessions", raw=b""))

    assert status == 201 and len(body["id"]) == 36


async def test_post_message_runs_one_turn_and_creates_the_session(functions, model, session_id):
    status, body, _ = await post_message(functions, session_id, "Hello")

    assert status == 200
    assert body == {"sessionId": session_id, "reply": "reply 1", "turn": 1, "mode": "local", **COMPLETED}
    assert len(model.calls) == 1


async def test_get_session_returns_the_history(functions, model, session_id):
    await post_message(functions, session_id, "Hello")
    await post_message(functions, session_id, "Again")

    status, body, _ = await call(
        functions, "get_session_route", request("GET", f"/api/sessions/{session_id}", route={"id": session_id})
    )

    assert status == 200 and body["turns"] == 2 and body["title"] == "Hello"
    assert body["messages"] == [
        {"role": "user", "text": "Hello"},
        {"role": "assistant", "text": "reply 1"},
        {"role": "user", "text": "Again"},
        {"role": "assistant", "text": "reply 2"},
    ]


async def test_service_mode_document_holds_no_message_text(functions, model, runtime, session_id):
    await call(
        functions, "create_session_route", request("POST", "/api/sessions", body={"id": session_id, "mode": "service"})
    )
    await post_message(functions, session_id, "my secret words")

    document = await stored_document(runtime, session_id)
    text = json.dumps(document)
    assert "my secret words" not in text and "reply 1" not in text
    assert document["mode"] == "service" and len(text.encode()) < 1024


async def test_list_sessions_returns_only_the_callers_sessions(functions, model, session_id):
    user = f"lister-{session_id}"
    await post_message(functions, session_id, "mine", user=user)
    await post_message(functions, session_id + "-other", "theirs", user=user + "-other")

    status, body, _ = await call(functions, "list_sessions_route", request("GET", "/api/sessions", user=user))

    assert status == 200 and body["continuationToken"] is None
    assert [s["id"] for s in body["sessions"]] == [session_id]
    assert set(body["sessions"][0]) == {"id", "title", "mode", "agent", "updatedAt", "turns"}
    assert body["sessions"][0]["agent"] == "assistant"


async def test_delete_session_returns_204_then_404(functions, model, session_id):
    await post_message(functions, session_id, "bye")

    def delete():
        return request("DELETE", f"/api/sessions/{session_id}", route={"id": session_id})

    first, _, _ = await call(functions, "delete_session_route", delete())
    status, _, response = await call(functions, "delete_session_route", delete())

    assert first == 204
    assert_problem(status, response, 404)


async def test_health_is_ok_when_cosmos_answers(functions):
    status, body, _ = await call(functions, "health_route", request("GET", "/api/health"))

    assert (status, body) == (200, {"status": "ok"})


# --- errors ----------------------------------------------------------------------------------


async def test_malformed_json_is_400(functions, session_id):
    req = request("POST", "/", raw=b'{"message": ', route={"id": session_id})
    status, _, response = await call(functions, "post_message_route", req)
    assert_problem(status, response, 400)


async def test_a_json_body_that_is_not_an_object_is_400(functions, session_id):
    req = request("POST", "/", body=["message"], route={"id": session_id})
    status, _, response = await call(functions, "post_message_route", req)
    assert_problem(status, response, 400)


async def test_a_bad_session_id_is_400_with_a_clear_message(functions):
    status, _, response = await post_message(functions, "bad id!", "hi")
    problem = assert_problem(status, response, 400)
    assert "1-128 characters" in problem["detail"]


async def test_a_missing_session_is_404(functions, session_id):
    req = request("GET", "/", route={"id": session_id})
    status, _, response = await call(functions, "get_session_route", req)
    assert_problem(status, response, 404)


async def test_creating_an_existing_session_is_409_without_a_retry_after_as_retrying_cannot_help(functions, session_id):
    await call(functions, "create_session_route", request("POST", "/api/sessions", body={"id": session_id}))
    again = request("POST", "/api/sessions", body={"id": session_id})
    status, _, response = await call(functions, "create_session_route", again)
    problem = assert_problem(status, response, 409)
    assert problem["type"].endswith(":session-exists") and "Retry-After" not in response.headers


async def test_asking_an_existing_session_for_the_other_mode_is_409(functions, model, session_id):
    await post_message(functions, session_id, "local turn")
    req = request("POST", "/", body={"message": "switch", "mode": "service"}, route={"id": session_id})
    status, _, response = await call(functions, "post_message_route", req)
    assert_problem(status, response, 409)


async def test_a_body_over_the_limit_is_413(functions, runtime, session_id):
    big = "x" * (runtime.settings.max_request_bytes + 1)
    status, _, response = await post_message(functions, session_id, big)
    assert_problem(status, response, 413)


async def test_a_non_json_content_type_is_415(functions, session_id):
    req = request("POST", "/", raw=b"message=hi", route={"id": session_id}, content_type="text/plain")
    status, _, response = await call(functions, "post_message_route", req)
    assert_problem(status, response, 415)


@pytest.mark.parametrize("message", [None, "", "   ", 42, ["hi"]])
async def test_a_missing_or_empty_message_is_422(functions, session_id, message):
    status, _, response = await post_message(functions, session_id, message)
    assert_problem(status, response, 422)


async def test_an_oversized_message_is_422(functions, runtime, session_id):
    too_long = "y" * (runtime.settings.max_message_chars + 1)
    assert len(json.dumps({"message": too_long})) < runtime.settings.max_request_bytes
    status, _, response = await post_message(functions, session_id, too_long)
    assert_problem(status, response, 422)


async def test_an_unknown_mode_is_422(functions, session_id):
    req = request("POST", "/api/sessions", body={"id": session_id, "mode": "cloud"})
    status, _, response = await call(functions, "create_session_route", req)
    assert_problem(status, response, 422)


async def test_a_bad_list_limit_is_400(functions):
    req = request("GET", "/api/sessions", params={"limit": "0"})
    status, _, response = await call(functions, "list_sessions_route", req)
    assert_problem(status, response, 400)


async def test_a_failing_model_is_502_and_the_session_is_left_exactly_as_it_was(functions, model, runtime, session_id):
    await post_message(functions, session_id, "first")
    before = await stored_document(runtime, session_id)
    model.fail_with = RuntimeError("upstream exploded with secret detail")

    status, _, response = await post_message(functions, session_id, "second")

    problem = assert_problem(status, response, 502)
    assert "secret detail" not in problem["detail"]
    assert await stored_document(runtime, session_id) == before


async def test_a_concurrent_modification_is_409_and_keeps_the_winner(functions, model, runtime, session_id):
    await post_message(functions, session_id, "first")
    store = runtime.store.for_user("alice")
    original_run = runtime.agents["assistant"].by_mode["local"].run

    async def run_while_someone_else_writes(*args, **kwargs):
        result = await original_run(*args, **kwargs)
        winner = await store.load(session_id)
        assert isinstance(winner, SessionRecord)
        winner.title = "winner"
        await store.save(winner, etag=winner.etag)
        return result

    runtime.agents["assistant"].by_mode["local"].run = run_while_someone_else_writes
    try:
        status, _, response = await post_message(functions, session_id, "loser")
    finally:
        del runtime.agents["assistant"].by_mode["local"].run

    problem = assert_problem(status, response, 409)
    assert response.headers.get("Retry-After") and "another request" in problem["detail"]
    document = await stored_document(runtime, session_id)
    assert document["title"] == "winner" and document["turns"] == 1


async def test_another_users_session_is_404_for_read_and_delete(functions, model, runtime, session_id):
    await post_message(functions, session_id, "alice only", user="alice")
    before = await stored_document(runtime, session_id, "alice")

    read = await call(functions, "get_session_route", request("GET", "/", route={"id": session_id}, user="bob"))
    delete = await call(functions, "delete_session_route", request("DELETE", "/", route={"id": session_id}, user="bob"))

    for status, _, response in (read, delete):
        assert_problem(status, response, 404)
    assert await stored_document(runtime, session_id, "alice") == before


async def test_the_same_session_id_is_a_separate_session_per_user(functions, model, runtime, session_id):
    await post_message(functions, session_id, "alice only", user="alice")
    before = await stored_document(runtime, session_id, "alice")

    status, body, _ = await post_message(functions, session_id, "bob here", user="bob")

    assert status == 200 and body["turn"] == 1
    assert all("alice only" not in message.text for message in model.calls[-1])
    _, bobs, _ = await call(functions, "get_session_route", request("GET", "/", route={"id": session_id}, user="bob"))
    assert "alice only" not in json.dumps(bobs)
    assert await stored_document(runtime, session_id, "alice") == before


async def test_the_easy_auth_principal_names_the_owner(functions, model, session_id):
    principal = {"auth_typ": "aad", "claims": [{"typ": "oid", "val": "object-id-1"}]}
    header = base64.b64encode(json.dumps(principal).encode()).decode()
    await post_message(functions, session_id, "hi", user=None, headers={"x-ms-client-principal": header})

    status, _, response = await call(
        functions, "get_session_route", request("GET", "/", route={"id": session_id}, user="object-id-1")
    )

    assert status == 200, response.body


async def test_a_malformed_principal_header_is_401(functions, session_id):
    status, _, response = await post_message(
        functions, session_id, "hi", user=None, headers={"x-ms-client-principal": "%%%not-base64"}
    )
    assert_problem(status, response, 401)


@pytest.fixture
async def unreachable_cosmos(runtime):
    """The app's functions on a runtime pointed at a port where no Cosmos DB listens."""
    from cosmos_history import Runtime
    from cosmos_history.adapters.cosmos.client import create_client
    from cosmos_history.adapters.cosmos.sessions import CosmosSessions
    from devtools.local_cosmos import EMULATOR_KEY, free_port

    from .apphost import registered_functions

    settings = load_settings({"COSMOS_ENDPOINT": f"https://127.0.0.1:{free_port()}", "COSMOS_KEY": EMULATOR_KEY})
    client = create_client(settings.cosmos)
    container = client.get_database_client("db").get_container_client("sessions")
    yield registered_functions(Runtime(settings, CosmosSessions(container), runtime.agents))
    await client.close()


async def test_health_is_503_when_cosmos_is_unreachable(unreachable_cosmos):
    status, _, response = await call(unreachable_cosmos, "health_route", request("GET", "/api/health"))
    assert_problem(status, response, 503)


async def test_a_turn_is_503_with_retry_after_when_cosmos_is_unreachable(model, unreachable_cosmos):
    status, _, response = await post_message(unreachable_cosmos, "s-unreachable", "hello")

    assert_problem(status, response, 503)
    assert response.headers["Retry-After"].isdigit()
    assert model.calls == [], "no model call is paid for when the session cannot even be read"


async def test_another_users_session_looks_exactly_like_a_missing_one(functions, model, session_id):
    await post_message(functions, session_id, "alice only", user="alice")
    never_existed = f"{session_id}-guess"

    foreign = await call(functions, "get_session_route", request("GET", "/", route={"id": session_id}, user="bob"))
    missing = await call(functions, "get_session_route", request("GET", "/", route={"id": never_existed}, user="bob"))
    listed = await call(functions, "list_sessions_route", request("GET", "/api/sessions", user="bob"))

    assert foreign[0] == missing[0] == 404 and foreign[1] == missing[1]
    assert session_id not in json.dumps(listed[1])
    assert "POST /api/sessions" in foreign[1]["detail"] and "Caller identity" in foreign[1]["detail"]


async def test_a_retry_with_the_same_idempotency_key_is_replayed(functions, model, session_id):
    headers = {"idempotency-key": f"retry-{session_id}"}
    first = await post_message(functions, session_id, "pay once", headers=headers)
    calls = len(model.calls)

    retry = await post_message(functions, session_id, "pay once", headers=headers)

    assert retry[0] == 200 and retry[1] == first[1]
    assert retry[2].headers.get("Idempotent-Replayed") == "true"
    assert len(model.calls) == calls


async def test_an_idempotency_key_reused_for_another_body_is_422(functions, model, session_id):
    headers = {"idempotency-key": f"reuse-{session_id}"}
    await post_message(functions, session_id, "first body", headers=headers)
    status, _, response = await post_message(functions, session_id, "second body", headers=headers)
    assert_problem(status, response, 422)


async def test_a_malformed_idempotency_key_is_400(functions, session_id):
    status, _, response = await post_message(functions, session_id, "hi", headers={"idempotency-key": "has spaces"})
    assert_problem(status, response, 400)


async def test_a_turn_racing_a_live_lease_is_409_with_retry_after_and_no_model_call(
    functions, model, runtime, session_id
):
    await post_message(functions, session_id, "first")
    await runtime.guards.lease.claim(session_id, "alice")  # a turn in flight
    calls = len(model.calls)

    status, _, response = await post_message(functions, session_id, "second")

    assert_problem(status, response, 409)
    assert int(response.headers["Retry-After"]) >= 1 and len(model.calls) == calls


async def test_history_pages_back_through_the_whole_conversation(functions, model, session_id):
    for n in range(5):
        await post_message(functions, session_id, f"message {n}")

    def page(before: str | None):
        params = {"limit": "4"} | ({"before": before} if before else {})
        return call(functions, "list_messages_route", request("GET", "/", route={"id": session_id}, params=params))

    newest = await page(None)
    older = await page(str(newest[1]["before"]))
    oldest = await page(str(older[1]["before"]))

    assert newest[1]["total"] == 10 and [m["index"] for m in newest[1]["messages"]] == [6, 7, 8, 9]
    assert [m["index"] for m in older[1]["messages"]] == [2, 3, 4, 5]
    assert [m["text"] for m in oldest[1]["messages"]] == ["message 0", "reply 1"] and oldest[1]["before"] is None


async def test_the_openapi_document_is_served(functions):
    status, body, _ = await call(functions, "openapi_route", request("GET", "/api/openapi.json"))

    assert status == 200 and body["openapi"].startswith("3.") and "/sessions/{id}/messages" in body["paths"]


# --- streaming ---------------------------------------------------------------------------------


async def sse_events(response: Response) -> list[tuple[str, Any]]:
    assert isinstance(response, StreamingResponse)
    text = "".join([chunk async for chunk in response.body_iterator])
    return list(read_events(iter(text.splitlines())))


async def test_accept_event_stream_answers_deltas_then_done(functions, model, runtime, session_id):
    req = request(
        "POST", "/", body={"message": "Hello"}, route={"id": session_id}, headers={"accept": "text/event-stream"}
    )

    response = await functions["post_message_route"](req)

    assert response.status_code == 200 and response.media_type == "text/event-stream"
    events = await sse_events(response)
    assert events == [
        ("delta", {"text": "reply "}),
        ("delta", {"text": "1"}),
        ("done", {"sessionId": session_id, "reply": "reply 1", "turn": 1, "mode": "local", **COMPLETED}),
    ]
    assert (await stored_document(runtime, session_id))["turns"] == 1


async def test_a_model_failing_before_the_stream_starts_is_a_plain_502(functions, model, session_id):
    model.fail_with = RuntimeError("upstream exploded")
    req = request("POST", "/", body={"message": "Hello", "stream": True}, route={"id": session_id})

    status, _, response = await call(functions, "post_message_route", req)

    assert_problem(status, response, 502)


async def test_a_stream_flag_that_is_not_a_boolean_is_422(functions, session_id):
    req = request("POST", "/", body={"message": "Hello", "stream": "yes"}, route={"id": session_id})
    status, _, response = await call(functions, "post_message_route", req)
    assert_problem(status, response, 422)


@pytest.mark.parametrize("limit", ["²", "9" * 5000, "-1", "1e3"])
async def test_a_limit_that_is_not_a_small_ascii_number_is_400(functions, limit):
    status, _, response = await call(
        functions, "list_sessions_route", request("GET", "/api/sessions", params={"limit": limit})
    )
    assert_problem(status, response, 400)


async def test_a_history_position_that_is_not_an_ascii_number_is_400(functions, session_id):
    req = request("GET", "/", route={"id": session_id}, params={"before": "²"})
    status, _, response = await call(functions, "list_messages_route", req)
    assert_problem(status, response, 400)


async def test_absurdly_nested_json_is_400_not_500(functions, session_id):
    req = request("POST", "/", raw=b"[" * 50_000, route={"id": session_id})
    status, _, response = await call(functions, "post_message_route", req)
    assert_problem(status, response, 400)


async def test_an_absurdly_nested_principal_is_401_not_500(functions, session_id):
    header = base64.b64encode(b"[" * 50_000).decode()
    status, _, response = await post_message(
        functions, session_id, "hi", user=None, headers={"x-ms-client-principal": header}
    )
    assert_problem(status, response, 401)


async def test_a_listing_token_that_is_not_ours_is_400(functions):
    token = base64.urlsafe_b64encode(b"SELECT * FROM c").decode()
    req = request("GET", "/api/sessions", params={"continuationToken": token})
    status, _, response = await call(functions, "list_sessions_route", req)
    assert_problem(status, response, 400)


# --- paths no route serves ---------------------------------------------------------------------------


async def test_every_other_path_is_an_anonymous_catch_all_function_answering_problem_json(runtime):
    import azure.functions as func

    import function_app
    from cosmos_history import create_app

    # A new app: the worker indexes an app once (a second get_functions() sees its functions twice).
    registered = {f.get_function_name(): f for f in create_app(function_app.ROUTES, runtime=runtime).get_functions()}
    trigger = registered["unknown_route"].get_trigger()
    handler = registered["unknown_route"].get_user_function()

    status, _, response = await call(
        {"f": handler}, "f", request("GET", "/api/sesions", route={"path": "sesions"}, user=None)
    )
    index = await handler(request("GET", "/api/", route={"path": ""}, user=None))

    assert trigger.route == "{*path}" and trigger.auth_level == func.AuthLevel.ANONYMOUS
    problem = assert_problem(status, response, 404)
    assert "/api/openapi.json describes every route" in problem["detail"]
    assert json.loads(index.body)["links"]["openapi"] == "/api/openapi.json"
