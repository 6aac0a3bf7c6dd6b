"""Sub-agents: an agent delegates to another agent of the app, each delegation a turn in a child session.

End to end over real sockets, the local Cosmos DB and the offline model (the shipped ``coordinator`` agent
delegates to ``assistant``); the approval asked inside the child is answered in another app process. In
process, with the memory adapters and the turn service, what is hard to reach over HTTP: a parent's save
failing after its child's turn landed, nesting without end, and start-up checks.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI

from cosmos_history import build_agents, load_settings
from cosmos_history.adapters.memory import MemoryDatabase, MemoryReplayCache, MemorySessions, MemoryTurnLease
from cosmos_history.agents.discovery import AgentLoadError
from cosmos_history.domain.approvals import pending_approvals
from cosmos_history.domain.delegation import MAX_DEPTH, children_of
from cosmos_history.domain.errors import SessionConflictError
from cosmos_history.domain.results import TurnRequest
from cosmos_history.domain.service import Turns
from cosmos_history.domain.turn import TurnGuards
from cosmos_history.models.offline import OfflineChatClient
from devtools.chat import read_events

from .apphost import app_host
from .conftest import ARTIFACTS
from .fakes import RecordingChatClient
from .faults import intercept
from .http_calls import read_document

USER = {"x-user-id": "delegator"}
REMINDER = {"text": "call Ada", "at": "2026-12-01T09:00"}
DELEGATE = "/ask_assistant " + json.dumps({"task": "/schedule_reminder " + json.dumps(REMINDER)})


def host(env: dict[str, str]) -> Any:
    return app_host(env, log_path=ARTIFACTS / "apphost-subagents.log")


def new_session() -> str:
    return f"sub-test-{uuid.uuid4().hex[:10]}"


def send(base: str, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    response = httpx.request(method, f"{base}{path}", json=body, headers=USER, timeout=60)
    return response.status_code, response.json()


def ok(base: str, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    status, answer = send(base, method, path, body)
    assert status == 200, answer
    return answer


def delegate(base: str, session: str) -> dict[str, Any]:
    return ok(base, "POST", f"/sessions/{session}/messages", {"message": DELEGATE, "agent": "coordinator"})


def reminders(env: dict[str, str], session: str) -> list[Any]:
    return read_document(env, session, USER["x-user-id"])["session"]["state"].get("reminders", [])


@pytest.mark.integration
def test_an_approval_inside_a_child_is_answered_through_the_parent_after_a_restart_and_its_tool_runs_once(cosmos_env):
    env = {**cosmos_env, "MODEL_PROVIDER": "offline"}
    parent = new_session()
    with host(env) as base:
        waiting = delegate(base, parent)
        shown = ok(base, "GET", f"/sessions/{parent}")
    [asked] = waiting["approvals"]
    child = asked["sessionId"]
    assert waiting["status"] == "awaiting_approval" and waiting["toolCalls"] == []
    assert (asked["name"], asked["arguments"]) == ("schedule_reminder", REMINDER)
    assert shown["children"] == [child] and shown["pendingApprovals"] == [asked]
    assert reminders(env, child) == []

    with host(env) as base:  # another process: only the stored sessions carry the delegation and its approval
        child_shown = ok(base, "GET", f"/sessions/{child}")
        approve = {"approvals": [{"id": asked["id"], "approved": True}]}
        done = ok(base, "POST", f"/sessions/{parent}/approvals", approve)
        again = send(base, "POST", f"/sessions/{parent}/approvals", approve)
        history = ok(base, "GET", f"/sessions/{parent}/messages")["messages"]
        after = ok(base, "GET", f"/sessions/{parent}")

    assert child_shown["agent"] == "assistant" and [a["id"] for a in child_shown["pendingApprovals"]] == [asked["id"]]
    assert done["status"] == "completed" and done["approvals"] == []
    [call] = done["toolCalls"]
    assert call["name"] == "ask_assistant"
    result = json.loads(call["result"])
    assert result["sessionId"] == child and "Reminder 1 scheduled for 2026-12-01T09:00." in result["reply"]
    assert again[0] == 409 and again[1]["type"].endswith("approval-unknown")
    assert reminders(env, child) == [REMINDER]
    assert after["children"] == [child] and after["pendingApprovals"] == []
    delegations = [e for e in history if e.get("type") == "tool_call" and e["name"] == "ask_assistant"]
    results = [e for e in history if e.get("type") == "tool_result" and e["callId"] == call["id"]]
    assert delegations and json.loads(results[-1]["result"])["sessionId"] == child


@pytest.fixture(scope="module")
def offline(cosmos_env) -> Iterator[str]:
    with host({**cosmos_env, "MODEL_PROVIDER": "offline"}) as base:
        yield base


@pytest.mark.integration
def test_racing_answers_to_a_childs_approval_run_its_tool_exactly_once(cosmos_env, offline):
    parent = new_session()
    [asked] = delegate(offline, parent)["approvals"]
    body = {"approvals": [{"id": asked["id"], "approved": True}]}

    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda _: send(offline, "POST", f"/sessions/{parent}/approvals", body), range(4)))

    assert sorted(status for status, _ in answers).count(200) == 1, answers
    assert all(status in (200, 409) for status, _ in answers), answers
    assert reminders(cosmos_env, asked["sessionId"]) == [REMINDER]


@pytest.mark.integration
def test_a_denied_approval_inside_a_child_never_runs_its_tool_and_the_parent_completes(cosmos_env, offline):
    parent = new_session()
    [asked] = delegate(offline, parent)["approvals"]

    done = ok(offline, "POST", f"/sessions/{parent}/approvals", {"approvals": [{"id": asked["id"], "approved": False}]})

    assert done["status"] == "completed" and done["toolCalls"][0]["name"] == "ask_assistant"
    assert reminders(cosmos_env, asked["sessionId"]) == []
    child = ok(offline, "GET", f"/sessions/{asked['sessionId']}")
    assert child["pendingApprovals"] == [] and child["turns"] == 2


@pytest.mark.integration
def test_a_parent_waiting_on_its_child_refuses_a_new_message_and_lists_the_childs_approval(offline):
    parent = new_session()
    [asked] = delegate(offline, parent)["approvals"]

    status, problem = send(offline, "POST", f"/sessions/{parent}/messages", {"message": "hello?"})

    assert status == 409 and problem["type"].endswith("approval-pending")
    assert problem["pendingApprovals"] == [asked["id"]]


@pytest.mark.integration
def test_the_childs_session_is_the_callers_and_unreachable_for_another_user(offline):
    parent = new_session()
    child = delegate(offline, parent)["approvals"][0]["sessionId"]

    mine = ok(offline, "GET", "/sessions?limit=100")["sessions"]
    theirs = httpx.get(f"{offline}/sessions/{child}", headers={"x-user-id": "someone-else"}, timeout=30)

    assert child in [s["id"] for s in mine]
    assert theirs.status_code == 404


# --- in process: the turn service over the memory adapters -----------------------------------------------


def memory_turns() -> tuple[Turns, MemorySessions]:
    database = MemoryDatabase()
    store = MemorySessions(database, user_id="u")
    guards = TurnGuards(lease=MemoryTurnLease(database), replays=MemoryReplayCache(database))
    return Turns(store, build_agents(load_settings({}), OfflineChatClient()), guards), store


async def test_a_parent_whose_save_failed_after_its_childs_turn_landed_reuses_the_child_on_retry():
    turns, store = memory_turns()
    waiting = await turns.run(TurnRequest("p", DELEGATE, agent="coordinator"), caller="u")
    [asked] = waiting.approvals
    answer = TurnRequest("p", "", approvals=[(asked.id, True)])

    with intercept(store, "save", failing_for("p")), pytest.raises(SessionConflictError):
        await turns.run(answer, caller="u")
    child = await store.load(asked.session_id or "")
    assert child is not None and child.session.state["reminders"] == [REMINDER]  # the child's turn landed

    done = await turns.run(answer, caller="u")

    child = await store.load(asked.session_id or "")
    assert done.status == "completed" and "Reminder 1 scheduled" in done.tool_calls[0].result
    assert child is not None and child.session.state["reminders"] == [REMINDER] and child.turns == 2


async def test_a_delegation_retried_after_a_lost_save_reaches_the_same_child_though_the_model_calls_anew():
    turns, store = memory_turns()
    ask = TurnRequest("p", "/ask_assistant " + json.dumps({"task": "hello"}), agent="coordinator")

    with intercept(store, "save", failing_for("p")), pytest.raises(SessionConflictError):
        await turns.run(ask, caller="u")
    done = await turns.run(ask, caller="u")  # the offline model issues the call again, with a new call id

    parent, stored = await store.load("p"), await store.list_sessions(limit=100, continuation_token=None)
    assert parent is not None and len(children_of(parent.session)) == 1
    assert sorted(s.id for s in stored.sessions) == sorted(["p", *children_of(parent.session)]), "no second child"
    child = await store.load(children_of(parent.session)[0])
    assert child is not None and child.turns == 1, "the child's turn was replayed, not run again"
    assert json.loads(done.tool_calls[0].result)["sessionId"] == child.id


def failing_for(session_id: str) -> Any:
    """A repository's ``save`` that loses ``session_id``'s writes (as a process killed before them would)."""

    def wrap(real: Any) -> Any:
        async def save(record: Any, **kwargs: Any) -> Any:
            if record.id == session_id:
                raise SessionConflictError("injected: the save is lost", retry_after=1)
            return await real(record, **kwargs)

        return save

    return wrap


async def test_each_delegation_call_has_its_own_child_and_the_parent_lists_them_in_order():
    turns, store = memory_turns()
    task = "/ask_assistant " + json.dumps({"task": "hello"})
    await turns.run(TurnRequest("p", task, agent="coordinator"), caller="u")
    await turns.run(TurnRequest("p", task, agent="coordinator"), caller="u")

    parent = await store.load("p")

    assert parent is not None and len(children_of(parent.session)) == 2
    for child_id in children_of(parent.session):
        child = await store.load(child_id)
        assert child is not None and child.agent == "assistant" and child.turns == 1


async def test_an_agent_delegating_to_itself_stops_at_the_nesting_limit(tmp_path: Path, monkeypatch):
    package = "selfish_agents"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / "assistant.py").write_text(
        "from agent_framework import Agent\nfrom cosmos_history.agents import delegate\n\n"
        "def create_agent(client):\n    return Agent(client=client, name='assistant', tools=[delegate('assistant')])\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    model = RecordingChatClient()
    model.tool_call = ("ask_assistant", {"task": "again"})
    store = MemorySessions(user_id="u")
    turns = Turns(store, build_agents(load_settings({"AGENTS_PACKAGE": package}), model))

    done = await turns.run(TurnRequest("p", "go"), caller="u")

    depth, session = 0, await store.load("p")
    while session is not None and children_of(session.session):
        depth, session = depth + 1, await store.load(children_of(session.session)[0])
    assert depth == MAX_DEPTH and done.status == "completed"
    assert session is not None and pending_approvals(session.session) == []
    innermost_result = next(r for m in model.calls for r in m[-1].contents if r.type == "function_result")
    assert "nest at most" in str(innermost_result.result)


def test_a_delegation_to_an_agent_the_app_lacks_is_a_start_up_error_naming_the_file(tmp_path: Path, monkeypatch):
    package = "misdelegating_agents"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / "boss.py").write_text(
        "from agent_framework import Agent\nfrom cosmos_history.agents import delegate\n\n"
        "def create_agent(client):\n    return Agent(client=client, name='boss', tools=[delegate('asistant')])\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    with pytest.raises(AgentLoadError) as raised:
        build_agents(load_settings({"AGENTS_PACKAGE": package, "DEFAULT_AGENT": "boss"}), RecordingChatClient())

    assert "boss.py" in str(raised.value) and "'asistant'" in str(raised.value)


@pytest.mark.integration
def test_a_streamed_parent_turn_reports_the_childs_approval_as_the_one_to_answer(offline):
    parent = new_session()
    headers = {**USER, "accept": "text/event-stream"}
    body = {"message": DELEGATE, "agent": "coordinator"}
    url = f"{offline}/sessions/{parent}/messages"
    with httpx.stream("POST", url, json=body, headers=headers, timeout=60) as answer:
        events = list(read_events(answer.iter_lines()))

    [(_, required)] = [(kind, data) for kind, data in events if kind == "approval_required"]
    [asked] = events[-1][1]["approvals"]
    assert events[-1][0] == "done" and required == {k: asked[k] for k in ("id", "name", "arguments")}
    assert asked["name"] == "schedule_reminder" and asked["sessionId"].startswith("sub-")


@pytest.mark.integration
def test_the_openai_endpoint_surfaces_a_childs_approval_and_its_answer_continues_the_delegation(cosmos_env, offline):
    client = OpenAI(base_url=f"{offline}/v1", api_key="unused", default_headers=USER)

    waiting = client.responses.create(model="coordinator", input=DELEGATE)
    [asked] = [item for item in waiting.output if item.type == "mcp_approval_request"]
    answer = {"type": "mcp_approval_response", "approval_request_id": asked.id, "approve": True}
    done = client.responses.create(model="coordinator", previous_response_id=waiting.id, input=[answer])

    assert asked.name == "schedule_reminder" and json.loads(asked.arguments) == REMINDER
    [call] = [item for item in done.output if item.type == "mcp_call"]
    child = json.loads(call.output or "{}")["sessionId"]
    assert call.name == "ask_assistant" and reminders(cosmos_env, child) == [REMINDER]


@pytest.mark.integration
def test_deleting_a_parent_deletes_its_child_sessions(offline):
    parent = new_session()
    child = delegate(offline, parent)["approvals"][0]["sessionId"]

    deleted = httpx.delete(f"{offline}/sessions/{parent}", headers=USER, timeout=30)

    assert deleted.status_code == 204
    assert send(offline, "GET", f"/sessions/{child}")[0] == 404
    assert send(offline, "GET", f"/sessions/{parent}")[0] == 404


async def test_a_retried_delegation_with_its_idempotency_key_replays_the_childs_approval_and_its_session():
    turns, store = memory_turns()
    first = await turns.run(TurnRequest("p", DELEGATE, agent="coordinator", idempotency_key="k-1"), caller="u")

    again = await turns.run(TurnRequest("p", DELEGATE, agent="coordinator", idempotency_key="k-1"), caller="u")

    parent = await store.load("p")
    assert again.replayed and again.approvals == first.approvals and first.approvals[0].session_id
    assert parent is not None and children_of(parent.session) == [first.approvals[0].session_id]


async def test_a_service_mode_parents_children_keep_no_text_either_and_their_approvals_work():
    turns, store = memory_turns()
    waiting = await turns.run(TurnRequest("p", DELEGATE, mode="service", agent="coordinator"), caller="u")
    [asked] = waiting.approvals

    done = await turns.run(TurnRequest("p", "", approvals=[(asked.id, True)]), caller="u")

    child = await store.load(asked.session_id or "")
    assert child is not None and child.mode == "service" and child.session.state["reminders"] == [REMINDER]
    assert done.status == "completed" and done.tool_calls[0].name == "ask_assistant"
