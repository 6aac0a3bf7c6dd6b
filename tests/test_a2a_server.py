"""The app's agents as A2A agents at /api/a2a/{agent}: the ``a2a-sdk`` client and the framework's ``A2AAgent``
against the local host (a separate process) and the local Cosmos DB."""

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
from a2a.client import A2ACardResolver, Client, ClientConfig, ClientFactory
from a2a.helpers import get_artifact_text, get_data_parts
from a2a.types import (
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    StreamResponse,
    Task,
    TaskState,
)
from a2a.utils.errors import (
    InvalidParamsError,
    TaskNotCancelableError,
    TaskNotFoundError,
    UnsupportedOperationError,
)
from agent_framework import Content
from agent_framework import Message as AgentMessage
from agent_framework.a2a import A2AAgent
from google.protobuf.json_format import MessageToDict, ParseDict
from google.protobuf.struct_pb2 import Value

from cosmos_history.http.a2a.handler import NEW_CONTEXTS

from .apphost import ROOT, app_host
from .conftest import ARTIFACTS

pytestmark = pytest.mark.integration

REMINDER = '/schedule_reminder {"text": "call Ada", "at": "2026-12-01T09:00"}'


@pytest.fixture(scope="module")
def base(cosmos_env) -> Iterator[str]:
    with app_host({**cosmos_env, "MODEL_PROVIDER": "offline"}, log_path=ARTIFACTS / "apphost-a2a.log") as url:
        yield url


@pytest.fixture
def user() -> str:
    return f"a2a-{uuid.uuid4().hex[:8]}"


@asynccontextmanager
async def connected(base: str, user: str, *, streaming: bool = False) -> AsyncIterator[Client]:
    """An a2a-sdk client of the default agent, made from its card, acting for ``user``."""
    async with httpx.AsyncClient(headers={"x-user-id": user}, timeout=60) as http:
        card = await A2ACardResolver(http, f"{base}/a2a/assistant").get_agent_card()
        client = ClientFactory(ClientConfig(httpx_client=http, streaming=streaming)).create(card)
        yield client


def text_message(text: str, *, context_id: str = "", task_id: str = "") -> Message:
    return Message(
        role=Role.ROLE_USER,
        parts=[Part(text=text)],
        message_id=uuid.uuid4().hex,
        context_id=context_id,
        task_id=task_id,
    )


def approvals_message(answers: list[dict[str, Any]], *, task_id: str) -> Message:
    data = Part(data=ParseDict({"approvals": answers}, Value()))
    return Message(role=Role.ROLE_USER, parts=[data], message_id=uuid.uuid4().hex, task_id=task_id)


async def send(client: Client, message: Message) -> Task:
    """The task a (non-streaming) message answers with."""
    answers = [item async for item in client.send_message(SendMessageRequest(message=message))]
    assert len(answers) == 1 and answers[0].HasField("task"), answers
    return answers[0].task


def reply(task: Task) -> str:
    return "".join(get_artifact_text(a) for a in task.artifacts)


def waiting_approvals(task: Task) -> list[dict[str, Any]]:
    assert task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED, task
    data = get_data_parts(task.status.message.parts)
    assert len(data) == 1, task.status.message
    return data[0]["approvals"]


async def native(base: str, user: str, path: str) -> Any:
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.get(f"{base}{path}", headers={"x-user-id": user})
    assert response.status_code == 200, response.text
    return response.json()


async def test_the_card_names_the_agent_its_tools_as_skills_and_the_endpoint_it_was_read_from(base, user):
    async with httpx.AsyncClient(headers={"x-user-id": user}) as http:
        card = await A2ACardResolver(http, f"{base}/a2a/assistant").get_agent_card()
    agent = next(a for a in (await native(base, user, "/agents"))["agents"] if a["name"] == "assistant")

    assert (card.name, card.description) == (agent["name"], agent["description"])
    assert [(s.id, s.description) for s in card.skills] == [(t["name"], t["description"]) for t in agent["tools"]]
    approval = {s.id for s in card.skills if "approval-required" in s.tags}
    assert approval == {t["name"] for t in agent["tools"] if t["approvalRequired"]} == {"schedule_reminder"}
    [interface] = card.supported_interfaces
    assert (interface.url, interface.protocol_binding, interface.protocol_version) == (
        f"{base}/a2a/assistant",
        "JSONRPC",
        "1.0",
    )
    assert card.capabilities.streaming and not card.capabilities.push_notifications


async def test_three_messages_on_one_context_hold_one_conversation_the_caller_lists(base, user):
    async with connected(base, user) as client:
        first = await send(client, text_message("Hello, I am Ada"))
        context = first.context_id
        second = await send(client, text_message("I like tea", context_id=context))
        third = await send(client, text_message("What did I say?", context_id=context))

    assert [t.id for t in (first, second, third)] == [f"{context}:1", f"{context}:2", f"{context}:3"]
    assert {t.status.state for t in (first, second, third)} == {TaskState.TASK_STATE_COMPLETED}
    assert "I received 4 earlier messages" in reply(third)  # the two turns before it, both sides
    listed = (await native(base, user, "/sessions"))["sessions"]
    assert [(s["id"], s["turns"], s["agent"]) for s in listed] == [(context, 3, "assistant")]


async def test_a_streamed_message_sends_the_task_then_its_reply_in_chunks_then_completed(base, user):
    async with connected(base, user, streaming=True) as client:
        events: list[StreamResponse] = [
            event async for event in client.send_message(SendMessageRequest(message=text_message("Tell me more")))
        ]
        first = events[0].task
        stored = await client.get_task(GetTaskRequest(id=first.id))

    assert first.status.state == TaskState.TASK_STATE_WORKING and first.id == f"{first.context_id}:1"
    chunks = [e.artifact_update for e in events if e.HasField("artifact_update")]
    assert len(chunks) > 1 and not chunks[0].append and all(c.append for c in chunks[1:])
    streamed = "".join(get_artifact_text(c.artifact) for c in chunks)
    assert streamed == "[offline demo model] I received 0 earlier messages with this one. You said: Tell me more"
    last = events[-1].status_update
    assert (last.task_id, last.status.state) == (first.id, TaskState.TASK_STATE_COMPLETED)
    assert (stored.status.state, reply(stored)) == (TaskState.TASK_STATE_COMPLETED, streamed)


async def test_a_retried_message_replays_its_task_instead_of_running_another_turn(base, user):
    first = text_message("Hello, I am Ada")
    async with connected(base, user) as client:
        started = await send(client, first)
        retried = await send(client, first)  # a context-less message: its retry finds the session it started
        second = text_message("I like tea", context_id=started.context_id)
        answered = await send(client, second)
        again = await send(client, second)
        reused = text_message("Something else", context_id=started.context_id)
        reused.message_id = second.message_id
        with pytest.raises(InvalidParamsError, match="already used with a different request"):
            await send(client, reused)

    assert (retried.id, reply(retried)) == (started.id, reply(started))
    assert (again.id, reply(again)) == (answered.id, reply(answered)) and answered.id == f"{started.context_id}:2"
    listed = (await native(base, user, "/sessions"))["sessions"]
    assert [(s["id"], s["turns"]) for s in listed] == [(started.context_id, 2)]


async def test_a_retried_streamed_message_replays_the_task_it_made_after_the_conversation_moved_on(base, user):
    async with connected(base, user, streaming=True) as client:
        hello = [e async for e in client.send_message(SendMessageRequest(message=text_message("Hello")))]
        context = hello[0].task.context_id
        tea = text_message("I like tea", context_id=context)
        made = [e async for e in client.send_message(SendMessageRequest(message=tea))]
        [e async for e in client.send_message(SendMessageRequest(message=text_message("More", context_id=context)))]
        replayed = [e async for e in client.send_message(SendMessageRequest(message=tea))]

    def streamed(events: list[StreamResponse]) -> tuple[str, str]:
        chunks = [get_artifact_text(e.artifact_update.artifact) for e in events if e.HasField("artifact_update")]
        return events[0].task.id, "".join(chunks)

    assert streamed(replayed) == streamed(made) and streamed(made)[0] == f"{context}:2"
    assert replayed[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED
    assert (await native(base, user, f"/sessions/{context}"))["turns"] == 3


async def test_a_message_without_context_never_continues_a_conversation_its_id_does_not_hold(base, user):
    """The session a context-less message starts is named by its messageId: were that session there already,
    without the message (its key forgotten, as after the replay window), the message is refused."""
    message = text_message("Hello")
    named = str(uuid.uuid5(NEW_CONTEXTS, message.message_id))
    async with httpx.AsyncClient(headers={"x-user-id": user}, timeout=60) as http:
        told = await http.post(f"{base}/sessions/{named}/messages", json={"message": "My secret is Ada"})
    assert told.status_code == 200, told.text
    before = await native(base, user, f"/sessions/{named}")

    async with connected(base, user) as client:
        with pytest.raises(InvalidParamsError, match="give each message an id of its own"):
            await send(client, message)

    assert await native(base, user, f"/sessions/{named}") == before


async def test_a_task_is_read_back_from_the_session_by_another_instance(base, cosmos_env, user):
    async with connected(base, user) as client:
        first = await send(client, text_message("Hello, I am Ada"))
        await send(client, text_message("I like tea", context_id=first.context_id))
    with app_host({**cosmos_env, "MODEL_PROVIDER": "offline"}, log_path=ARTIFACTS / "apphost-a2a.log") as other:
        async with connected(other, user) as client:
            again = await client.get_task(GetTaskRequest(id=first.id))
            latest = await client.get_task(GetTaskRequest(id=f"{first.context_id}:2", history_length=1))

    assert (again.id, again.context_id, again.status.state) == (first.id, first.context_id, first.status.state)
    assert reply(again) == reply(first)
    assert [(m.role, m.parts[0].text) for m in again.history] == [
        (Role.ROLE_USER, "Hello, I am Ada"),
        (Role.ROLE_AGENT, reply(first)),
    ]
    assert "I received 2 earlier messages" in reply(latest) and len(latest.history) == 1


async def test_a_task_whose_turn_moved_to_the_archive_is_read_back_from_it(cosmos_env, user):
    env = {**cosmos_env, "MODEL_PROVIDER": "offline", "MAX_HISTORY_MESSAGES": "4", "HISTORY_COMPACTION": "window"}
    with app_host(env, log_path=ARTIFACTS / "apphost-a2a.log") as small:
        async with connected(small, user) as client:
            first = await send(client, text_message("Hello, I am Ada"))
            for text in ("one", "two", "three", "four"):
                await send(client, text_message(text, context_id=first.context_id))
            again = await client.get_task(GetTaskRequest(id=first.id))
            third = await client.get_task(GetTaskRequest(id=f"{first.context_id}:3"))
        session = await native(small, user, f"/sessions/{first.context_id}")

    assert session["archivedMessages"] >= 4 and session["turns"] == 5
    assert (again.status.state, reply(again)) == (TaskState.TASK_STATE_COMPLETED, reply(first))
    assert again.history[0].parts[0].text == "Hello, I am Ada"
    assert third.history[0].parts[0].text == "two" and reply(third).endswith("You said: two")


async def test_an_approval_round_trip_goes_through_input_required_and_runs_the_tool_once(base, user):
    async with connected(base, user) as client:
        waiting = await send(client, text_message(REMINDER))
        [pending] = waiting_approvals(waiting)
        read_back = await client.get_task(GetTaskRequest(id=waiting.id))
        answer = [{"id": pending["id"], "approved": True}]
        done = await send(client, approvals_message(answer, task_id=waiting.id))
        stored = await native(base, user, f"/sessions/{waiting.context_id}")
        with pytest.raises(UnsupportedOperationError):
            await send(client, approvals_message(answer, task_id=waiting.id))
        after = await client.get_task(GetTaskRequest(id=waiting.id))
        with pytest.raises(TaskNotFoundError):  # the turn that answered continued the task: it is no task of its own
            await client.get_task(GetTaskRequest(id=f"{waiting.context_id}:2"))

    assert (pending["tool"], pending["arguments"]) == (
        "schedule_reminder",
        {"text": "call Ada", "at": "2026-12-01T09:00"},
    )
    assert waiting_approvals(read_back) == [pending]
    assert (done.id, done.status.state) == (waiting.id, TaskState.TASK_STATE_COMPLETED)
    assert reply(done) == "[offline demo model] schedule_reminder returned Reminder 1 scheduled for 2026-12-01T09:00."
    calls = MessageToDict(done.metadata)["toolCalls"]
    assert [(c["tool"], c["result"]) for c in calls] == [
        ("schedule_reminder", "Reminder 1 scheduled for 2026-12-01T09:00.")
    ]
    assert stored["turns"] == 2 and stored["pendingApprovals"] == []
    assert (after.status.state, reply(after)) == (TaskState.TASK_STATE_COMPLETED, reply(done))
    assert await native(base, user, f"/sessions/{waiting.context_id}") == stored


async def test_a_finished_task_cannot_be_cancelled_and_a_waiting_one_is_ended_by_declining(base, user):
    async with connected(base, user) as client:
        done = await send(client, text_message("Hello"))
        waiting = await send(client, text_message(REMINDER, context_id=done.context_id))
        before = await native(base, user, f"/sessions/{done.context_id}")
        with pytest.raises(TaskNotCancelableError):
            await client.cancel_task(CancelTaskRequest(id=done.id))
        with pytest.raises(TaskNotCancelableError):
            await client.cancel_task(CancelTaskRequest(id=waiting.id))

    assert await native(base, user, f"/sessions/{done.context_id}") == before


async def test_another_user_gets_nothing_of_a_context_or_its_tasks(base, user):
    async with connected(base, user) as client:
        told = await send(client, text_message("My secret is Ada"))
        waiting = await send(client, text_message(REMINDER, context_id=told.context_id))
    [pending] = waiting_approvals(waiting)
    before = await native(base, user, f"/sessions/{told.context_id}")

    intruder = f"someone-else-{user}"
    async with connected(base, intruder) as client:
        for task in (told.id, waiting.id):
            with pytest.raises(TaskNotFoundError):
                await client.get_task(GetTaskRequest(id=task))
            with pytest.raises(TaskNotFoundError):
                await client.cancel_task(CancelTaskRequest(id=task))
        with pytest.raises(TaskNotFoundError):
            await send(client, approvals_message([{"id": pending["id"], "approved": True}], task_id=waiting.id))
        # Context ids are per user: the same id names the intruder's own, new session, holding nothing of the owner's.
        theirs = await send(client, text_message("What was I told?", context_id=told.context_id))

    assert "Ada" not in json.dumps(MessageToDict(theirs)) and "I received 0 earlier messages" in reply(theirs)
    assert await native(base, user, f"/sessions/{told.context_id}") == before


async def test_the_framework_a2a_agent_holds_a_multi_turn_conversation(base, user):
    async with httpx.AsyncClient(headers={"x-user-id": user}, timeout=60) as http:
        card = await A2ACardResolver(http, f"{base}/a2a/assistant").get_agent_card()
        agent = A2AAgent(agent_card=card, http_client=http)
        session = agent.create_session()
        first = await agent.run("Hello, I am Ada", session=session)
        second = await agent.run("I like tea", session=session)
        streamed = [update.text async for update in agent.run("What did I say?", session=session, stream=True)]

    assert first.text.endswith("You said: Hello, I am Ada")
    assert "I received 2 earlier messages" in second.text
    assert "I received 4 earlier messages" in "".join(streamed)
    context = session.service_session_id["context_id"]  # what the agent keeps of the remote conversation
    listed = (await native(base, user, "/sessions"))["sessions"]
    assert [(s["id"], s["turns"]) for s in listed] == [(context, 3)]


async def test_the_framework_a2a_agent_answers_an_approval_on_the_waiting_task(base, user):
    async with httpx.AsyncClient(headers={"x-user-id": user}, timeout=60) as http:
        card = await A2ACardResolver(http, f"{base}/a2a/assistant").get_agent_card()
        agent = A2AAgent(agent_card=card, http_client=http)
        session = agent.create_session()
        waiting = await agent.run(REMINDER, session=session)
        [request] = waiting.user_input_requests  # the task's input-required state, as the framework surfaces it
        asked = request.additional_properties["a2a_input_required_message"]
        [pending] = next(part["data"] for part in asked["parts"] if "data" in part)["approvals"]
        answer = json.dumps({"approvals": [{"id": pending["id"], "approved": True}]}).encode()
        answered = AgentMessage(role="user", contents=[Content.from_data(data=answer, media_type="application/json")])
        done = await agent.run(answered, session=session)

    assert pending["tool"] == "schedule_reminder" and f"schedule_reminder (approval id {pending['id']})" in request.text
    assert done.text == "[offline demo model] schedule_reminder returned Reminder 1 scheduled for 2026-12-01T09:00."
    stored = await native(base, user, f"/sessions/{session.service_session_id['context_id']}")
    assert stored["turns"] == 2 and stored["pendingApprovals"] == []


def readme_snippet() -> tuple[str, list[str]]:
    """The Python snippet of the README's A2A section, and the lines it says it prints."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Call them from another agent (A2A)", 1)[1].split("\n## ", 1)[0]
    [code] = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    return code, [line.removeprefix("# ") for line in code.splitlines() if line.startswith("# [")]


def test_the_readme_snippet_works_as_written_against_make_run(base):
    code, printed = readme_snippet()
    assert "http://127.0.0.1:7071/api/a2a/assistant" in code  # make run's default port

    run = subprocess.run(
        [sys.executable, "-c", code.replace("http://127.0.0.1:7071/api", base)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )

    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.splitlines() == printed and len(printed) == 2
