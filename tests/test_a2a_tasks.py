"""Reading A2A tasks back from a stored session (cosmos_history/http/a2a/tasks.py), on the memory adapter:
which turn starts a task, what it holds, and that a history it cannot count never yields another turn's task;
and the request handler never names a task after a turn another request made."""

from __future__ import annotations

import asyncio

import pytest
from a2a.server.context import ServerCallContext
from a2a.types import CancelTaskRequest, GetTaskRequest, Part, Role, SendMessageRequest, TaskState
from a2a.types import Message as A2AMessage
from a2a.utils.errors import InvalidParamsError, TaskNotCancelableError
from agent_framework import Message
from google.protobuf.json_format import MessageToDict

from cosmos_history.adapters.memory import MemorySessions, MemoryTurnLease, MemoryTurnLog
from cosmos_history.agents.catalog import build_agents
from cosmos_history.domain.archive import history_messages
from cosmos_history.domain.budget import HistoryBudget
from cosmos_history.domain.policy import HistoryPolicy
from cosmos_history.domain.results import TurnRequest
from cosmos_history.domain.service import Turns
from cosmos_history.domain.turn import TurnGuards
from cosmos_history.domain.turn_records import TurnRecord, request_json
from cosmos_history.http.a2a.handler import SessionTaskHandler
from cosmos_history.http.a2a.tasks import parse_task_id, read_task, stored_task, struct
from cosmos_history.http.calls import Call
from cosmos_history.settings import load_settings

from .fakes import RecordingChatClient

HANG_GUARD = 20  # seconds: only stops a broken test from hanging; nothing waits for it
REMINDER = '/schedule_reminder {"text": "call Ada", "at": "2026-12-01T09:00"}'


@pytest.fixture
def sessions() -> MemorySessions:
    """Ada's sessions in memory (named apart from conftest's ``store``, which is the Cosmos DB one)."""
    return MemorySessions(user_id="ada")


SETTINGS = load_settings({"MODEL_PROVIDER": "offline", "HISTORY_COMPACTION": "window"})
SMALL_DOCUMENTS = HistoryPolicy(budget=HistoryBudget(max_messages=4))
"""Documents of 4 messages, so a few turns already reach the archive."""


@pytest.fixture
def turns(sessions) -> Turns:
    return Turns(sessions, build_agents(SETTINGS), policy=SMALL_DOCUMENTS)


async def say(turns: Turns, text: str, **fields) -> None:
    await turns.run(TurnRequest("s", text, **fields), caller="ada")


def texts(task) -> list[str]:
    return [part.text for message in task.history for part in message.parts if part.text]


@pytest.mark.parametrize(
    ("value", "parsed"),
    [("s:1", ("s", 1)), ("a:b:12", ("a:b", 12)), ("s:0", None), ("s:x", None), ("s", None), (":1", None)],
)
def test_a_task_id_names_a_session_and_a_turn_from_one(value, parsed):
    assert parse_task_id(value) == parsed


def test_numbers_protobuf_cannot_hold_are_sent_as_their_digits():
    huge = 10**400

    assert MessageToDict(struct({"result": [huge, 2**53, 1.5, True]})) == {"result": [str(huge), 2.0**53, 1.5, True]}


async def test_each_message_turn_starts_a_task_and_an_approval_turn_continues_the_one_that_asked(sessions, turns):
    await say(turns, "Hello")
    waiting = await turns.run(TurnRequest("s", REMINDER), caller="ada")
    await turns.run(TurnRequest("s", "", approvals=((waiting.approvals[0].id, True),)), caller="ada")
    record = await sessions.load("s")

    first, reminder, answer = [await read_task(sessions, record, turn) for turn in (1, 2, 3)]

    assert answer is None and first is not None and reminder is not None
    assert (first.latest, reminder.latest) == (False, True)
    task = stored_task(reminder, record)
    assert texts(task)[0] == REMINDER and task.status.state == TaskState.TASK_STATE_COMPLETED
    assert task.artifacts[0].parts[0].text.endswith("Reminder 1 scheduled for 2026-12-01T09:00.")


async def test_a_turn_of_several_user_messages_counts_once(sessions, turns):
    await say(turns, "one")
    await say(turns, "two", inputs=(Message(role="user", contents=["and a half"]),))
    await say(turns, "three")
    record = await sessions.load("s")

    second, third = [stored_task(await read_task(sessions, record, turn), record) for turn in (2, 3)]

    assert texts(second)[:2] == ["two", "and a half"] and texts(third)[0] == "three"


async def test_turns_in_the_archive_are_read_from_it(sessions, turns):
    for text in ("one", "two", "three", "four"):
        await say(turns, text)
    record = await sessions.load("s")
    assert record.archive.count > 0

    assert [texts(stored_task(await read_task(sessions, record, n), record))[0] for n in (1, 2, 3, 4)] == [
        "one",
        "two",
        "three",
        "four",
    ]


async def test_a_history_with_a_removed_archive_chunk_never_yields_another_turns_messages(sessions, turns):
    words = ("one", "two", "three", "four", "five", "six")
    for text in words:
        await say(turns, text)
    record = await sessions.load("s")
    chunks = sorted(sessions.database.chunks)
    assert len(chunks) >= 2
    del sessions.database.chunks[chunks[-1]]  # as retention removes an expired chunk: a gap before the document

    read = {n: await read_task(sessions, record, n) for n in range(1, 7)}

    assert all(task is not None for task in read.values())
    found = {n: texts(stored_task(task, record))[0] for n, task in read.items() if task.messages is not None}
    assert found == {n: words[n - 1] for n in found} and found[6] == "six"
    assert {n for n, task in read.items() if task.messages is None} >= {1, 2}  # before the gap: state only
    assert {stored_task(task, record).status.state for task in read.values()} == {TaskState.TASK_STATE_COMPLETED}


async def test_no_task_is_read_beyond_the_latest_turn_or_before_the_first(sessions, turns):
    await say(turns, "one")
    record = await sessions.load("s")

    assert await read_task(sessions, record, 0) is None and await read_task(sessions, record, 2) is None


class RacingTurns(Turns):
    """The turn service, with another request's turn landing on the session right after its latest turn is read."""

    async def latest_turn(self, session_id: str, *, caller: str) -> int:
        latest = await super().latest_turn(session_id, caller=caller)
        await self.run(TurnRequest(session_id, "meanwhile"), caller=caller)
        return latest


async def test_a_streamed_message_racing_another_turn_is_refused_not_named_after_that_turn(sessions):
    racing = RacingTurns(sessions, build_agents(SETTINGS), policy=SMALL_DOCUMENTS)
    await racing.run(TurnRequest("s", "Hello"), caller="ada")
    call = Call(None, "ada", sessions, racing.agents, SETTINGS, racing)  # type: ignore[arg-type]  # no HTTP here
    sent = A2AMessage(role=Role.ROLE_USER, parts=[Part(text="Late")], message_id="m-late", context_id="s")
    handler = SessionTaskHandler(call, "assistant", [])

    with pytest.raises(InvalidParamsError, match="answered meanwhile"):
        [event async for event in handler.on_message_send_stream(SendMessageRequest(message=sent), ServerCallContext())]

    record = await sessions.load("s")
    assert record.turns == 2 and "Late" not in [m.text for m in history_messages(record.session.state)]


@pytest.fixture
def recorded(sessions) -> tuple[Turns, RecordingChatClient, SessionTaskHandler]:
    """Turns that keep turn records (as the runtime's do), on a model a test can hold mid-reply, and the
    A2A handler of ada's default agent over them."""
    model = RecordingChatClient()
    turns = Turns(
        sessions,
        build_agents(SETTINGS, model),
        TurnGuards(lease=MemoryTurnLease(sessions.database, seconds=30), model_timeout_seconds=30),
        log=MemoryTurnLog(sessions.database),
        flush_seconds=0.01,
        poll_seconds=0.01,
        policy=SMALL_DOCUMENTS,
    )
    call = Call(None, "ada", sessions, turns.agents, SETTINGS, turns)  # type: ignore[arg-type]  # no HTTP here
    return turns, model, SessionTaskHandler(call, turns.agents.default, [])


async def get(handler: SessionTaskHandler, task: str):
    return await handler.on_get_task(GetTaskRequest(id=task), ServerCallContext())


async def cancel(handler: SessionTaskHandler, task: str):
    return await handler.on_cancel_task(CancelTaskRequest(id=task), ServerCallContext())


async def test_a_queued_task_reads_submitted_and_cancel_task_ends_it_canceled(recorded):
    turns, _, handler = recorded
    await say(turns, "Hello")
    assert turns.log is not None
    await turns.log.put(TurnRecord("s", "ada", 2, "queued", request=request_json("later")))

    read = await get(handler, "s:2")
    cancelled = await cancel(handler, "s:2")

    assert read.status.state == TaskState.TASK_STATE_SUBMITTED
    assert (cancelled.id, cancelled.status.state) == ("s:2", TaskState.TASK_STATE_CANCELED)
    stored = await turns.log.find("s", "ada", 2)
    assert stored is not None and stored.status == "cancelled", "cancelled as the native route cancels"
    assert (await get(handler, "s:2")).status.state == TaskState.TASK_STATE_CANCELED
    with pytest.raises(TaskNotCancelableError):
        await cancel(handler, "s:2")


async def test_tasks_before_a_cancelled_turn_read_their_own_messages(recorded):
    turns, model, handler = recorded
    for text in ("one", "two"):
        await say(turns, text)
    model.reply_template, model.pause_after = "first second third", 1
    stream = await turns.stream(TurnRequest("s", "three"), caller="ada")
    async with asyncio.timeout(HANG_GUARD):
        await model.paused.wait()
    cancelled = await cancel(handler, "s:3")
    async with asyncio.timeout(HANG_GUARD):
        [event async for event in stream.events()]
    model.pause_after = None
    await say(turns, "four")

    read = {n: await get(handler, f"s:{n}") for n in (1, 2, 3, 4)}

    assert cancelled.status.state == TaskState.TASK_STATE_CANCELED
    assert read[3].status.state == TaskState.TASK_STATE_CANCELED and not read[3].history
    assert {n: texts(read[n])[0] for n in (1, 2, 4)} == {1: "one", 2: "two", 4: "four"}
