"""The app's agents as MCP tools at /api/mcp: the ``mcp`` SDK's streamable-HTTP client and the framework's
``MCPStreamableHTTPTool`` against the local host (a separate process) and the local Cosmos DB."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import mcp_types as types
import pytest
from agent_framework import Agent, MCPStreamableHTTPTool
from azure.cosmos import CosmosClient
from mcp.client.client import Client
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from .apphost import ROOT, app_host
from .conftest import ARTIFACTS
from .fakes import RecordingChatClient
from .http_calls import call, request

pytestmark = pytest.mark.integration

REMINDER = '/schedule_reminder {"text": "call Ada", "at": "2026-12-01T09:00"}'
MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


@pytest.fixture(scope="module")
def base(cosmos_env) -> Iterator[str]:
    with app_host({**cosmos_env, "MODEL_PROVIDER": "offline"}, log_path=ARTIFACTS / "apphost-mcp-server.log") as url:
        yield url


@pytest.fixture
def user() -> str:
    return f"mcp-{uuid.uuid4().hex[:8]}"


@asynccontextmanager
async def connected(base: str, user: str) -> AsyncIterator[ClientSession]:
    """An initialized MCP client session on /api/mcp, acting for ``user``."""
    http = create_mcp_http_client(headers={"x-user-id": user})
    async with (
        http,
        streamable_http_client(f"{base}/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def structured(result: types.CallToolResult) -> dict[str, Any]:
    assert isinstance(result.structured_content, dict), result
    return result.structured_content


async def native(base: str, user: str, path: str) -> Any:
    """What the app's own API answers ``user`` on ``GET {path}`` (its JSON body)."""
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.get(f"{base}{path}", headers={"x-user-id": user})
    assert response.status_code == 200, response.text
    return response.json()


def post_raw(base: str, body: bytes, **headers: str) -> httpx.Response:
    return httpx.post(f"{base}/mcp", content=body, headers={**MCP_HEADERS, **headers}, timeout=30)


def rpc(method: str, params: dict[str, Any] | None = None, request_id: int = 1) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    return json.dumps(message).encode()


async def test_the_tools_are_the_agents_named_and_described_as_they_are_and_approve(base, user):
    async with connected(base, user) as mcp:
        tools = (await mcp.list_tools()).tools
    agents = (await native(base, user, "/agents"))["agents"]

    assert [(t.name, t.description) for t in tools[:-1]] == [(a["name"], a["description"]) for a in agents]
    assert tools[-1].name == "approve"
    assert tools[0].input_schema["required"] == ["message"]
    assert set(tools[0].input_schema["properties"]) == {"message", "sessionId"}


async def test_three_calls_hold_one_conversation_in_a_session_the_caller_lists(base, user):
    async with connected(base, user) as mcp:
        first = structured(await mcp.call_tool("assistant", {"message": "Hello, I am Ada"}))
        session_id = first["sessionId"]
        second = structured(await mcp.call_tool("assistant", {"message": "I like tea", "sessionId": session_id}))
        third = await mcp.call_tool("assistant", {"message": "What did I say?", "sessionId": session_id})

    assert (first["turn"], second["turn"], structured(third)["turn"]) == (1, 2, 3)
    assert structured(third)["sessionId"] == session_id and structured(third)["status"] == "completed"
    assert "I received 4 earlier messages" in third.content[0].text  # the two turns before it, both sides
    listed = (await native(base, user, "/sessions"))["sessions"]
    assert [(s["id"], s["turns"]) for s in listed] == [(session_id, 3)]


async def test_a_call_that_needs_approval_waits_and_approve_continues_it_exactly_once(base, user):
    async with connected(base, user) as mcp:
        waiting = structured(await mcp.call_tool("assistant", {"message": REMINDER}))
        session_id = waiting["sessionId"]
        answer = {"sessionId": session_id, "approvals": [{"id": waiting["approvals"][0]["id"], "approved": True}]}
        done = structured(await mcp.call_tool("approve", answer))
        stored = await native(base, user, f"/sessions/{session_id}")
        again = await mcp.call_tool("approve", answer)

    assert waiting["status"] == "awaiting_approval" and waiting["toolCalls"] == []
    assert [(a["tool"], a["arguments"]) for a in waiting["approvals"]] == [
        ("schedule_reminder", {"text": "call Ada", "at": "2026-12-01T09:00"})
    ]
    assert done["status"] == "completed" and done["turn"] == 2 and done["approvals"] == []
    assert [(c["tool"], c["result"]) for c in done["toolCalls"]] == [
        ("schedule_reminder", "Reminder 1 scheduled for 2026-12-01T09:00.")
    ]
    assert again.is_error and structured(again)["error"]["status"] == 409
    assert await native(base, user, f"/sessions/{session_id}") == stored


async def test_another_user_gets_nothing_of_a_session_over_mcp(base, user):
    async with connected(base, user) as mcp:
        waiting = structured(await mcp.call_tool("assistant", {"message": REMINDER}))
    session_id = waiting["sessionId"]
    before = await native(base, user, f"/sessions/{session_id}")
    answer = {"sessionId": session_id, "approvals": [{"id": waiting["approvals"][0]["id"], "approved": True}]}

    intruder_id = f"someone-else-{user}"
    async with connected(base, intruder_id) as intruder:
        approved = await intruder.call_tool("approve", answer)
        continued = await intruder.call_tool("assistant", {"message": "What was I told?", "sessionId": session_id})

    assert approved.is_error and structured(approved)["error"]["status"] == 404
    assert "Ada" not in json.dumps(approved.model_dump())
    # Session ids are per user: the same id names the intruder's own, new session, holding nothing of the owner's.
    assert not continued.is_error and "Ada" not in json.dumps(continued.model_dump())
    theirs = await native(base, intruder_id, f"/sessions/{session_id}/messages")
    assert "Ada" not in json.dumps(theirs)
    assert await native(base, user, f"/sessions/{session_id}") == before


async def test_errors_of_a_turn_are_tool_errors_with_the_native_problem(base, user):
    async with connected(base, user) as mcp:
        bad_id = await mcp.call_tool("assistant", {"message": "hi", "sessionId": "../other"})
        empty = await mcp.call_tool("assistant", {"message": "  "})
        unknown_argument = await mcp.call_tool("assistant", {"message": "hi", "mode": "local"})
        bad_answers = await mcp.call_tool("approve", {"sessionId": "no-such-session", "approvals": []})
        with pytest.raises(MCPError) as unknown_tool:
            await mcp.call_tool("no-such-agent", {"message": "hi"})

    assert structured(bad_id)["error"]["type"] == "urn:cosmos-history:problem:invalid-session-id"
    assert [structured(r)["error"]["status"] for r in (empty, unknown_argument, bad_answers)] == [422, 422, 422]
    assert all(r.is_error for r in (bad_id, empty, unknown_argument, bad_answers))
    assert unknown_tool.value.code == types.INVALID_PARAMS
    assert (await native(base, user, "/sessions"))["sessions"] == []


async def test_a_waiting_session_refuses_a_new_message_and_stays_as_it_was(base, user):
    async with connected(base, user) as mcp:
        waiting = structured(await mcp.call_tool("assistant", {"message": REMINDER}))
        before = await native(base, user, f"/sessions/{waiting['sessionId']}")
        refused = await mcp.call_tool("assistant", {"message": "hello", "sessionId": waiting["sessionId"]})
        forged = await mcp.call_tool(
            "approve", {"sessionId": waiting["sessionId"], "approvals": [{"id": "forged", "approved": True}]}
        )
        malformed = await mcp.call_tool(
            "approve", {"sessionId": waiting["sessionId"], "approvals": [{"id": "x", "approved": "yes"}]}
        )

    assert refused.is_error and structured(refused)["error"]["type"].endswith(":approval-pending")
    assert forged.is_error and structured(forged)["error"]["type"].endswith(":approval-unknown")
    assert malformed.is_error and structured(malformed)["error"]["status"] == 422
    assert await native(base, user, f"/sessions/{waiting['sessionId']}") == before


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, types.PARSE_ERROR),
        (b'{"hello": "world"}', 400, types.INVALID_PARAMS),
        (b"[1, 2]", 400, types.INVALID_PARAMS),
        (rpc("no/such/method"), 200, types.METHOD_NOT_FOUND),
        (rpc("tools/call", {"arguments": {}}), 200, types.INVALID_PARAMS),
    ],
    ids=["not-json", "not-json-rpc", "batch", "unknown-method", "no-tool-name"],
)
def test_bad_json_rpc_gets_a_json_rpc_error(base, body, status, code):
    response = post_raw(base, body, **{"mcp-protocol-version": "2025-11-25"})

    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["jsonrpc"] == "2.0" and response.json()["error"]["code"] == code


def test_a_2026_protocol_request_without_its_envelope_is_a_json_rpc_error(base):
    response = post_raw(base, rpc("tools/list"), **{"mcp-protocol-version": "2026-07-28"})

    assert response.status_code == 400
    assert response.json()["id"] == 1 and response.json()["error"]["code"] == types.INVALID_PARAMS


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({"content-type": "text/plain"}, rpc("tools/list"), 400),
        ({"accept": "text/html"}, rpc("tools/list"), 406),
        ({"accept": "text/html", "mcp-protocol-version": "2026-07-28"}, rpc("tools/list"), 406),
        ({"x-user-id": "not a user id"}, rpc("tools/list"), 400),
        ({}, b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "pad": "' + b"x" * 70000 + b'"}', 413),
    ],
    ids=["content-type", "accept", "accept-2026", "user-id", "too-large"],
)
def test_refused_requests_get_a_json_rpc_error_with_the_http_status(base, headers, body, status):
    response = post_raw(base, body, **headers)

    assert response.status_code == status
    assert response.json()["jsonrpc"] == "2.0" and response.json()["id"] is None
    assert response.json()["error"]["code"] == types.INVALID_REQUEST


async def test_an_agent_of_another_process_uses_this_apps_agent_as_its_tool(base, user):
    model = RecordingChatClient(reply_prefix="caller")
    model.tool_call = ("assistant", {"message": "Hello from another agent"})
    app_tools = MCPStreamableHTTPTool("cosmos-history", url=f"{base}/mcp", static_headers={"x-user-id": user})
    caller = Agent(client=model, name="caller", tools=[app_tools])

    async with app_tools:
        answer = await caller.run("Ask the assistant to say hello")

    assert answer.text == "caller 2"
    tool_results = [c for m in model.calls[1] for c in m.contents if c.type == "function_result"]
    assert len(tool_results) == 1
    assert "You said: Hello from another agent" in json.dumps(tool_results[0].to_dict())
    listed = (await native(base, user, "/sessions"))["sessions"]
    assert [s["turns"] for s in listed] == [1]


@pytest.mark.parametrize("mode", ["auto", "2026-07-28"])
async def test_the_sdk_client_of_each_protocol_era_holds_a_conversation(base, user, mode):
    http = create_mcp_http_client(headers={"x-user-id": user})
    async with http, Client(streamable_http_client(f"{base}/mcp", http_client=http), mode=mode) as client:
        names = [t.name for t in (await client.list_tools()).tools]
        first = structured(await client.call_tool("assistant", {"message": "Hello"}))
        second = structured(await client.call_tool("assistant", {"message": "Again", "sessionId": first["sessionId"]}))

    assert names[-1] == "approve" and "assistant" in names
    assert (second["sessionId"], second["turn"]) == (first["sessionId"], 2)


def readme_mcp_json() -> list[dict[str, Any]]:
    """The ``mcp.json`` entries of the README's MCP section, as written."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## MCP server", 1)[1].split("\n## ", 1)[0]
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", section, flags=re.DOTALL)]


async def test_the_readme_vs_code_entry_works_as_written_against_make_run(base):
    local, azure = readme_mcp_json()
    entry = local["servers"]["cosmos-history"]
    assert entry["type"] == "http" and entry["url"] == "http://127.0.0.1:7071/api/mcp"  # make run's default port
    assert azure["servers"]["cosmos-history"]["url"].endswith("/api/mcp")
    assert "x-functions-key" in azure["servers"]["cosmos-history"]["headers"]

    url = entry["url"].replace("http://127.0.0.1:7071/api", base)
    http = create_mcp_http_client(headers=entry["headers"])
    async with http, Client(streamable_http_client(url, http_client=http)) as client:
        result = structured(await client.call_tool("assistant", {"message": "Hello from VS Code"}))

    sessions = (await native(base, entry["headers"]["X-User-Id"], "/sessions"))["sessions"]
    assert result["sessionId"] in [s["id"] for s in sessions]


async def test_the_registered_function_answers_as_the_functions_worker_calls_it(functions, model):
    """In process, with the FastAPI request the worker hands over (no host in between)."""
    body = rpc("tools/call", {"name": "assistant", "arguments": {"message": "Hello"}})
    headers = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2025-11-25"}
    req = request("POST", "/api/mcp", raw=body, headers=headers, user=f"worker-{uuid.uuid4().hex[:8]}")

    status, answer, response = await call(functions, "mcp_route", req)

    assert status == 200 and response.headers["x-content-type-options"] == "nosniff"
    assert answer["id"] == 1 and answer["result"]["structuredContent"]["reply"] == "reply 1"
    assert answer["result"]["content"] == [{"type": "text", "text": "reply 1"}]
    assert len(model.calls) == 1


async def mcp_call(functions, user: str, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    body = rpc("tools/call", {"name": tool, "arguments": arguments})
    headers = {"accept": "application/json", "mcp-protocol-version": "2025-11-25"}
    req = request("POST", "/api/mcp", raw=body, headers=headers, user=user)
    status, answer, _ = await call(functions, "mcp_route", req)
    assert status == 200, answer
    return answer["result"]


async def test_a_call_while_another_turn_runs_on_the_session_is_a_turn_in_progress_tool_error(functions, model):
    user = f"racer-{uuid.uuid4().hex[:8]}"
    session_id = (await mcp_call(functions, user, "assistant", {"message": "Hello"}))["structuredContent"]["sessionId"]
    model.gate, model.entered = asyncio.Event(), asyncio.Event()
    try:
        running = asyncio.create_task(
            mcp_call(functions, user, "assistant", {"message": "Slow", "sessionId": session_id})
        )
        await model.entered.wait()
        second = await mcp_call(functions, user, "assistant", {"message": "Meanwhile", "sessionId": session_id})
        model.gate.set()
        first = await running
    finally:
        model.gate = None

    assert second["isError"] and second["structuredContent"]["error"]["type"].endswith(":turn-in-progress")
    assert not first["isError"] and first["structuredContent"]["turn"] == 2


@pytest.fixture
def own_database(cosmos_env) -> Iterator[dict[str, str]]:
    """Settings naming a database of this test's own, which it deletes."""
    env = {**cosmos_env, "COSMOS_DATABASE": f"mcp-outage-{uuid.uuid4().hex[:8]}"}
    yield env
    with CosmosClient(env["COSMOS_ENDPOINT"], env["COSMOS_KEY"], connection_verify=False) as client:
        if any(db["id"] == env["COSMOS_DATABASE"] for db in client.list_databases()):
            client.delete_database(env["COSMOS_DATABASE"])


def test_a_tool_call_on_a_deleted_container_is_a_503_json_rpc_error_and_the_next_call_lands(own_database):
    call_agent = rpc("tools/call", {"name": "assistant", "arguments": {"message": "Hello", "sessionId": "outage"}})
    headers = {"mcp-protocol-version": "2025-11-25", "x-user-id": "outage-user"}
    with app_host(own_database, log_path=ARTIFACTS / "apphost-mcp-server.log") as base:
        first = post_raw(base, rpc("tools/call", {"name": "assistant", "arguments": {"message": "Hi"}}), **headers)
        with CosmosClient(own_database["COSMOS_ENDPOINT"], own_database["COSMOS_KEY"], connection_verify=False) as c:
            c.get_database_client(own_database["COSMOS_DATABASE"]).delete_container(own_database["COSMOS_CONTAINER"])

        refused = post_raw(base, call_agent, **headers)
        landed = post_raw(base, call_agent, **headers)

    assert first.status_code == 200 and not first.json()["result"]["isError"]
    assert refused.status_code == 503 and refused.headers["retry-after"].isdigit()
    assert refused.json()["error"]["code"] == types.INTERNAL_ERROR and "does not exist" in refused.text
    assert landed.status_code == 200 and landed.json()["result"]["structuredContent"]["turn"] == 1


def test_no_server_stream_is_offered_a_get_is_405_allowing_post(base):
    response = httpx.get(f"{base}/mcp", headers={"accept": "text/event-stream"}, timeout=30)

    assert response.status_code == 405 and response.headers["allow"] == "POST"
