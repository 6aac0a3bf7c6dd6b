"""A streamed turn's record is written alongside its model call (not before it, which cost the first token a
Cosmos DB round trip), yet the turn's stream, and so its address, goes out only once the record is stored,
and a record that cannot be stored fails the turn before its stream with nothing saved (#23)."""

from __future__ import annotations

import asyncio

import pytest

from cosmos_history.adapters.memory import MemoryDatabase, MemorySessions, MemoryTurnLog
from cosmos_history.domain.errors import StoreUnavailableError
from cosmos_history.domain.results import TurnRequest
from cosmos_history.domain.turn_records import TurnRecord

from .test_durable_turns import HANG_GUARD, USER, instance, live_events


class GatedLog(MemoryTurnLog):
    """A turn log whose first record write waits until the test opens ``gate`` (a slow Cosmos DB)."""

    def __init__(self, database: MemoryDatabase) -> None:
        super().__init__(database)
        self.gate = asyncio.Event()
        self.writing = asyncio.Event()
        self.puts = 0

    async def put(self, record: TurnRecord) -> TurnRecord:
        self.puts += 1
        if self.puts == 1:
            self.writing.set()
            await self.gate.wait()
        return await super().put(record)


class RefusingLog(MemoryTurnLog):
    """A turn log that cannot write a record (an outage right after the lease was claimed)."""

    async def put(self, record: TurnRecord) -> TurnRecord:
        raise StoreUnavailableError("injected outage")


@pytest.fixture
def database() -> MemoryDatabase:
    return MemoryDatabase()


async def test_the_model_is_called_while_the_record_is_written_and_the_stream_starts_once_it_is_stored(
    database, offline_model
):
    log = GatedLog(database)
    here, there = instance(database, offline_model, log=log), instance(database, offline_model)
    offline_model.reply_template, offline_model.pause_after = "one two", 1
    stream_task = asyncio.create_task(here.stream(TurnRequest("s1", "hello"), caller=USER))

    async with asyncio.timeout(HANG_GUARD):
        await log.writing.wait()
        await offline_model.entered.wait()  # the model call did not wait for the record's write
    assert not stream_task.done()  # no stream, no turn address, until the record is stored

    log.gate.set()
    async with asyncio.timeout(HANG_GUARD):
        stream = await stream_task
    assert stream.turn == 1
    assert (await there.read_turn("s1", 1, caller=USER))["status"] == "in_progress"
    offline_model.resume.set()
    assert [e for e in await live_events(stream) if "event: done" in e]
    assert (await there.read_turn("s1", 1, caller=USER))["status"] == "completed"


async def test_a_record_that_cannot_be_stored_fails_the_turn_before_its_stream_and_saves_nothing(
    database, offline_model
):
    turns = instance(database, offline_model, log=RefusingLog(database))

    with pytest.raises(StoreUnavailableError):
        await turns.stream(TurnRequest("s1", "hello"), caller=USER)

    assert await MemorySessions(database, user_id=USER).load("s1") is None
    assert database.turns == {} and database.event_batches == {}
    # The lease was given back at once: the next turn runs.
    assert (await instance(database, offline_model).run(TurnRequest("s1", "again"), caller=USER)).turn == 1
