"""Streamed turns (SSE) and service-managed threads, end to end over real sockets: an httpx client
reading the stream as it arrives, the local host process, the real ``agent-framework-openai``
clients and ``openai`` SDK against the fake model service, and the local Cosmos DB."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from devtools.chat import read_events

from .apphost import ROOT, app_host
from .conftest import ARTIFACTS
from .fake_openai import request_texts
from .http_calls import COMPLETED, read_document

pytestmark = pytest.mark.integration

Events = list[tuple[str, Any]]


@pytest.fixture(scope="module")
def host(cosmos_env, fake_model) -> Iterator[Callable[[str], str]]:
    """The base URL of a local host using MODEL_API ``responses`` or ``chat``, each started once."""
    with contextlib.ExitStack() as stack:
        started: dict[str, str] = {}

        def base_url(api: str = "responses") -> str:
            if api not in started:
                env = {
                    **cosmos_env,
                    **fake_model.app_settings(),
                    "MODEL_API": api,
                }
                started[api] = stack.enter_context(app_host(env, log_path=ARTIFACTS / "apphost-streaming.log"))
            return started[api]

        yield base_url


def new_id(prefix: str = "st") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def stream_turn(base: str, session: str, message: str, *, via: str = "accept") -> tuple[httpx.Response, Events]:
    """One streamed turn, asked for with ``Accept: text/event-stream`` or ``"stream": true``."""
    body: dict[str, Any] = {"message": message}
    headers = {"accept": "text/event-stream"} if via == "accept" else {}
    if via == "body":
        body["stream"] = True
    with httpx.stream("POST", f"{base}/sessions/{session}/messages", json=body, headers=headers, timeout=30) as r:
        if r.status_code != 200:
            r.read()
            return r, []
        return r, list(read_events(r.iter_lines()))


def plain_turn(base: str, session: str, message: str) -> dict[str, Any]:
    response = httpx.post(f"{base}/sessions/{session}/messages", json={"message": message}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def turn(base: str, session: str, message: str, *, streamed: bool) -> dict[str, Any]:
    """One turn either way; returns the reply document (the ``done`` event's data when streamed)."""
    if not streamed:
        return plain_turn(base, session, message)
    response, events = stream_turn(base, session, message)
    assert response.status_code == 200 and events[-1][0] == "done", events
    return events[-1][1]


def deltas(events: Events) -> str:
    return "".join(data["text"] for name, data in events if name == "delta")


def stored_messages(base: str, session: str) -> list[tuple[str, str]]:
    body = httpx.get(f"{base}/sessions/{session}").json()
    return [(m["role"], m["text"]) for m in body["messages"]]


# --- streaming ---------------------------------------------------------------------------------


@pytest.mark.parametrize("api", ["responses", "chat"])
def test_the_streamed_reply_holds_its_text_exactly_once_in_deltas_done_and_storage(host, fake_model, api):
    base, session = host(api), new_id()

    response, events = stream_turn(base, session, "hello there")

    assert response.headers["content-type"].startswith("text/event-stream")
    assert [name for name, _ in events[-1:]] == ["done"] and all(name == "delta" for name, _ in events[:-1])
    done = events[-1][1]
    assert done["reply"].startswith("answer ") and done["reply"].endswith(" to: hello there")
    assert done["reply"].count("hello there") == 1
    assert deltas(events) == done["reply"]
    assert done == {"sessionId": session, "reply": done["reply"], "turn": 1, "mode": "local", **COMPLETED}
    assert stored_messages(base, session) == [("user", "hello there"), ("assistant", done["reply"])]


@pytest.mark.parametrize("via", ["accept", "body"])
def test_an_accept_header_or_stream_true_asks_for_a_stream(host, via):
    response, events = stream_turn(host(), new_id(), "stream please", via=via)

    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    assert events[-1][0] == "done" and deltas(events) == events[-1][1]["reply"]


def test_the_first_delta_arrives_before_the_model_has_finished(host, fake_model):
    fake_model.chunk_delay = 0.3
    finished_before = fake_model.streams_finished
    url = f"{host()}/sessions/{new_id()}/messages"

    with httpx.stream("POST", url, json={"message": "slowly", "stream": True}, timeout=30) as response:
        events = read_events(response.iter_lines())
        first = next(events)
        finished_at_first_delta = fake_model.streams_finished
        rest = list(events)

    assert first[0] == "delta" and first[1]["text"]
    assert finished_at_first_delta == finished_before, "the first delta must not wait for the whole reply"
    assert rest[-1][0] == "done" and fake_model.streams_finished == finished_before + 1


def test_a_client_leaving_mid_stream_does_not_lose_the_turn(host, fake_model):
    fake_model.chunk_delay = 0.3
    base, session = host(), new_id()

    with httpx.stream("POST", f"{base}/sessions/{session}/messages", json={"message": "bye", "stream": True}) as r:
        first = next(read_events(r.iter_lines()))
    assert first[0] == "delta"  # the client has gone: the stream is closed after one delta

    deadline = time.monotonic() + 15
    while (response := httpx.get(f"{base}/sessions/{session}")).status_code == 404 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert response.status_code == 200 and response.json()["turns"] == 1
    reply = stored_messages(base, session)[1][1]
    assert stored_messages(base, session) == [("user", "bye"), ("assistant", reply)]
    assert reply.startswith("answer ") and reply.endswith(" to: bye"), "the whole reply, not the part that was sent"


@pytest.mark.parametrize("api", ["responses", "chat"])
def test_a_model_failing_mid_stream_sends_an_error_event_and_saves_nothing(host, fake_model, cosmos_env, api):
    base, session = host(api), new_id()
    plain_turn(base, session, "first")
    before = read_document(cosmos_env, session)
    fake_model.fail_mid_stream = 1

    response, events = stream_turn(base, session, "second")

    assert response.status_code == 200 and events[0][0] == "delta", "the failure came after streaming started"
    name, problem = events[-1]
    assert name == "error" and problem["status"] == 502 and problem["type"].endswith(":model-error")
    assert "injected" not in json.dumps(problem)
    assert read_document(cosmos_env, session) == before


def test_errors_found_before_the_stream_starts_are_plain_problem_answers(host):
    base, session = host(), new_id()
    plain_turn(base, session, "a local session")
    sse = {"accept": "text/event-stream"}

    answers = {
        404: httpx.post(f"{base}/sessions/{new_id()}/messages", json={"message": "hi", "agent": "nobody"}, headers=sse),
        409: httpx.post(f"{base}/sessions/{session}/messages", json={"message": "hi", "mode": "service"}, headers=sse),
        422: httpx.post(f"{base}/sessions/{session}/messages", json={"message": "", "stream": True}),
    }

    for status, response in answers.items():
        assert response.status_code == status
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["status"] == status


# --- history modes against the same service, streamed and not ------------------------------------


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
def test_local_mode_sends_the_whole_history_with_store_false(host, fake_model, streamed):
    base, session = host(), new_id("loc")

    first = turn(base, session, "My name is Ada.", streamed=streamed)
    second = turn(base, session, "What is my name?", streamed=streamed)

    request = fake_model.requests[-1]
    assert request["store"] is False and not request.get("previous_response_id")
    assert request_texts(request) == ["My name is Ada.", first["reply"], "What is my name?"]
    assert stored_messages(base, session) == [
        ("user", "My name is Ada."),
        ("assistant", first["reply"]),
        ("user", "What is my name?"),
        ("assistant", second["reply"]),
    ]


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
def test_service_mode_hands_back_the_thread_id_and_sends_only_the_new_message(host, fake_model, cosmos_env, streamed):
    base, session = host(), new_id("svc")
    httpx.post(f"{base}/sessions", json={"id": session, "mode": "service"})

    turn(base, session, "remember heliotrope", streamed=streamed)
    turn_one_id = read_document(cosmos_env, session)["session"]["service_session_id"]
    turn(base, session, "which word?", streamed=streamed)

    request = fake_model.requests[-1]
    assert turn_one_id and request["previous_response_id"] == turn_one_id and request["store"] is True
    assert request_texts(request) == ["which word?"]
    stored = json.dumps(read_document(cosmos_env, session))
    assert "heliotrope" not in stored and "which word" not in stored and "answer" not in stored


def test_deleting_a_service_session_starts_a_fresh_thread(host, fake_model):
    base, session = host(), new_id("svc")
    httpx.post(f"{base}/sessions", json={"id": session, "mode": "service"})
    turn(base, session, "one", streamed=True)
    turn(base, session, "two", streamed=False)

    assert httpx.delete(f"{base}/sessions/{session}").status_code == 204
    again = plain_turn(base, session, "three")  # recreated, in the default (local) mode
    httpx.delete(f"{base}/sessions/{session}")
    httpx.post(f"{base}/sessions", json={"id": session, "mode": "service"})
    fresh = turn(base, session, "four", streamed=True)

    assert again["turn"] == 1 and fresh["turn"] == 1 and fresh["mode"] == "service"
    assert not fake_model.requests[-1].get("previous_response_id")


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("service_status", [404, 400])
def test_an_expired_thread_is_a_409_that_says_so_and_leaves_the_session_unchanged(
    host, fake_model, cosmos_env, service_status, streamed
):
    base, session = host(), new_id("exp")
    httpx.post(f"{base}/sessions", json={"id": session, "mode": "service"})
    turn(base, session, "hello", streamed=False)
    before = read_document(cosmos_env, session)
    fake_model.threads.pop(before["session"]["service_session_id"])  # the service forgot it
    fake_model.expired_status = service_status
    headers = {"accept": "text/event-stream"} if streamed else {}

    response = httpx.post(f"{base}/sessions/{session}/messages", json={"message": "still there?"}, headers=headers)

    assert response.status_code == 409
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["type"].endswith(":thread-expired") and "Retry-After" not in response.headers
    assert "new session" in problem["detail"] and "DELETE" in problem["detail"]
    assert read_document(cosmos_env, session) == before


# --- the terminal client -----------------------------------------------------------------------


def terminal(base: str, session: str, script: str, *options: str) -> subprocess.CompletedProcess[str]:
    """Run the terminal client on ``session`` with ``script`` as its input."""
    return subprocess.run(
        [sys.executable, "-m", "devtools.chat", "--url", base, "--session", session, "--user", "cli-user", *options],
        input=script,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


def test_the_terminal_client_streams_replies_and_runs_its_commands(host, fake_model):
    base = host().removesuffix("/api")
    session = new_id("cli")
    script = "Hello there\n/history\n/new\n/history\nAgain\n/quit\nnever sent\n"

    done = terminal(base, session, script)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"Session {session}. Commands: /new, /history, /quit"
    first_reply = lines[1].removeprefix("assistant> ")
    assert lines[1].startswith("assistant> answer ") and first_reply.endswith(" to: Hello there")
    assert lines[2:5] == ["(turn 1, completed)", "user: Hello there", f"assistant: {first_reply}"]
    assert lines[5].startswith("Session ") and lines[5] != lines[0]
    assert lines[6] == "(no messages yet)"
    assert (
        lines[7].startswith("assistant> answer ")
        and lines[7].endswith(" to: Again")
        and lines[8] == "(turn 1, completed)"
    )
    assert len(lines) == 9 and "never sent" not in json.dumps(fake_model.requests[-1])


def test_the_terminal_client_asks_y_or_n_for_a_tool_call_and_the_approved_tool_runs(host):
    base = host().removesuffix("/api")
    session = new_id("cli")
    script = '/schedule_reminder {"text": "tea", "at": "2026-12-01T16:00"}\nmaybe\ny\n/quit\n'

    done = terminal(base, session, script)

    assert done.returncode == 0, done.stderr
    asked = 'Allow schedule_reminder({"text": "tea", "at": "2026-12-01T16:00"})? [y/n] '
    assert done.stdout.count(asked) == 2  # "maybe" is asked again
    assert "(turn 1, awaiting approval)" in done.stdout
    assert "[tool result] Reminder 1 scheduled for 2026-12-01T16:00." in done.stdout
    assert "after tool: Reminder 1 scheduled" in done.stdout and "(turn 2, completed)" in done.stdout
    assert done.stdout.count("[tool] schedule_reminder(") == 1, "the continued turn does not repeat the call"


@pytest.fixture(scope="module")
def two_agents(cosmos_env) -> Iterator[str]:
    """A local host serving the sample agents (assistant and helper) with the offline model."""
    env = {**cosmos_env, "MODEL_PROVIDER": "offline", "AGENTS_PACKAGE": "tests.sample_agents"}
    with app_host(env, log_path=ARTIFACTS / "apphost-agents.log") as base:
        yield base.removesuffix("/api")


def test_the_terminal_client_talks_to_the_agent_named_by_agent_in_new_and_continued_sessions(two_agents):
    session = new_id("cli")

    done = terminal(two_agents, session, '/add {"a": 2, "b": 3}\n/new\nhi\n/quit\n', "--agent", "helper")

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"Session {session}, agent helper. Commands: /new, /history, /quit"
    assert '[tool] add({"a": 2, "b": 3})\n[tool result] 5\n' in done.stdout
    created = next(line for line in lines[1:] if line.startswith("Session "))
    assert created.endswith(", agent helper.")
    headers = {"x-user-id": "cli-user"}
    first = httpx.get(f"{two_agents}/api/sessions/{session}", headers=headers).json()
    second = httpx.get(f"{two_agents}/api/sessions/{created.split()[1].rstrip(',')}", headers=headers).json()
    assert first["agent"] == second["agent"] == "helper" and second["turns"] == 1


def test_the_terminal_client_without_agent_talks_to_the_default_agent(two_agents):
    session = new_id("cli")

    done = terminal(two_agents, session, '/add {"a": 2, "b": 3}\n/quit\n')

    assert done.returncode == 0, done.stderr
    assert "[tool]" not in done.stdout, "the default agent (assistant) has no add tool"
    stored = httpx.get(f"{two_agents}/api/sessions/{session}", headers={"x-user-id": "cli-user"}).json()
    assert stored["agent"] == "assistant"
