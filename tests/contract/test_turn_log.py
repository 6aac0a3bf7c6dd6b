"""The turn log (records of addressable turns and their event batches), held by every adapter to one contract."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest

from cosmos_history.domain.turn_records import EventBatch, StoredEvent, TurnRecord

pytestmark = pytest.mark.integration


@pytest.fixture
def user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


async def test_a_turn_number_is_created_once_and_reads_back(turn_log, session_id, user):
    first = TurnRecord(session_id, user, 1, "in_progress", agent="assistant", streamed=True)

    created = await turn_log.create(first)
    racer = await turn_log.create(TurnRecord(session_id, user, 1, "queued"))
    found = await turn_log.find(session_id, user, 1)

    assert created is not None and created.etag and racer is None
    assert found is not None and found.attempt == first.attempt
    assert (found.status, found.agent, found.streamed) == ("in_progress", "assistant", True)


async def test_a_record_is_replaced_only_from_its_stored_version(turn_log, session_id, user):
    stored = await turn_log.create(TurnRecord(session_id, user, 1, "in_progress"))
    assert stored is not None
    stale = replace(stored)

    updated = await turn_log.replace(replace(stored, status="completed", result={"reply": "done"}))
    refused = await turn_log.replace(replace(stale, status="failed"))

    found = await turn_log.find(session_id, user, 1)
    assert updated is not None and refused is None
    assert found is not None and found.status == "completed" and found.result == {"reply": "done"}


async def test_another_users_turn_record_is_not_found(turn_log, session_id, user):
    await turn_log.create(TurnRecord(session_id, user, 1, "in_progress"))

    assert await turn_log.find(session_id, "someone-else", 1) is None
    assert await turn_log.find(session_id, user, 2) is None


async def test_event_batches_read_back_by_number_and_attempt(turn_log, session_id, user):
    attempt = await turn_log.put(TurnRecord(session_id, user, 1, "in_progress", streamed=True))
    events = (StoredEvent(1, "turn", {"turn": 1}), StoredEvent(2, "delta", {"text": "hi"}))
    await turn_log.append(attempt, EventBatch(1, events))

    again = await turn_log.put(TurnRecord(session_id, user, 1, "in_progress", streamed=True))  # a new attempt

    assert await turn_log.batch(attempt, 1) == EventBatch(1, events)
    assert await turn_log.batch(attempt, 2) is None, "not written yet"
    assert await turn_log.batch(again, 1) is None, "another attempt's events are never mixed in"


async def test_only_turns_cancelled_while_they_ran_are_listed_after_the_given_turn(turn_log, session_id, user):
    for turn, status, streamed in [(1, "cancelled", True), (2, "completed", True), (3, "cancelled", False)]:
        await turn_log.create(TurnRecord(session_id, user, turn, status, streamed=streamed))
    await turn_log.create(TurnRecord(session_id, user, 4, "cancelled", streamed=True))

    assert await turn_log.cancelled_turns(session_id, user, after=0) == [1, 4]
    assert await turn_log.cancelled_turns(session_id, user, after=1) == [4]
    assert await turn_log.cancelled_turns(session_id, "someone-else", after=0) == []
