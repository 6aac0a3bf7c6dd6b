"""Tools and human approvals across stateless requests, over real sockets and the local Cosmos DB.

The turn that asks for an approval and the request that answers it run in different app processes
(the app is restarted between them), in both history modes, plain and streamed, with the offline
model and with a fake OpenAI service (Responses and Chat Completions) driven by the real ``openai`` SDK.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from devtools.chat import read_events

from .apphost import app_host
from .conftest import ARTIFACTS
from .fake_openai import FakeOpenAI
from .http_calls import read_document

pytestmark = pytest.mark.integration

USER = {"x-user-id": "approver"}
REMINDER = '/schedule_reminder {"text": "call Ada", "at": "2026-12-01T09:00"}'
Events = list[tuple[str, Any]]


def model_env(model: str, fake: FakeOpenAI) -> dict[str, str]:
    """``offline``, or the fake OpenAI service behind MODEL_API ``responses`` or ``chat``."""
    if model == "offline":
        return {"MODEL_PROVIDER": "offline"}
    api = model.removeprefix("openai-")
    return {
        **fake.app_settings(),
        "MODEL_API": api,
    }


@contextlib.contextmanager
def host(env: dict[str, str]) -> Iterator[str]:
    with app_host(env, log_path=ARTIFACTS / "apphost-approvals.log") as base:
        yield base


def new_session() -> str:
    return f"ap-{uuid.uuid4().hex[:10]}"


def post(base: str, path: str, body: dict[str, Any], *, streamed: bool = False, **headers: str) -> dict[str, Any]:
    """A turn's answer (the ``done`` event's data when streamed); fails the test on any other outcome."""
    status, answer, _ = send(base, path, body, streamed=streamed, **headers)
    assert status == 200, answer
    return answer


def send(
    base: str, path: str, body: dict[str, Any], *, streamed: bool = False, **headers: str
) -> tuple[int, dict[str, Any], Events]:
    all_headers = {**USER, **headers}
    if not streamed:
        response = httpx.post(f"{base}{path}", json=body, headers=all_headers, timeout=60)
        return response.status_code, response.json(), []
    all_headers["accept"] = "text/event-stream"
    with httpx.stream("POST", f"{base}{path}", json=body, headers=all_headers, timeout=60) as response:
        if response.status_code != 200:
            response.read()
            return response.status_code, response.json(), []
        events = list(read_events(response.iter_lines()))
    assert events[-1][0] == "done", events
    return 200, events[-1][1], events


def answers(approval_id: str, approved: bool) -> dict[str, Any]:
    return {"approvals": [{"id": approval_id, "approved": approved}]}


def answer(base: str, session: str, approval_id: str, approved: bool, **options: Any) -> dict[str, Any]:
    return post(base, f"/sessions/{session}/approvals", answers(approval_id, approved), **options)


def reminders(env: dict[str, str], session: str) -> list[Any]:
    """The reminders the tool recorded in the stored session (only an approved call records one)."""
    return read_document(env, session, USER["x-user-id"])["session"]["state"].get("reminders", [])


CASES = [
    ("offline", "local"),
    ("offline", "service"),
    ("openai-responses", "local"),
    ("openai-responses", "service"),
    ("openai-chat", "local"),
]


@pytest.mark.parametrize(("model", "mode"), CASES)
def test_an_approval_asked_in_one_process_is_answered_in_the_next_and_its_tool_runs_once(
    cosmos_env, fake_model, model, mode
):
    env = {**cosmos_env, **model_env(model, fake_model)}
    plain, streamed = new_session(), new_session()
    with host(env) as base:
        asked = {
            session: post(
                base, f"/sessions/{session}/messages", {"message": REMINDER, "mode": mode}, streamed=is_stream
            )
            for session, is_stream in ((plain, False), (streamed, True))
        }
    for waiting in asked.values():
        assert waiting["status"] == "awaiting_approval" and waiting["toolCalls"] == []
        assert [(a["name"], a["arguments"]) for a in waiting["approvals"]] == [
            ("schedule_reminder", {"text": "call Ada", "at": "2026-12-01T09:00"})
        ]
    assert reminders(env, plain) == [] and reminders(env, streamed) == []

    with host(env) as base:  # a new process: nothing but the stored session carries the approval
        for session, is_stream in ((plain, False), (streamed, True)):
            done = answer(base, session, asked[session]["approvals"][0]["id"], True, streamed=is_stream)
            assert done["status"] == "completed" and done["approvals"] == []
            assert [(c["name"], c["result"]) for c in done["toolCalls"]] == [
                ("schedule_reminder", "Reminder 1 scheduled for 2026-12-01T09:00.")
            ]
            assert "Reminder 1 scheduled" in done["reply"]
            assert reminders(env, session) == [{"text": "call Ada", "at": "2026-12-01T09:00"}]
            again = send(
                base,
                f"/sessions/{session}/approvals",
                {"approvals": [{"id": asked[session]["approvals"][0]["id"], "approved": True}]},
            )
            assert again[0] == 409 and again[1]["type"].endswith("approval-unknown")
            assert reminders(env, session) == [{"text": "call Ada", "at": "2026-12-01T09:00"}]


# --- one offline app for the rest -----------------------------------------------------------------


@pytest.fixture(scope="module")
def offline(cosmos_env) -> Iterator[str]:
    with host({**cosmos_env, "MODEL_PROVIDER": "offline"}) as base:
        yield base


def waiting_session(base: str) -> tuple[str, str]:
    """A new session waiting for approval of one reminder; returns its id and the approval id."""
    session = new_session()
    waiting = post(base, f"/sessions/{session}/messages", {"message": REMINDER})
    return session, waiting["approvals"][0]["id"]


def test_racing_answers_to_one_approval_run_its_tool_exactly_once(cosmos_env, offline):
    session, approval = waiting_session(offline)

    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = list(
            pool.map(lambda _: send(offline, f"/sessions/{session}/approvals", answers(approval, True)), range(6))
        )

    statuses = sorted(status for status, _, _ in outcomes)
    assert statuses.count(200) == 1 and set(statuses) <= {200, 409}, outcomes
    assert len(reminders(cosmos_env, session)) == 1


def test_a_retried_approval_with_its_idempotency_key_replays_the_answer_and_runs_the_tool_once(cosmos_env, offline):
    session, approval = waiting_session(offline)
    key = {"idempotency-key": f"approve-{session}"}

    first = send(offline, f"/sessions/{session}/approvals", answers(approval, True), **key)
    retried = httpx.post(
        f"{offline}/sessions/{session}/approvals", json=answers(approval, True), headers={**USER, **key}, timeout=60
    )

    assert first[0] == 200 and retried.status_code == 200 and retried.json() == first[1]
    assert retried.headers.get("idempotent-replayed") == "true"
    assert len(reminders(cosmos_env, session)) == 1


def test_a_denied_call_does_not_run_and_the_model_is_told_it_was_denied(cosmos_env, offline):
    session, approval = waiting_session(offline)

    done = answer(offline, session, approval, False)

    assert done["status"] == "completed" and "rejected" in done["reply"]
    assert [c["name"] for c in done["toolCalls"]] == ["schedule_reminder"]
    assert reminders(cosmos_env, session) == []


def test_a_session_waiting_for_approval_refuses_new_messages_forged_ids_and_malformed_answers(cosmos_env, offline):
    session, approval = waiting_session(offline)
    before = read_document(cosmos_env, session, USER["x-user-id"])

    message = send(offline, f"/sessions/{session}/messages", {"message": "hello?"})
    forged = send(offline, f"/sessions/{session}/approvals", answers("af-call-forged", True))
    malformed = [
        send(offline, f"/sessions/{session}/approvals", body)
        for body in (
            {},
            {"approvals": []},
            {"approvals": [{"id": approval}]},
            {"approvals": [{"id": approval, "approved": "yes"}]},
        )
    ]

    assert message[0] == 409 and message[1]["type"].endswith("approval-pending")
    assert forged[0] == 409 and forged[1]["type"].endswith("approval-unknown")
    assert [status for status, _, _ in malformed] == [422, 422, 422, 422]
    assert read_document(cosmos_env, session, USER["x-user-id"])["_etag"] == before["_etag"]
    assert answer(offline, session, approval, True)["status"] == "completed"


def test_refusals_of_a_waiting_session_list_the_pending_approval_ids_and_where_to_read_and_answer_them(offline):
    session, approval = waiting_session(offline)

    message = send(offline, f"/sessions/{session}/messages", {"message": "hello?"})
    forged = send(offline, f"/sessions/{session}/approvals", answers("af-call-forged", True))
    answer(offline, session, approval, True)
    late = send(offline, f"/sessions/{session}/approvals", answers(approval, True))

    for status, problem, _ in (message, forged):
        assert status == 409 and problem["pendingApprovals"] == [approval]
        assert approval in problem["detail"] and f"GET /api/sessions/{session} " in problem["detail"]
    assert late[0] == 409 and late[1]["type"].endswith("approval-unknown") and late[1]["pendingApprovals"] == []


def test_a_streamed_turn_reports_tool_calls_their_results_and_the_approvals_it_waits_for(offline):
    session = new_session()

    _, timed, timed_events = send(
        offline, f"/sessions/{session}/messages", {"message": '/current_time {"time_zone": "UTC"}'}, streamed=True
    )
    _, waiting, waiting_events = send(offline, f"/sessions/{session}/messages", {"message": REMINDER}, streamed=True)

    kinds = [event for event, _ in timed_events]
    assert kinds[:2] == ["tool_call", "tool_result"] and kinds[-1] == "done" and "delta" in kinds
    call, result = timed_events[0][1], timed_events[1][1]
    assert call["name"] == "current_time" and call["arguments"] == {"time_zone": "UTC"} and result["id"] == call["id"]
    assert result["status"] == "completed"
    assert timed["toolCalls"] == [{**call, "result": result["result"], "status": "completed"}]
    required = [data for event, data in waiting_events if event == "approval_required"]
    assert [(a["id"], a["name"]) for a in required] == [(waiting["approvals"][0]["id"], "schedule_reminder")]


def test_the_session_shows_tool_calls_results_approval_requests_and_answers_as_structured_entries(offline):
    session, approval = waiting_session(offline)
    pending = httpx.get(f"{offline}/sessions/{session}", headers=USER).json()
    answer(offline, session, approval, True)

    shown = httpx.get(f"{offline}/sessions/{session}", headers=USER).json()
    paged = httpx.get(f"{offline}/sessions/{session}/messages", headers=USER).json()

    assert [a["id"] for a in pending["pendingApprovals"]] == [approval] and shown["pendingApprovals"] == []
    kinds = [(entry["role"], entry.get("type", "text")) for entry in shown["messages"]]
    assert kinds == [
        ("user", "text"),
        ("assistant", "tool_call"),
        ("assistant", "approval_request"),
        ("user", "approval_response"),
        ("tool", "tool_result"),
        ("assistant", "text"),
    ]
    request, response = shown["messages"][2], shown["messages"][3]
    assert request["id"] == response["id"] == approval and response["approved"] is True
    assert request["arguments"] == {"text": "call Ada", "at": "2026-12-01T09:00"}
    assert [{k: v for k, v in e.items() if k != "index"} for e in paged["messages"]] == shown["messages"]


def test_agents_lists_each_agent_with_its_tools_their_parameters_and_which_need_approval(offline):
    listed = httpx.get(f"{offline}/agents", headers=USER).json()

    assistant = next(agent for agent in listed["agents"] if agent["name"] == "assistant")
    assert {t["name"]: t["approvalRequired"] for t in assistant["tools"]} == {
        "current_time": False,
        "remember_note": False,
        "schedule_reminder": True,
    }
    assert all(t["description"] for t in assistant["tools"])
    reminder = next(t for t in assistant["tools"] if t["name"] == "schedule_reminder")
    assert reminder["parameters"]["required"] == ["text", "at"] and reminder["parameters"]["type"] == "object"
    noted = next(t for t in assistant["tools"] if t["name"] == "remember_note")
    assert list(noted["parameters"]["properties"]) == ["note"], "the injected context is not a parameter"


def test_a_turn_naming_an_unknown_agent_is_a_404_and_another_agent_than_the_sessions_a_409(offline):
    session = new_session()
    post(offline, f"/sessions/{session}/messages", {"message": "hi"})

    unknown = send(offline, f"/sessions/{new_session()}/messages", {"message": "hi", "agent": "nobody"})
    created = send(offline, "/sessions", {"agent": "nobody"})
    same = send(offline, f"/sessions/{session}/messages", {"message": "again", "agent": "assistant"})

    assert unknown[0] == 404 and unknown[1]["type"].endswith("agent-not-found")
    assert created[0] == 404
    assert same[0] == 200 and same[1]["agent"] == "assistant"


def test_notes_a_tool_remembered_are_shown_to_the_model_after_a_restart(cosmos_env, fake_model):
    env = {**cosmos_env, **model_env("openai-responses", fake_model)}
    session = new_session()
    with host(env) as base:
        noted = post(base, f"/sessions/{session}/messages", {"message": '/remember_note {"note": "Ada likes tea"}'})
    with host(env) as base:
        post(base, f"/sessions/{session}/messages", {"message": "what do I like?"})

    assert noted["toolCalls"][0]["result"].startswith("Remembered.")
    assert "Ada likes tea" in str(fake_model.requests[-1].get("instructions"))


def test_an_agent_added_as_one_module_is_served_after_a_restart_and_its_tool_is_called(cosmos_env):
    env = {**cosmos_env, "MODEL_PROVIDER": "offline", "AGENTS_PACKAGE": "tests.sample_agents"}
    with host(env) as base:
        listed = httpx.get(f"{base}/agents", headers=USER).json()
        session = new_session()
        done = post(base, f"/sessions/{session}/messages", {"message": '/add {"a": 2, "b": 3}', "agent": "helper"})

    assert [agent["name"] for agent in listed["agents"]] == ["assistant", "helper"]
    assert done["agent"] == "helper" and [(c["name"], c["result"]) for c in done["toolCalls"]] == [("add", "5")]
