"""A2A tasks whose turn still runs: read back ``working`` and cancelled (``CancelTask``) from another app process
than the one streaming them, through the turn's record, with the ``a2a-sdk`` client over real sockets. Two
local hosts share the local Cosmos DB; the fake OpenAI service stops mid-reply until the cancel ends the turn."""

from __future__ import annotations

import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from a2a.client import A2ACardResolver, Client, ClientConfig, ClientFactory
from a2a.helpers import get_artifact_text
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
from a2a.utils.errors import TaskNotCancelableError, TaskNotFoundError

from .apphost import two_app_hosts
from .conftest import ARTIFACTS
from .fake_openai import FakeOpenAI

pytestmark = pytest.mark.integration

HANG_GUARD = 60  # events a stream may send before its first reply chunk (a wrong turn fails, never hangs)


@pytest.fixture(scope="module")
def hosts(cosmos_env, fake_model) -> Iterator[tuple[str, str]]:
    """Two app processes on the same Cosmos DB: "here" runs the streamed turns, "there" reads and cancels them."""
    with two_app_hosts({**cosmos_env, **fake_model.app_settings()}, logs=ARTIFACTS / "apphost-a2a-cancel") as both:
        yield both


@pytest.fixture
def user() -> str:
    return f"a2a-cancel-{uuid.uuid4().hex[:8]}"


@pytest.fixture(autouse=True)
def held_model(fake_model: FakeOpenAI) -> Iterator[None]:
    """Each streamed reply stops after its first piece, never released: only a cancel ends the turn."""
    fake_model.pause_after, fake_model.released = 1, threading.Event()
    yield
    fake_model.pause_after = None
    fake_model.released.set()


@asynccontextmanager
async def connected(base: str, user: str, *, streaming: bool = False) -> AsyncIterator[Client]:
    async with httpx.AsyncClient(headers={"x-user-id": user}, timeout=60) as http:
        card = await A2ACardResolver(http, f"{base}/a2a/assistant").get_agent_card()
        yield ClientFactory(ClientConfig(httpx_client=http, streaming=streaming)).create(card)


def text_message(text: str, *, context_id: str = "") -> Message:
    return Message(role=Role.ROLE_USER, parts=[Part(text=text)], message_id=uuid.uuid4().hex, context_id=context_id)


async def get(base: str, user: str, path: str) -> Any:
    async with httpx.AsyncClient(headers={"x-user-id": user}, timeout=30) as http:
        response = await http.get(f"{base}{path}")
    assert response.status_code == 200, response.text
    return response.json()


@asynccontextmanager
async def running_task(
    base: str, user: str, *, context_id: str = ""
) -> AsyncIterator[tuple[str, AsyncIterator[StreamResponse]]]:
    """A streamed message whose turn has sent its first reply chunk and then runs on (the model holds it):
    the task's id, and the rest of its stream."""
    sent = text_message("A long answer, please", context_id=context_id)
    async with connected(base, user, streaming=True) as client:
        stream = aiter(client.send_message(SendMessageRequest(message=sent)))
        first = await anext(stream)
        assert first.task.status.state == TaskState.TASK_STATE_WORKING, first
        for _ in range(HANG_GUARD):
            event = await anext(stream)
            if event.HasField("artifact_update"):
                break
        assert get_artifact_text(event.artifact_update.artifact), event
        yield first.task.id, stream


async def test_a_running_task_reads_working_on_another_instance(hosts, user):
    here, there = hosts
    async with running_task(here, user) as (task, stream), connected(there, user) as other:
        read = await other.get_task(GetTaskRequest(id=task))
        await other.cancel_task(CancelTaskRequest(id=task))  # lets the turn end
        [event async for event in stream]

    assert (read.id, read.context_id) == (task, task.rsplit(":", 1)[0])
    assert read.status.state == TaskState.TASK_STATE_WORKING


async def test_cancelling_a_running_task_from_another_instance_ends_its_stream_canceled(hosts, user):
    here, there = hosts
    async with running_task(here, user) as (task, stream), connected(there, user) as other:
        cancelled = await other.cancel_task(CancelTaskRequest(id=task))
        rest = [event async for event in stream]
        read = await other.get_task(GetTaskRequest(id=task))
        with pytest.raises(TaskNotCancelableError):
            await other.cancel_task(CancelTaskRequest(id=task))

    assert (cancelled.id, cancelled.status.state) == (task, TaskState.TASK_STATE_CANCELED)
    last = rest[-1].status_update
    assert (last.task_id, last.status.state) == (task, TaskState.TASK_STATE_CANCELED)
    assert read.status.state == TaskState.TASK_STATE_CANCELED and "cancelled" in read.status.message.parts[0].text
    native = await get(there, user, f"/sessions/{read.context_id}/turns/1")
    assert native["status"] == "cancelled", "the same cancel as the native route's"


async def test_the_context_of_a_canceled_task_takes_the_next_message(hosts, user, fake_model):
    here, there = hosts
    async with running_task(here, user) as (task, stream), connected(there, user) as other:
        await other.cancel_task(CancelTaskRequest(id=task))
        [event async for event in stream]
    context = task.rsplit(":", 1)[0]
    fake_model.pause_after = None

    async with connected(there, user) as client:
        answers = [
            a
            async for a in client.send_message(SendMessageRequest(message=text_message("And now?", context_id=context)))
        ]
    session = await get(there, user, f"/sessions/{context}")

    [answer] = answers
    assert answer.task.id == f"{context}:2" and answer.task.status.state == TaskState.TASK_STATE_COMPLETED
    assert [m["text"] for m in session["messages"] if m["role"] == "user"] == ["And now?"], (
        "the cancelled one is not kept"
    )


async def test_another_user_can_neither_read_nor_cancel_a_running_task(hosts, user):
    here, there = hosts
    async with running_task(here, user) as (task, stream):
        async with connected(there, f"someone-else-{user}") as intruder:
            with pytest.raises(TaskNotFoundError):
                await intruder.get_task(GetTaskRequest(id=task))
            with pytest.raises(TaskNotFoundError):
                await intruder.cancel_task(CancelTaskRequest(id=task))
        async with connected(there, user) as owner:
            still = await owner.get_task(GetTaskRequest(id=task))
            await owner.cancel_task(CancelTaskRequest(id=task))
        [event async for event in stream]

    assert still.status.state == TaskState.TASK_STATE_WORKING, "the intruder's cancel stopped nothing"


async def test_tasks_around_a_canceled_one_read_their_own_messages(hosts, user, fake_model):
    here, there = hosts
    fake_model.pause_after = None
    async with connected(there, user) as client:
        one = await send(client, text_message("one"))
        context = one.context_id
        await send(client, text_message("two", context_id=context))
    fake_model.pause_after = 1
    async with running_task(here, user, context_id=context) as (task, stream), connected(there, user) as other:
        await other.cancel_task(CancelTaskRequest(id=task))
        [event async for event in stream]
    fake_model.pause_after = None
    async with connected(there, user) as client:
        await send(client, text_message("four", context_id=context))
        read = {n: await client.get_task(GetTaskRequest(id=f"{context}:{n}")) for n in (1, 2, 3, 4)}

    assert task == f"{context}:3" and read[3].status.state == TaskState.TASK_STATE_CANCELED
    assert {n: first_text(read[n]) for n in (1, 2, 4)} == {1: "one", 2: "two", 4: "four"}


async def send(client: Client, message: Message) -> Task:
    [answer] = [a async for a in client.send_message(SendMessageRequest(message=message))]
    return answer.task


def first_text(task: Task) -> str:
    return task.history[0].parts[0].text
