"""Addressable turns, their durable events and cancel, in process: the memory adapters (one database shared
by two turn services stands for two instances), the recording model, and a clock moved by hand for retention."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cosmos_history import build_agents, load_settings
from cosmos_history.adapters.memory import MemoryDatabase, MemorySessions, MemoryTurnLease, MemoryTurnLog
from cosmos_history.domain.errors import (
    EventsGoneError,
    SessionNotFoundError,
    StoreUnavailableError,
    TurnCancelledError,
    TurnFinishedError,
    TurnNotFoundError,
)
from cosmos_history.domain.results import TurnRequest
from cosmos_history.domain.service import Turns
from cosmos_history.domain.streaming import TurnStream
from cosmos_history.domain.supervisor import TurnSupervisor
from cosmos_history.domain.turn import TurnGuards
from cosmos_history.domain.turn_records import EventBatch, TurnRecord
from cosmos_history.http.sse import turn_events

from .clock import ManualClock
from .fakes import RecordingChatClient

USER = "alice"
HANG_GUARD = 20  # seconds: only stops a broken test from hanging; nothing waits for it


@pytest.fixture
def database() -> MemoryDatabase:
    return MemoryDatabase()


def instance(
    database: MemoryDatabase, offline_model: RecordingChatClient, *, log: MemoryTurnLog | None = None
) -> Turns:
    """One app instance: its own supervisor and agents, the shared database."""
    return Turns(
        MemorySessions(database, user_id=USER),
        build_agents(load_settings({}), offline_model),
        TurnGuards(lease=MemoryTurnLease(database, seconds=30), model_timeout_seconds=30),
        supervisor=TurnSupervisor(),
        log=log or MemoryTurnLog(database),
        flush_seconds=0.01,
        poll_seconds=0.01,
    )


async def live_events(stream: TurnStream) -> list[str]:
    async with asyncio.timeout(HANG_GUARD):
        return [event async for event in turn_events(stream)]


def parsed(encoded: list[str]) -> list[tuple[str, str, Any]]:
    """(id, name, data text) of each SSE event."""
    out = []
    for block in encoded:
        fields = dict(line.split(": ", 1) for line in block.strip().split("\n"))
        out.append((fields.get("id", ""), fields["event"], fields["data"]))
    return out


async def followed(turns: Turns, session: str, turn: int, after: int = 0) -> list[Any]:
    async with asyncio.timeout(HANG_GUARD):
        return [event async for event in await turns.follow(session, turn, caller=USER, after=after)]


async def test_a_plain_turn_writes_no_turn_record_and_no_events(database, offline_model):
    turns = instance(database, offline_model)

    result = await turns.run(TurnRequest("s1", "hello"), caller=USER)

    assert result.turn == 1 and database.turns == {} and database.event_batches == {}


async def test_a_plain_turn_is_read_from_the_session_document(database, offline_model):
    turns = instance(database, offline_model)
    await turns.run(TurnRequest("s1", "hello"), caller=USER)

    answer = await turns.read_turn("s1", 1, caller=USER)

    assert answer == {
        "sessionId": "s1",
        "reply": "reply 1",
        "turn": 1,
        "mode": "local",
        "agent": "assistant",
        "toolCalls": [],
        "approvals": [],
        "status": "completed",
        "reason": None,
        "recorded": False,
    }


async def test_a_turn_the_session_has_not_reached_is_not_found(database, offline_model):
    turns = instance(database, offline_model)
    await turns.run(TurnRequest("s1", "hello"), caller=USER)

    with pytest.raises(TurnNotFoundError):
        await turns.read_turn("s1", 2, caller=USER)


async def test_another_users_turn_is_not_found(database, offline_model):
    turns = instance(database, offline_model)
    stream = await turns.stream(TurnRequest("s1", "hello"), caller=USER)
    await live_events(stream)

    with pytest.raises(SessionNotFoundError):
        await turns.read_turn("s1", 1, caller="mallory")
    with pytest.raises(SessionNotFoundError):
        await turns.follow("s1", 1, caller="mallory", after=0)
    with pytest.raises(SessionNotFoundError):
        await turns.cancel("s1", 1, caller="mallory")


async def test_a_streamed_turn_stores_exactly_the_events_its_live_stream_sent(database, offline_model):
    turns = instance(database, offline_model)
    offline_model.reply_template = "one two three four"

    stream = await turns.stream(TurnRequest("s1", "hello"), caller=USER)
    live = parsed(await live_events(stream))
    await stream.result()

    stored = [(f"1:{e.seq}", e.name, e.data) for e in await followed(turns, "s1", 1)]
    assert [name for _, name, _ in live] == ["delta"] * 4 + ["done"]
    assert [(i, n) for i, n, _ in live] == [(i, n) for i, n, _ in stored]
    assert [i for i, _, _ in live] == ["1:1", "1:2", "1:3", "1:4", "1:5"]
    assert "".join(e[2]["text"] for e in stored if e[1] == "delta") == "one two three four"
    answer = await turns.read_turn("s1", 1, caller=USER)
    assert answer["status"] == "completed" and answer["reply"] == "one two three four"


async def test_a_running_streamed_turn_is_in_progress_on_another_instance(database, offline_model):
    here, there = instance(database, offline_model), instance(database, offline_model)
    offline_model.gate = asyncio.Event()
    stream_task = asyncio.create_task(here.stream(TurnRequest("s1", "hello"), caller=USER))
    await offline_model.entered.wait()

    assert (await there.read_turn("s1", 1, caller=USER))["status"] == "in_progress"
    offline_model.gate.set()
    await live_events(await stream_task)
    assert (await there.read_turn("s1", 1, caller=USER))["status"] == "completed"


async def test_a_resumed_stream_on_another_instance_gets_exactly_the_missing_events_then_done(database, offline_model):
    here, there = instance(database, offline_model), instance(database, offline_model)
    offline_model.reply_template = "alpha beta gamma delta epsilon"
    stream = await here.stream(TurnRequest("s1", "hello"), caller=USER)
    live = parsed(await live_events(stream))

    resumed = await followed(there, "s1", 1, after=2)

    assert [e.seq for e in resumed] == [3, 4, 5, 6]
    assert [(f"1:{e.seq}", e.name) for e in resumed] == [(i, n) for i, n, _ in live[2:]]
    assert resumed[-1].name == "done"


async def test_storing_events_never_holds_back_the_live_stream(database, offline_model):
    log = BlockedLog(database)
    turns = instance(database, offline_model, log=log)
    offline_model.reply_template = "one two"

    stream = await turns.stream(TurnRequest("s1", "hello"), caller=USER)
    async with asyncio.timeout(HANG_GUARD):
        names = []
        async for event in turn_events(stream):
            names.append(parsed([event])[0][1])
            if names[-1] == "done":
                break

    assert names == ["delta", "delta", "done"] and log.appended == 0, "done arrived while no batch could be stored"
    log.release.set()
    await stream.result()
    assert log.appended >= 1


class BlockedLog(MemoryTurnLog):
    """A turn log whose batch writes wait until the test releases them (a slow store)."""

    def __init__(self, database: MemoryDatabase) -> None:
        super().__init__(database)
        self.release = asyncio.Event()
        self.appended = 0

    async def append(self, record: TurnRecord, batch: EventBatch) -> None:
        await self.release.wait()
        await super().append(record, batch)
        self.appended += 1


async def test_events_past_their_retention_are_gone_while_the_turn_stays_readable(offline_model):
    clock = ManualClock()
    database = MemoryDatabase(clock=clock)
    turns = instance(database, offline_model, log=MemoryTurnLog(database, event_ttl_seconds=60))
    await live_events(await turns.stream(TurnRequest("s1", "hello"), caller=USER))

    clock.advance(61)

    with pytest.raises(EventsGoneError):
        await turns.follow("s1", 1, caller=USER, after=0)
    assert (await turns.read_turn("s1", 1, caller=USER))["status"] == "completed"


async def test_cancel_stops_a_running_turn_and_the_session_takes_the_next_message(database, offline_model):
    turns = instance(database, offline_model)
    stream = await _started_waiting(turns, offline_model)

    answer = await turns.cancel("s1", 1, caller=USER)

    events = parsed(await live_events(stream))
    assert answer["status"] == "cancelled" and "cancelled" in answer["reason"]
    assert events[-1][1] == "error" and "turn-cancelled" in events[-1][2]
    with pytest.raises(TurnCancelledError):
        await stream.result()
    session = await turns.repository.load("s1")
    assert session is not None and session.turns == 1, "the cancelled turn's number is used up"
    offline_model.pause_after = None
    result = await turns.run(TurnRequest("s1", "next"), caller=USER)
    assert result.turn == 2 and offline_model.texts(-1) == [("user", "next")], "the cancelled message was not kept"


async def test_cancel_from_another_instance_stops_the_turn_through_its_record(database, offline_model):
    here, there = instance(database, offline_model), instance(database, offline_model)
    stream = await _started_waiting(here, offline_model)

    answer = await there.cancel("s1", 1, caller=USER)

    assert answer["status"] == "cancelled"
    assert parsed(await live_events(stream))[-1][1] == "error"
    assert (await here.read_turn("s1", 1, caller=USER))["status"] == "cancelled"


async def test_cancelling_a_finished_turn_is_refused(database, offline_model):
    turns = instance(database, offline_model)
    await live_events(await turns.stream(TurnRequest("s1", "hello"), caller=USER))

    with pytest.raises(TurnFinishedError):
        await turns.cancel("s1", 1, caller=USER)
    assert (await turns.read_turn("s1", 1, caller=USER))["status"] == "completed"


async def test_a_queued_turn_is_cancelled_at_once(database, offline_model):
    turns, log = instance(database, offline_model), MemoryTurnLog(database)
    await log.put(TurnRecord("s1", USER, 1, "queued", request={"message": "later"}))

    answer = await turns.cancel("s1", 1, caller=USER)

    assert answer["status"] == "cancelled"
    stored = await log.find("s1", USER, 1)
    assert stored is not None and stored.status == "cancelled" and stored.request == {"message": "later"}


async def _started_waiting(turns: Turns, offline_model: RecordingChatClient, turn: int = 1) -> TurnStream:
    """A streamed turn whose model sent its first word and then waits (until the test resumes it)."""
    offline_model.reply_template, offline_model.pause_after = "first second third", 1
    offline_model.paused.clear()
    stream = await turns.stream(TurnRequest("s1", "hello"), caller=USER)
    assert stream.turn == turn
    async with asyncio.timeout(HANG_GUARD):
        await offline_model.paused.wait()
    return stream


async def test_a_queued_turn_keeps_its_record_and_attempt_when_it_runs_so_a_follower_goes_on(database, offline_model):
    turns = instance(database, offline_model)
    queued = await turns.log.put(TurnRecord("s1", USER, 1, "queued", request={"message": "later"}))  # type: ignore[union-attr]
    follower = asyncio.create_task(followed(turns, "s1", 1))  # started while the turn waits in its queue

    stream = await turns.stream(TurnRequest("s1", "later"), caller=USER, queued=queued)
    live = parsed(await live_events(stream))
    events = await follower

    stored = await turns.log.find("s1", USER, 1)  # type: ignore[union-attr]
    assert stored is not None and stored.attempt == queued.attempt and stored.status == "completed"
    assert stored.request == {"message": "later"}
    assert [(f"1:{e.seq}", e.name) for e in events] == [(i, n) for i, n, _ in live]


async def test_a_cancelled_later_turn_leaves_the_earlier_conversation_as_it_was(database, offline_model):
    turns = instance(database, offline_model)
    await turns.run(TurnRequest("s1", "first"), caller=USER)
    before = await turns.repository.load("s1")
    stream = await _started_waiting(turns, offline_model, turn=2)

    await turns.cancel("s1", 2, caller=USER)
    await live_events(stream)

    after = await turns.repository.load("s1")
    assert before is not None and after is not None and after.turns == 2
    assert after.session.to_dict()["state"] == before.session.to_dict()["state"], "the history is as before the turn"
    offline_model.pause_after = None
    assert (await turns.run(TurnRequest("s1", "third"), caller=USER)).turn == 3


async def test_a_batch_the_store_refused_goes_with_the_next_one_and_no_event_is_lost(database, offline_model):
    log = FlakyLog(database, failures=2)
    turns = instance(database, offline_model, log=log)
    offline_model.reply_template, offline_model.delay = "a b c d e f", 0.02

    live = parsed(await live_events(await turns.stream(TurnRequest("s1", "hello"), caller=USER)))

    stored = await followed(turns, "s1", 1)
    assert log.refused == 2
    assert [e.seq for e in stored] == list(range(1, len(live) + 1)) and stored[-1].name == "done"


class FlakyLog(MemoryTurnLog):
    """A turn log whose first batch writes fail (an outage)."""

    def __init__(self, database: MemoryDatabase, *, failures: int) -> None:
        super().__init__(database)
        self.failures, self.refused = failures, 0

    async def append(self, record: TurnRecord, batch: EventBatch) -> None:
        if self.refused < self.failures:
            self.refused += 1
            raise StoreUnavailableError("injected outage")
        await super().append(record, batch)


async def test_a_follower_that_misses_a_batch_written_as_the_turn_ends_still_gets_every_event(database, offline_model):
    log = LaggingLog(database, late_batch=2)
    turns = instance(database, offline_model, log=log)
    offline_model.reply_template, offline_model.delay = "a b c d e f", 0.02
    live = parsed(await live_events(await turns.stream(TurnRequest("s1", "hello"), caller=USER)))

    stored = await followed(turns, "s1", 1)

    assert log.lagged and (await log.find("s1", USER, 1)).batches >= 2  # type: ignore[union-attr]
    assert [e.seq for e in stored] == list(range(1, len(live) + 1)) and stored[-1].name == "done"


class LaggingLog(MemoryTurnLog):
    """A turn log whose first read of one batch comes too early: the batch lands, and the turn ends, just after."""

    def __init__(self, database: MemoryDatabase, *, late_batch: int) -> None:
        super().__init__(database)
        self.late_batch, self.lagged = late_batch, False

    async def batch(self, record: TurnRecord, number: int) -> EventBatch | None:
        if number == self.late_batch and not self.lagged:
            self.lagged = True
            return None
        return await super().batch(record, number)


async def test_a_turn_whose_process_died_reads_as_failed_and_its_follower_gets_turn_lost(database, offline_model):
    turns = instance(database, offline_model)
    await turns.log.put(TurnRecord("s1", USER, 1, "in_progress", streamed=True, deadline=1.0))  # type: ignore[union-attr]

    answer = await turns.read_turn("s1", 1, caller=USER)
    events = await followed(turns, "s1", 1)

    assert answer["status"] == "failed" and "stopped" in answer["reason"]
    assert [e.name for e in events] == ["error"] and events[0].data["slug"] == "turn-lost"
    with pytest.raises(TurnFinishedError):
        await turns.cancel("s1", 1, caller=USER)
