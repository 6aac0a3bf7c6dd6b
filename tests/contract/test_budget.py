"""The budget is the domain's decision: every adapter stores a record as given and reports its size
(#27 seam 4); :func:`fit_to_budget` moves what is over the policy's budget to the archive before the save."""

from __future__ import annotations

import pytest
from agent_framework import InMemoryHistoryProvider, Message

from cosmos_history import SessionRecord
from cosmos_history.domain.archive import history_messages, read_page
from cosmos_history.domain.budget import HistoryBudget, fit_to_budget
from cosmos_history.domain.ports import SessionRepository

pytestmark = pytest.mark.integration

SMALL = HistoryBudget(max_messages=4)
"""A budget of 4 messages a document: the domain's to choose, whatever the adapter."""


def conversation(repository: SessionRepository, session_id: str, turns: int) -> SessionRecord:
    record = SessionRecord.new(session_id, user_id=repository.user_id, mode="local")
    record.session.state[InMemoryHistoryProvider.DEFAULT_SOURCE_ID] = {
        "messages": [
            Message(role=role, contents=[f"{role} {turn}"]) for turn in range(turns) for role in ("user", "assistant")
        ]
    }
    return record


async def test_save_stores_a_record_over_budget_as_given_without_archiving(repository, session_id):
    record = conversation(repository, session_id, turns=10)

    await repository.save(record, etag=None)

    loaded = await repository.load(session_id)
    assert loaded is not None and len(history_messages(loaded.session.state)) == 20
    assert loaded.archive.count == 0 and loaded.archive.starts == []


async def test_fitting_to_budget_before_the_save_moves_the_oldest_turns_to_the_archive(repository, session_id):
    record = conversation(repository, session_id, turns=10)

    moved = await fit_to_budget(repository, record, SMALL)
    await repository.save(record, etag=None)

    loaded = await repository.load(session_id)
    assert loaded is not None and moved
    kept = history_messages(loaded.session.state)
    assert 2 <= len(kept) <= 4 and kept[0].role == "user" and loaded.archive.count == 20 - len(kept)
    page = await read_page(loaded, repository.archive, before=None, limit=50)
    assert [m.text for _, m in page.messages] == [f"{r} {t}" for t in range(10) for r in ("user", "assistant")]


async def test_a_service_mode_record_is_never_archived(repository, session_id):
    record = conversation(repository, session_id, turns=10)
    record.mode = "service"

    assert await fit_to_budget(repository, record, SMALL) is False
    assert record.archive.count == 0


async def test_the_measured_size_is_the_document_to_be_written_and_grows_with_its_history(repository, session_id):
    short, long = conversation(repository, session_id, turns=1), conversation(repository, session_id, turns=5)

    short_size, long_size = repository.measure(short), repository.measure(long)

    assert 0 < short_size.document < long_size.document
    assert long_size.messages is None or len(long_size.messages) == 10
