"""Hostile input found by outside testing: every one gets a 4xx problem, stores nothing, and no stored
document can make a later answer fail."""

from __future__ import annotations

import base64

import pytest

from .http_calls import assert_problem, call, post_message, request

pytestmark = pytest.mark.integration

LONE_SURROGATE = '"\\udc00"'  # JSON's escape for a lone low surrogate: valid JSON, not encodable Unicode


def raw_json(template: str) -> bytes:
    return template.replace("LONE", LONE_SURROGATE).encode()


async def get_session(functions, session_id: str, user: str = "alice"):
    req = request("GET", f"/api/sessions/{session_id}", route={"id": session_id}, user=user)
    return await call(functions, "get_session_route", req)


async def list_sessions(functions, user: str = "alice"):
    return await call(functions, "list_sessions_route", request("GET", "/api/sessions", user=user))


async def test_a_title_with_a_lone_surrogate_is_400_and_stores_nothing(functions, session_id):
    body = raw_json(f'{{"id": "{session_id}", "title": LONE}}')

    status, _, response = await call(functions, "create_session_route", request("POST", "/api/sessions", raw=body))

    assert_problem(status, response, 400)
    assert (await get_session(functions, session_id))[0] == 404


async def test_a_message_with_a_lone_surrogate_is_400_and_calls_no_model(functions, model, session_id):
    req = request(
        "POST", f"/api/sessions/{session_id}/messages", raw=raw_json('{"message": LONE}'), route={"id": session_id}
    )

    status, _, response = await call(functions, "post_message_route", req)

    assert_problem(status, response, 400)
    assert model.calls == []
    assert (await get_session(functions, session_id))[0] == 404


async def test_an_ag_ui_run_with_a_lone_surrogate_is_400_and_calls_no_model(functions, model, session_id):
    body = raw_json(
        f'{{"threadId": "{session_id}", "runId": "r", "messages": [{{"id": "m", "role": "user", "content": LONE}}]}}'
    )
    req = request("POST", "/api/ag-ui/assistant", raw=body, route={"agent": "assistant"})

    status, _, response = await call(functions, "agui_route", req)

    assert_problem(status, response, 400)
    assert model.calls == []
    assert (await get_session(functions, session_id))[0] == 404


async def test_a_principal_whose_object_id_is_a_lone_surrogate_is_401(functions, session_id):
    principal = b'{"auth_typ": "aad", "claims": [{"typ": "oid", "val": "\\udc00"}]}'
    headers = {"x-ms-client-principal": base64.b64encode(principal).decode()}

    status, _, response = await post_message(functions, session_id, "hi", user=None, headers=headers)

    assert_problem(status, response, 401)


async def test_a_stored_title_with_a_lone_surrogate_breaks_neither_the_listing_nor_the_session(
    functions, runtime, session_id
):
    user = f"poisoned-{session_id}"
    await call(functions, "create_session_route", request("POST", "/api/sessions", body={"id": session_id}, user=user))
    document = await runtime.store.container.read_item(session_id, partition_key=[user, session_id])
    document["title"] = "\udc00 stored before input was checked"
    await runtime.store.container.replace_item(session_id, document)

    listing_status, listing, _ = await list_sessions(functions, user=user)
    session_status, session, _ = await get_session(functions, session_id, user=user)

    assert listing_status == 200 and [s["id"] for s in listing["sessions"]] == [session_id]
    assert session_status == 200 and session["title"] == document["title"]


@pytest.mark.parametrize("bad_id", [".", "..", ""])
async def test_a_session_id_of_dots_or_nothing_is_400_and_creates_nothing(functions, bad_id):
    user = f"dots-{len(bad_id)}"
    req = request("POST", "/api/sessions", body={"id": bad_id}, user=user)

    status, _, response = await call(functions, "create_session_route", req)

    assert_problem(status, response, 400)
    assert (await list_sessions(functions, user=user))[1]["sessions"] == []


async def test_json_answers_problems_and_streams_tell_browsers_not_to_sniff(functions, session_id):
    created = await call(functions, "create_session_route", request("POST", "/api/sessions", body={"id": session_id}))
    problem = await get_session(functions, f"{session_id}-missing")
    streamed = await functions["post_message_route"](
        request("POST", "/", body={"message": "hi"}, route={"id": session_id}, headers={"accept": "text/event-stream"})
    )
    document = await call(functions, "openapi_route", request("GET", "/api/openapi.json", user=None))
    events = [chunk async for chunk in streamed.body_iterator]  # let the streamed turn finish saving

    assert "event: done" in events[-1]

    for response in (created[2], problem[2], streamed, document[2]):
        assert response.headers["X-Content-Type-Options"] == "nosniff", response.media_type


NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"]


@pytest.mark.parametrize("literal", NON_FINITE)
async def test_a_non_finite_number_anywhere_in_a_body_is_400_on_every_route_and_stores_nothing(
    functions, model, session_id, literal
):
    sessions = request("POST", "/api/sessions", raw=f'{{"id": "{session_id}", "extra": [{literal}]}}'.encode())
    messages = request(
        "POST",
        f"/api/sessions/{session_id}/messages",
        raw=f'{{"message": "hi", "mode": "local", "x": {{"y": {literal}}}}}'.encode(),
        route={"id": session_id},
    )
    approvals = request(
        "POST",
        f"/api/sessions/{session_id}/approvals",
        raw=f'{{"approvals": [{{"id": "a", "approved": true}}], "n": {literal}}}'.encode(),
        route={"id": session_id},
    )

    agui_run = request(
        "POST",
        "/api/ag-ui/assistant",
        raw=f'{{"threadId": "{session_id}", "runId": "r", "messages": [], "state": {{"n": {literal}}}}}'.encode(),
        route={"agent": "assistant"},
    )

    for name, req in (
        ("create_session_route", sessions),
        ("post_message_route", messages),
        ("post_approvals_route", approvals),
        ("agui_route", agui_run),
    ):
        status, _, response = await call(functions, name, req)
        problem = assert_problem(status, response, 400)
        assert "NaN, Infinity" in problem["detail"], name
    assert model.calls == []
    assert (await get_session(functions, session_id))[0] == 404
