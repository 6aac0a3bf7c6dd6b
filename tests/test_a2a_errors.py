"""Bad and refused A2A requests get A2A's JSON-RPC errors, never a 500, and leave stored sessions as they were;
the registered function answers as the Functions worker calls it; races and outages answer as everywhere."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from azure.cosmos import CosmosClient

from cosmos_history import load_settings

from .apphost import app_host, registered_functions
from .conftest import ARTIFACTS
from .http_calls import call, request

pytestmark = pytest.mark.integration

A2A_HEADERS = {"a2a-version": "1.0", "content-type": "application/json"}
ASSISTANT = {"agent": "assistant"}
REMINDER = '/schedule_reminder {"text": "call Ada", "at": "2026-12-01T09:00"}'


@pytest.fixture(scope="module")
def base(cosmos_env) -> Iterator[str]:
    """The host with two agents (the sample ones: ``assistant`` and ``helper``)."""
    env = {**cosmos_env, "MODEL_PROVIDER": "offline", "AGENTS_PACKAGE": "tests.sample_agents"}
    with app_host(env, log_path=ARTIFACTS / "apphost-a2a.log") as url:
        yield url


@pytest.fixture(scope="module")
def owner() -> str:
    return f"a2a-owner-{uuid.uuid4().hex[:8]}"


def rpc(method: str, params: Any = None, request_id: int = 1) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    return json.dumps(message).encode()


def message(*parts: dict[str, Any], **fields: str) -> dict[str, Any]:
    return {"message": {"role": "ROLE_USER", "messageId": uuid.uuid4().hex, "parts": list(parts), **fields}}


def post(base: str, body: bytes, user: str, agent: str = "assistant", **headers: str) -> httpx.Response:
    all_headers = {**A2A_HEADERS, "x-user-id": user, **headers}
    return httpx.post(f"{base}/a2a/{agent}", content=body, headers=all_headers, timeout=60)


def result(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200 and "result" in response.json(), response.text
    return response.json()["result"]


@pytest.fixture(scope="module")
def waiting(base, owner) -> dict[str, Any]:
    """A task of ``owner``'s that waits for an approval (its session has a completed turn before it)."""
    first = result(post(base, rpc("SendMessage", message({"text": "Hello, I am Ada"})), owner))["task"]
    sent = message({"text": REMINDER}, contextId=first["contextId"])
    return result(post(base, rpc("SendMessage", sent), owner))["task"]


def stored(base: str, user: str, session_id: str) -> dict[str, Any]:
    response = httpx.get(f"{base}/sessions/{session_id}", headers={"x-user-id": user}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def approvals(answer: list[dict[str, Any]]) -> dict[str, Any]:
    return {"data": {"approvals": answer}}


BAD_CALLS = {
    "not-json": (b"{not json", -32700),
    "not-json-rpc": (b'{"hello": "world"}', -32600),
    "batch": (b"[1, 2]", -32600),
    "non-finite-number": (
        b'{"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "a:1", "n": NaN}}',
        -32600,
    ),
    "lone-surrogate": (b'{"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "\\udc00"}}', -32600),
    "unknown-method": (rpc("message/send"), -32601),
    "params-not-an-object": (rpc("GetTask", [1]), -32602),
    "no-message-id": (rpc("SendMessage", {"message": {"role": "ROLE_USER", "parts": [{"text": "hi"}]}}), -32602),
    "empty-text": (rpc("SendMessage", message({"text": "  "})), -32602),
    "agent-role": (
        rpc("SendMessage", {"message": {**message({"text": "hi"})["message"], "role": "ROLE_AGENT"}}),
        -32602,
    ),
    "a-file": (rpc("SendMessage", message({"url": "https://example.com/a.pdf"})), -32005),
    "raw-bytes": (rpc("SendMessage", message({"raw": "aGk=", "mediaType": "text/plain"})), -32005),
    "raw-json-not-json": (rpc("SendMessage", message({"raw": "aGk=", "mediaType": "application/json"})), -32602),
    "malformed-approvals": (rpc("SendMessage", message({"data": {"approvals": 3}})), -32602),
    "approvals-without-task": (rpc("SendMessage", message(approvals([{"id": "a", "approved": True}]))), -32602),
    "context-not-a-session-id": (rpc("SendMessage", message({"text": "hi"}, contextId="a b")), -32602),
    "too-long": (rpc("SendMessage", message({"text": "x" * 16001})), -32602),
    "task-never-issued": (rpc("GetTask", {"id": "garbage"}), -32001),
    "task-of-no-session": (rpc("GetTask", {"id": "no-such-session:1"}), -32001),
    "negative-history": (rpc("GetTask", {"id": "a:1", "historyLength": -1}), -32602),
    "cancel-unknown": (rpc("CancelTask", {"id": "no-such-session:1"}), -32001),
    "list-tasks": (rpc("ListTasks", {}), -32004),
    "resubscribe": (rpc("SubscribeToTask", {"id": "a:1"}), -32004),
    "push-notifications": (rpc("CreateTaskPushNotificationConfig", {"taskId": "a:1", "url": "https://e.x"}), -32003),
}


@pytest.mark.parametrize(("body", "code"), list(BAD_CALLS.values()), ids=list(BAD_CALLS))
def test_bad_json_rpc_gets_its_json_rpc_error_and_changes_nothing(base, owner, waiting, body, code):
    before = stored(base, owner, waiting["contextId"])

    response = post(base, body, owner)

    assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
    assert response.json()["jsonrpc"] == "2.0" and response.json()["error"]["code"] == code, response.text
    assert "Traceback" not in response.text
    assert stored(base, owner, waiting["contextId"]) == before


def test_a_request_without_the_protocol_version_is_refused_as_a2a_0_3(base, owner):
    response = post(base, rpc("GetTask", {"id": "a:1"}), owner, **{"a2a-version": ""})

    assert response.json()["error"]["code"] == -32009 and "'0.3' is not supported" in response.text


def test_messages_that_do_not_fit_the_task_they_name_are_refused_and_change_nothing(base, owner, waiting):
    task, context = waiting["id"], waiting["contextId"]
    before = stored(base, owner, context)
    [pending] = json.loads(json.dumps(waiting["status"]["message"]["parts"][1]["data"]))["approvals"]
    text_on_waiting = message({"text": "Hello?"}, taskId=task)
    forged = message(approvals([{"id": "forged", "approved": True}]), taskId=task)
    unanswered = message(approvals([]), taskId=task)
    other_context = message(approvals([{"id": pending["id"], "approved": True}]), taskId=task, contextId="elsewhere")
    on_completed = message(approvals([{"id": pending["id"], "approved": True}]), taskId=f"{context}:1")
    beyond_latest = message({"text": "hi"}, taskId=f"{context}:3")

    codes = [
        post(base, rpc("SendMessage", m), owner).json()["error"]["code"]
        for m in (text_on_waiting, forged, unanswered, other_context, on_completed, beyond_latest)
    ]

    assert codes == [-32602, -32602, -32602, -32602, -32004, -32001]
    assert stored(base, owner, context) == before


def test_another_agents_endpoint_finds_no_task_of_a_context_and_cannot_continue_it(base, owner, waiting):
    """A session belongs to one agent: the A2A endpoint of another agent neither reads nor continues it."""
    context = waiting["contextId"]
    before = stored(base, owner, context)

    read = post(base, rpc("GetTask", {"id": f"{context}:1"}), owner, agent="helper")
    continued = post(base, rpc("SendMessage", message({"text": "2 + 2?"}, contextId=context)), owner, agent="helper")

    assert read.json()["error"]["code"] == -32001
    assert continued.json()["error"]["code"] == -32602 and "belongs to agent 'assistant'" in continued.text
    assert stored(base, owner, context) == before


@pytest.mark.parametrize(
    ("path", "headers", "body", "status"),
    [
        ("assistant", {"content-type": "text/plain"}, rpc("GetTask", {"id": "a:1"}), 415),
        ("assistant", {"x-user-id": "not a user id"}, rpc("GetTask", {"id": "a:1"}), 400),
        ("assistant", {}, rpc("GetTask", {"id": "x" * 70000}), 413),
        ("nobody", {}, rpc("GetTask", {"id": "a:1"}), 404),
        ("x" * 65, {}, rpc("GetTask", {"id": "a:1"}), 404),
    ],
    ids=["content-type", "user-id", "too-large", "unknown-agent", "long-agent-name"],
)
def test_refused_requests_get_a_json_rpc_error_with_the_http_status(base, owner, path, headers, body, status):
    response = post(base, body, owner, agent=path, **headers)

    assert response.status_code == status
    assert response.json()["jsonrpc"] == "2.0" and response.json()["id"] is None
    assert response.json()["error"]["code"] == -32600


def test_the_card_of_an_unknown_agent_is_a_404_problem(base, owner):
    response = httpx.get(f"{base}/a2a/nobody/.well-known/agent-card.json", headers={"x-user-id": owner}, timeout=30)

    assert response.status_code == 404 and response.headers["content-type"] == "application/problem+json"


async def test_the_registered_function_answers_as_the_functions_worker_calls_it(functions, model):
    """In process, with the FastAPI request the worker hands over (no host in between)."""
    body = rpc("SendMessage", message({"text": "Hello"}))
    user = f"worker-{uuid.uuid4().hex[:8]}"
    req = request("POST", "/api/a2a/assistant", raw=body, headers=A2A_HEADERS, user=user, route={"agent": "assistant"})

    status, answer, response = await call(functions, "a2a_route", req)

    assert status == 200 and response.headers["x-content-type-options"] == "nosniff"
    task = answer["result"]["task"]
    assert task["status"]["state"] == "TASK_STATE_COMPLETED" and task["artifacts"][0]["parts"] == [{"text": "reply 1"}]
    assert len(model.calls) == 1


async def test_an_anonymous_level_app_refuses_a_message_without_the_easy_auth_principal(cosmos_env, runtime, model):
    settings = load_settings({**cosmos_env, "HTTP_AUTH_LEVEL": "anonymous"})
    easy_auth = registered_functions(dataclasses.replace(runtime, settings=settings))
    body = rpc("SendMessage", message({"text": "Hello"}))
    req = request(
        "POST", "/api/a2a/assistant", raw=body, headers=A2A_HEADERS, user="someone", route={"agent": "assistant"}
    )

    status, answer, _ = await call(easy_auth, "a2a_route", req)

    assert status == 401 and answer["error"]["code"] == -32600 and answer["id"] is None
    assert model.calls == []


async def test_the_easy_auth_principal_names_the_caller_whose_context_it_is(functions, model):
    oid = f"oid-{uuid.uuid4().hex[:8]}"
    claims = [{"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": oid}]
    principal = base64.b64encode(json.dumps({"auth_typ": "aad", "claims": claims}).encode()).decode()
    headers = {**A2A_HEADERS, "x-ms-client-principal": principal}
    body = rpc("SendMessage", message({"text": "Hello"}))
    req = request(
        "POST", "/api/a2a/assistant", raw=body, headers=headers, user="not-the-caller", route={"agent": "assistant"}
    )

    status, answer, _ = await call(functions, "a2a_route", req)

    context = answer["result"]["task"]["contextId"]
    assert status == 200 and [s["id"] for s in await sessions_of(functions, oid)] == [context]
    assert await sessions_of(functions, "not-the-caller") == []


async def sessions_of(functions, user: str) -> list[dict[str, Any]]:
    status, page, _ = await call(functions, "list_sessions_route", request("GET", "/api/sessions", user=user))
    assert status == 200
    return page["sessions"]


async def send_in_process(functions, user: str, params: dict[str, Any]) -> dict[str, Any]:
    body = rpc("SendMessage", params)
    req = request("POST", "/api/a2a/assistant", raw=body, headers=A2A_HEADERS, user=user, route={"agent": "assistant"})
    status, answer, _ = await call(functions, "a2a_route", req)
    assert status == 200, answer
    return answer


async def test_a_message_while_another_turn_runs_on_the_context_is_refused_with_when_to_retry(functions, model):
    user = f"racer-{uuid.uuid4().hex[:8]}"
    context = (await send_in_process(functions, user, message({"text": "Hello"})))["result"]["task"]["contextId"]
    model.gate, model.entered = asyncio.Event(), asyncio.Event()
    try:
        running = asyncio.create_task(send_in_process(functions, user, message({"text": "Slow"}, contextId=context)))
        await model.entered.wait()
        second = await send_in_process(functions, user, message({"text": "Meanwhile"}, contextId=context))
        model.gate.set()
        first = await running
    finally:
        model.gate = None

    [info] = second["error"]["data"][:1]
    assert second["error"]["code"] == -32602 and info["metadata"]["type"].endswith(":turn-in-progress")
    assert info["metadata"]["retryAfter"].isdigit()
    assert first["result"]["task"]["id"] == f"{context}:2"


@pytest.fixture
def own_database(cosmos_env) -> Iterator[dict[str, str]]:
    """Settings naming a database of this test's own, which it deletes."""
    env = {**cosmos_env, "COSMOS_DATABASE": f"a2a-outage-{uuid.uuid4().hex[:8]}"}
    yield env
    with CosmosClient(env["COSMOS_ENDPOINT"], env["COSMOS_KEY"], connection_verify=False) as client:
        if any(db["id"] == env["COSMOS_DATABASE"] for db in client.list_databases()):
            client.delete_database(env["COSMOS_DATABASE"])


def test_a_message_on_a_deleted_container_is_a_503_json_rpc_error_and_the_next_one_lands(own_database):
    hello = rpc("SendMessage", message({"text": "Hello"}, contextId="outage"))
    with app_host(own_database, log_path=ARTIFACTS / "apphost-a2a.log") as base:
        first = post(base, rpc("SendMessage", message({"text": "Hi"})), "outage-user")
        with CosmosClient(own_database["COSMOS_ENDPOINT"], own_database["COSMOS_KEY"], connection_verify=False) as c:
            c.get_database_client(own_database["COSMOS_DATABASE"]).delete_container(own_database["COSMOS_CONTAINER"])

        refused = post(base, hello, "outage-user")
        landed = post(base, hello, "outage-user")

    assert result(first)["task"]["status"]["state"] == "TASK_STATE_COMPLETED"
    assert refused.status_code == 503 and refused.headers["retry-after"].isdigit()
    assert refused.json()["error"]["code"] == -32603 and "does not exist" in refused.text
    assert result(landed)["task"]["id"] == "outage:1"
