"""The stores beside the session, held by every adapter to one contract: the replay cache, the response log
and the archive chunks (the lease and the commit are in test_unit_of_work.py). Each is keyed by the caller
too, so another user's entry is never served."""

from __future__ import annotations

import pytest
from agent_framework import Message

from cosmos_history import SessionRecord

pytestmark = pytest.mark.integration

RESULT = {"sessionId": "s", "reply": "hello", "turn": 3}
RESPONSE = {"id": "resp_1", "object": "response", "output": [{"type": "message", "content": []}]}


async def test_a_recorded_result_is_found_for_its_turn_only(ports, session_id):
    user = ports.repository.user_id
    await ports.replays.record(session_id, user, "key-hash", turn=3, result=RESULT)

    assert await ports.replays.find(session_id, user, "key-hash", turn=3) == RESULT
    assert await ports.replays.find(session_id, user, "key-hash", turn=4) is None, "another turn made with the key"
    assert await ports.replays.find(session_id, user, "other-hash", turn=3) is None


async def test_a_recorded_result_is_never_found_for_another_user(ports, session_id):
    await ports.replays.record(session_id, ports.repository.user_id, "key-hash", turn=1, result=RESULT)

    assert await ports.replays.find(session_id, "someone-else", "key-hash", turn=1) is None


async def test_a_stored_response_reads_back_until_deleted(ports, session_id):
    user = ports.repository.user_id
    await ports.responses.record(session_id, user, 2, RESPONSE)

    found = await ports.responses.find(session_id, user, 2)
    deleted = await ports.responses.delete(session_id, user, 2)
    again = await ports.responses.delete(session_id, user, 2)

    assert found == RESPONSE and await ports.responses.find(session_id, user, 1) is None
    assert deleted is True and again is False and await ports.responses.find(session_id, user, 2) is None


async def test_another_users_stored_response_is_not_found_nor_deleted(ports, session_id):
    await ports.responses.record(session_id, ports.repository.user_id, 1, RESPONSE)

    assert await ports.responses.find(session_id, "someone-else", 1) is None
    assert await ports.responses.delete(session_id, "someone-else", 1) is False
    assert await ports.responses.find(session_id, ports.repository.user_id, 1) == RESPONSE


def archived(repository, session_id: str, chunks: int) -> SessionRecord:
    """A record whose index names ``chunks`` archive chunks (written or not)."""
    record = SessionRecord.new(session_id, user_id=repository.user_id, mode="local")
    record.archive.starts = [2 * n for n in range(chunks)]
    record.archive.tokens = [f"t{n}" for n in range(chunks)]
    record.archive.count = 2 * chunks
    return record


async def test_an_archive_chunk_reads_back_as_written(repository, session_id):
    record = archived(repository, session_id, chunks=2)
    messages = [Message(role="user", contents=["first"]), Message(role="assistant", contents=["reply"])]

    await repository.archive.write(record, 1, messages)
    await repository.archive.renew(record)

    read = await repository.archive.read(record, 1)
    assert read is not None and [(m.role, m.text) for m in read] == [("user", "first"), ("assistant", "reply")]


async def test_a_chunk_never_written_or_removed_by_retention_reads_as_none(repository, session_id):
    record = archived(repository, session_id, chunks=2)
    await repository.archive.write(record, 1, [Message(role="user", contents=["kept"])])

    assert await repository.archive.read(record, 0) is None


async def test_another_users_archive_chunk_is_not_read(repository, session_id):
    record = archived(repository, session_id, chunks=1)
    await repository.archive.write(record, 0, [Message(role="user", contents=["mine"])])
    stranger = archived(repository.for_user("someone-else"), session_id, chunks=1)

    assert await repository.for_user("someone-else").archive.read(stranger, 0) is None
