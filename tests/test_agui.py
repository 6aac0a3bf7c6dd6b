"""The agents over AG-UI at /api/ag-ui/{agent}: the framework's ``AGUIChatClient`` (and plain SSE read with the
``ag-ui-protocol`` package's event types) against the local host (a separate process) and the local Cosmos DB."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from ag_ui.core import Event
from agent_framework import Agent, tool
from agent_framework_ag_ui import AGUIChatClient
from azure.cosmos import CosmosClient
from pydantic import TypeAdapter

from .apphost import ROOT, app_host
from .conftest import ARTIFACTS
from .http_calls import read_document

pytestmark = pytest.mark.integration

REMINDER = '/schedule_reminder {"text": "call Ada", "at": "2026-12-01T09:00"}'
EVENTS: TypeAdapter[Any] = TypeAdapter(Event)


@pytest.fixture(scope="module")
def env(cosmos_env) -> dict[str, str]:
    return {**cosmos_env, "MODEL_PROVIDER": "offline", "AGENTS_PACKAGE": "tests.sample_agents"}


@pytest.fixture(scope="module")
def base(env) -> Iterator[str]:
    with app_host(env, log_path=ARTIFACTS / "apphost-agui.log") as url:
        yield url


@pytest.fixture
def user() -> str:
    return f"agui-{uuid.uuid4().hex[:8]}"


def new_thread() -> str:
    return f"thread_{uuid.uuid4().hex}"


@asynccontextmanager
async def agui(base: str, user: str, agent: str = "assistant") -> AsyncIterator[AGUIChatClient]:
    """The framework's AG-UI client on the agent's endpoint, acting for ``user``."""
    async with httpx.AsyncClient(headers={"x-user-id": user}, timeout=60) as http:
        yield AGUIChatClient(endpoint=f"{base}/ag-ui/{agent}", http_client=http)


def on(thread: str, **options: Any) -> dict[str, Any]:
    """Chat options naming the AG-UI thread (the framework's client takes it from ``metadata.thread_id``)."""
    return {"metadata": {"thread_id": thread}, **options}


def run_events(base: str, user: str, body: dict[str, Any], agent: str = "assistant") -> list[Any]:
    """A run read as plain SSE; every event is validated against the protocol's own types."""
    headers = {"x-user-id": user, "accept": "text/event-stream"}
    with httpx.stream("POST", f"{base}/ag-ui/{agent}", json=body, headers=headers, timeout=60) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    return [EVENTS.validate_json(line.removeprefix("data: ")) for line in lines]


def run_error(response: Any) -> str:
    """The message of the ``RUN_ERROR`` a run of the framework's client ended with (it becomes an error content)."""
    (error,) = [c for m in response.messages for c in m.contents if c.type == "error"]
    return str(error.message)


def types(events: list[Any]) -> list[str]:
    return [event.type.value for event in events]


def native(base: str, user: str, path: str) -> Any:
    response = httpx.get(f"{base}{path}", headers={"x-user-id": user}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def reminders(env: dict[str, str], thread: str, user: str) -> list[dict[str, str]]:
    """The reminders the approval tool stored in the session (it appends one each time it runs)."""
    return read_document(env, thread, user)["session"]["state"].get("reminders", [])


async def test_three_runs_of_the_frameworks_client_hold_one_conversation_in_a_session_the_caller_lists(base, user):
    thread = new_thread()
    async with agui(base, user) as client:
        agent = Agent(client=client, name="remote")
        session = agent.create_session()  # the client side keeps its own copy and sends all of it each run
        answers = [
            await agent.run(text, session=session, options=on(thread))
            for text in ("Hello, I am Ada", "I like tea", "What did I say?")
        ]

    assert [a.additional_properties["result"]["turn"] for a in answers] == [1, 2, 3]
    # The server read only the new message each run: its stored session is the history the model saw.
    assert "I received 4 earlier messages with this one. You said: What did I say?" in answers[2].text
    assert [(s["id"], s["turns"]) for s in native(base, user, "/sessions")["sessions"]] == [(thread, 3)]


async def test_a_run_streams_the_reply_as_text_message_events_between_run_started_and_run_finished(base, user):
    thread = new_thread()
    events = run_events(
        base, user, {"threadId": thread, "runId": "run-1", "messages": [{"id": "m1", "role": "user", "content": "Hi"}]}
    )

    assert types(events)[0] == "RUN_STARTED" and (events[0].thread_id, events[0].run_id) == (thread, "run-1")
    assert types(events)[1] == "TEXT_MESSAGE_START" and types(events)[-2:] == ["TEXT_MESSAGE_END", "RUN_FINISHED"]
    text = "".join(e.delta for e in events if e.type.value == "TEXT_MESSAGE_CONTENT")
    assert text == "[offline demo model] I received 0 earlier messages with this one. You said: Hi"
    assert events[-1].outcome.type == "success" and events[-1].result["turn"] == 1


async def test_an_approval_interrupt_is_answered_with_resume_after_a_restart_and_its_tool_runs_exactly_once(env, user):
    thread = new_thread()
    with app_host(env, log_path=ARTIFACTS / "apphost-agui.log") as base:
        async with agui(base, user) as client:
            waiting = await client.get_response(REMINDER, options=on(thread))
    (pending,) = waiting.additional_properties["interrupts"]
    call = next(c for m in waiting.messages for c in m.contents if c.type == "function_call")
    assert waiting.additional_properties["outcome"]["type"] == "interrupt"
    assert pending["reason"] == "tool_call" and pending["toolCallId"] == call.call_id
    assert call.name == "schedule_reminder"
    assert json.loads(call.arguments) == {"text": "call Ada", "at": "2026-12-01T09:00"}
    assert pending["responseSchema"]["required"] == ["approved"]
    assert reminders(env, thread, user) == []

    resume = [{"interruptId": pending["id"], "status": "resolved", "payload": {"approved": True}}]
    with app_host(env, log_path=ARTIFACTS / "apphost-agui.log") as base:  # a new process: only Cosmos DB remembers
        async with agui(base, user) as client:
            done = await client.get_response([], options=on(thread, resume=resume))
            again = await client.get_response([], options=on(thread, resume=resume))

    results = [c.result for m in done.messages for c in m.contents if c.type == "function_result"]
    assert results == ["Reminder 1 scheduled for 2026-12-01T09:00."]
    assert done.additional_properties["result"] == {
        "sessionId": thread,
        "turn": 2,
        "status": "completed",
        "agent": "assistant",
    }
    assert run_error(again).startswith("No such pending approval:")
    assert reminders(env, thread, user) == [{"text": "call Ada", "at": "2026-12-01T09:00"}]


async def test_a_cancelled_interrupt_declines_the_call(env, base, user):
    thread = new_thread()
    async with agui(base, user) as client:
        waiting = await client.get_response(REMINDER, options=on(thread))
        (pending,) = waiting.additional_properties["interrupts"]
        declined = await client.get_response(
            [], options=on(thread, resume=[{"interruptId": pending["id"], "status": "cancelled"}])
        )

    assert declined.additional_properties["result"]["status"] == "completed"
    assert reminders(env, thread, user) == []


async def test_a_client_joining_a_thread_gets_its_history_as_a_messages_snapshot(base, user):
    thread = new_thread()
    async with agui(base, user) as client:
        await client.get_response("Hello, I am Ada", options=on(thread))
        await client.get_response("I like tea", options=on(thread))

    joined = run_events(base, user, {"threadId": thread, "runId": "join-1", "messages": []})

    assert types(joined) == ["RUN_STARTED", "MESSAGES_SNAPSHOT", "RUN_FINISHED"]
    shown = [(m.role, m.content) for m in joined[1].messages]
    assert [role for role, _ in shown] == ["user", "assistant", "user", "assistant"]
    assert shown[0] == ("user", "Hello, I am Ada") and shown[2] == ("user", "I like tea")
    assert joined[2].result["turn"] == 2 and joined[2].outcome.type == "success"
    assert native(base, user, "/sessions")["sessions"][0]["turns"] == 2  # joining ran no turn


async def test_joining_a_thread_that_waits_for_approval_finishes_with_its_interrupt(base, user):
    thread = new_thread()
    async with agui(base, user) as client:
        waiting = await client.get_response(REMINDER, options=on(thread))

    joined = run_events(base, user, {"threadId": thread, "runId": "join-2", "messages": []})

    (asked,) = waiting.additional_properties["interrupts"]
    (shown,) = joined[-1].outcome.interrupts
    assert (shown.id, shown.tool_call_id, shown.reason) == (asked["id"], asked["toolCallId"], "tool_call")
    assert joined[1].messages[-1].tool_calls[0].id == asked["toolCallId"]


async def test_a_client_without_the_history_sending_a_message_gets_the_snapshot_first(base, user):
    thread = new_thread()
    async with agui(base, user) as client:
        await client.get_response("Hello, I am Ada", options=on(thread))
    new = {"id": "mine", "role": "user", "content": "Again"}

    events = run_events(base, user, {"threadId": thread, "runId": "r-2", "messages": [new]})

    assert types(events)[:2] == ["RUN_STARTED", "MESSAGES_SNAPSHOT"]
    assert [m.id for m in events[1].messages][-1] == "mine" and len(events[1].messages) == 3
    assert events[-1].result["turn"] == 2


async def test_a_front_end_tool_runs_in_the_client_and_its_result_continues_the_turn(base, user):
    ran: list[str] = []

    @tool
    def pick_color(mood: str) -> str:
        """Pick a color for a mood (runs in the front end)."""
        ran.append(mood)
        return f"teal for {mood}"

    thread = new_thread()
    async with agui(base, user) as client:
        answer = await client.get_response('/pick_color {"mood": "calm"}', options=on(thread, tools=[pick_color]))

    assert ran == ["calm"]
    assert "pick_color returned teal for calm" in answer.text
    assert native(base, user, "/sessions")["sessions"][0]["turns"] == 2  # the call's turn, then its result's


async def test_another_user_gets_nothing_of_a_thread(env, base, user):
    thread = new_thread()
    async with agui(base, user) as client:
        waiting = await client.get_response(REMINDER, options=on(thread))
    (pending,) = waiting.additional_properties["interrupts"]
    before = read_document(env, thread, user)
    intruder = f"intruder-{user}"

    joined = run_events(base, intruder, {"threadId": thread, "runId": "peek", "messages": []})
    steal = [{"interruptId": pending["id"], "status": "resolved", "payload": {"approved": True}}]
    resumed = run_events(base, intruder, {"threadId": thread, "runId": "steal", "messages": [], "resume": steal})
    async with agui(base, intruder) as client:
        asked = await client.get_response("What was I told?", options=on(thread))

    assert types(joined) == ["RUN_STARTED", "RUN_FINISHED"] and joined[-1].result["turn"] == 0
    assert types(resumed) == ["RUN_STARTED", "RUN_ERROR"] and resumed[-1].code == "session-not-found"
    # Thread ids are per user: the same id names the intruder's own, new session, holding nothing of the owner's.
    assert "call Ada" not in asked.text and asked.additional_properties["result"]["turn"] == 1
    assert "call Ada" not in json.dumps(native(base, intruder, f"/sessions/{thread}/messages"))
    after = read_document(env, thread, user)
    assert (after["_etag"], after["session"]) == (before["_etag"], before["session"])
    assert reminders(env, thread, user) == []


async def test_a_thread_belongs_to_its_agent_a_run_of_another_is_a_run_error(base, user):
    thread = new_thread()
    async with agui(base, user) as client:
        await client.get_response("Hello", options=on(thread))
    again = {"threadId": thread, "runId": "other", "messages": [{"id": "m", "role": "user", "content": "Add 2 and 3"}]}

    refused = run_events(base, user, again, agent="helper")
    joined = run_events(base, user, {**again, "messages": []}, agent="helper")

    for events in (refused, joined):
        assert types(events) == ["RUN_STARTED", "RUN_ERROR"] and events[-1].code == "agent-mismatch"
    assert native(base, user, "/sessions")["sessions"][0]["turns"] == 1


def readme_snippet() -> str:
    """The Python block of the README's AG-UI section, as written."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Put a CopilotKit-style front end on them (AG-UI)", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    return block


def test_the_readme_snippet_works_as_written_against_make_run(base):
    snippet = readme_snippet()
    assert "http://127.0.0.1:7071/api/ag-ui/assistant" in snippet  # make run's default port

    run = subprocess.run(
        [sys.executable, "-c", snippet.replace("http://127.0.0.1:7071/api", base)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )

    assert run.returncode == 0, run.stderr[-2000:]
    said, scheduled = run.stdout.strip().splitlines()
    assert said.endswith("You said: Hello, I am Ada")
    assert "schedule_reminder returned Reminder 1 scheduled for 2026-12-01T09:00." in scheduled
    # Other README snippets run as ada too: her AG-UI thread is one of her sessions.
    assert "ada-first-thread" in [s["id"] for s in native(base, "ada", "/sessions")["sessions"]]


@pytest.fixture
def own_database(env) -> Iterator[dict[str, str]]:
    """Settings naming a database of this test's own, which it deletes."""
    own = {**env, "COSMOS_DATABASE": f"agui-outage-{uuid.uuid4().hex[:8]}"}
    yield own
    with CosmosClient(own["COSMOS_ENDPOINT"], own["COSMOS_KEY"], connection_verify=False) as client:
        if any(db["id"] == own["COSMOS_DATABASE"] for db in client.list_databases()):
            client.delete_database(own["COSMOS_DATABASE"])


def test_a_run_on_a_deleted_container_is_a_503_problem_and_the_next_run_lands(own_database):
    body = {"threadId": "outage", "runId": "r", "messages": [{"id": "m", "role": "user", "content": "Hi"}]}
    headers = {"x-user-id": "outage-user"}
    with app_host(own_database, log_path=ARTIFACTS / "apphost-agui.log") as base:
        first = run_events(base, "outage-user", {**body, "threadId": "before"})
        with CosmosClient(own_database["COSMOS_ENDPOINT"], own_database["COSMOS_KEY"], connection_verify=False) as c:
            c.get_database_client(own_database["COSMOS_DATABASE"]).delete_container(own_database["COSMOS_CONTAINER"])

        refused = httpx.post(f"{base}/ag-ui/assistant", json=body, headers=headers, timeout=60)
        landed = run_events(base, "outage-user", {**body, "runId": "r-2"})

    assert first[-1].result["turn"] == 1
    assert refused.status_code == 503 and refused.headers["retry-after"].isdigit()
    assert refused.headers["content-type"] == "application/problem+json"
    assert landed[-1].type.value == "RUN_FINISHED" and landed[-1].result["turn"] == 1


def test_the_official_typescript_client_holds_a_conversation_answers_an_interrupt_and_joins(env, base, user):
    """``@ag-ui/client``'s ``HttpAgent`` (what CopilotKit runs on) validates every event it reads."""
    thread = new_thread()
    run = subprocess.run(
        ["node", str(ROOT / "tests" / "agui_client" / "client.mjs"), f"{base}/ag-ui/assistant", thread, user],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert run.returncode == 0, "make agui-client installs @ag-ui/client\n" + run.stderr[-2000:]
    said, waiting, approved, joined = (json.loads(line) for line in run.stdout.splitlines())
    assert said["result"] == {"sessionId": thread, "turn": 1, "status": "completed", "agent": "assistant"}
    assert said["messages"][-1]["content"].endswith("You said: Hello from TypeScript")
    (interrupt,) = waiting["outcome"]["interrupts"]
    assert waiting["types"][-4:] == ["TOOL_CALL_START", "TOOL_CALL_ARGS", "TOOL_CALL_END", "RUN_FINISHED"]
    assert interrupt["toolCallId"] == waiting["messages"][-1]["toolCalls"][0]["id"]
    assert "TOOL_CALL_RESULT" in approved["types"] and approved["result"]["turn"] == 3
    assert reminders(env, thread, user) == [{"text": "call Ada", "at": "2026-12-01T09:00"}]
    assert joined["types"] == ["RUN_STARTED", "MESSAGES_SNAPSHOT", "RUN_FINISHED"]
    assert [m["content"] for m in joined["messages"] if m["role"] == "user"] == [
        "Hello from TypeScript",
        '/schedule_reminder {"text": "call Ada", "at": "2026-12-01T09:00"}',
    ]


def test_with_a_responses_api_model_the_interrupt_names_the_call_the_run_announced(cosmos_env, fake_model):
    """The Responses API gives a call an item id (``fc_…``, the approval's id) and a call id (``call_…``)."""
    env = {
        **cosmos_env,
        **fake_model.app_settings(),
        "MODEL_API": "responses",
    }
    thread, user = new_thread(), f"agui-{uuid.uuid4().hex[:8]}"
    ask = {"threadId": thread, "runId": "ask", "messages": [{"id": "m", "role": "user", "content": REMINDER}]}
    with app_host(env, log_path=ARTIFACTS / "apphost-agui.log") as base:
        waiting = run_events(base, user, ask)
        (interrupt,) = waiting[-1].outcome.interrupts
        answer = [{"interruptId": interrupt.id, "status": "resolved", "payload": {"approved": True}}]
        done = run_events(base, user, {"threadId": thread, "runId": "answer", "messages": [], "resume": answer})

    (started,) = [e for e in waiting if e.type.value == "TOOL_CALL_START"]
    assert started.tool_call_name == "schedule_reminder" and interrupt.tool_call_id == started.tool_call_id
    assert interrupt.id != interrupt.tool_call_id  # the approval's id is the item's, not the call's
    (result,) = [e for e in done if e.type.value == "TOOL_CALL_RESULT"]
    assert result.tool_call_id == started.tool_call_id and "Reminder 1 scheduled" in result.content
