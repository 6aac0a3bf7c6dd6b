"""A turn's new archive chunks ride in its commit batch: no write of their own, visible with the document that
lists them or not at all. Through the real store over the local Cosmos DB."""

from __future__ import annotations

from typing import Any

import pytest

from cosmos_history import build_agents, load_settings, run_turn
from cosmos_history.adapters.cosmos import items
from cosmos_history.adapters.cosmos.commit import CHUNK_BATCH_BYTES
from cosmos_history.domain.budget import HistoryBudget, fit_to_budget
from cosmos_history.domain.conversations import read_history
from cosmos_history.domain.errors import SessionConflictError
from cosmos_history.domain.records import TurnItems

pytestmark = pytest.mark.integration

SMALL = HistoryBudget(max_tokens=150)


async def archive_items(store: Any, session_id: str) -> list[dict[str, Any]]:
    partition = items.item_id(session_id)
    query = store.container.query_items(
        "SELECT * FROM c WHERE c.type = @type",
        parameters=[{"name": "@type", "value": items.ARCHIVE_TYPE}],
        partition_key=items.partition_key(store.user_id, partition),
    )
    return [item async for item in query]


class CreateSpy:
    """Counts the container's own item creates (a batch is not one of them); calls go through unchanged."""

    def __init__(self, container: Any) -> None:
        self.container, self.created = container, []
        self._create = container.create_item

    async def __call__(self, body: dict[str, Any], **kwargs: Any) -> Any:
        self.created.append(body.get("type"))
        return await self._create(body, **kwargs)


@pytest.fixture
async def talked(cosmos_env, store, session_id, offline_model) -> Any:
    """A session of six turns, stored within the default budget (nothing archived yet)."""
    agents = build_agents(load_settings(cosmos_env), offline_model)
    for turn in range(6):
        await run_turn(store, agents, session_id=session_id, message=f"message {turn} " + "word " * 30)
    assert not await archive_items(store, session_id)
    return store


async def test_a_commit_creates_its_new_chunks_in_the_same_batch_and_they_are_listed(
    talked, session_id, runtime, monkeypatch
):
    store, lease = talked, runtime.guards.lease
    claim = await lease.claim(session_id, store.user_id)
    record = claim.record
    assert await fit_to_budget(store, record, SMALL)
    spy = CreateSpy(store.container)
    monkeypatch.setattr(store.container, "create_item", spy)

    await store.save(record, etag=record.etag, items=TurnItems(lease_etag=claim.etag))

    assert spy.created == []  # no write of their own
    stored = await archive_items(store, session_id)
    assert stored and all(chunk["id"] in {record.archive.chunk_id(items.item_id(session_id), 0)} for chunk in stored)
    page = await read_history(store, session_id, before=None, limit=100)
    assert page.total == 12 and [index for index, _ in page.messages] == list(range(12))


async def test_a_commit_that_loses_its_lease_leaves_no_chunk_behind(talked, session_id, runtime):
    store, lease = talked, runtime.guards.lease
    claim = await lease.claim(session_id, store.user_id)
    record = claim.record
    assert await fit_to_budget(store, record, SMALL)

    with pytest.raises(SessionConflictError):
        await store.save(record, etag=record.etag, items=TurnItems(lease_etag="taken-over"))

    assert await archive_items(store, session_id) == []
    assert record.pending_chunks == []  # taken by the failed save: a retry plans again from what it loads


async def test_a_plain_save_and_chunks_too_large_for_a_batch_are_written_before_the_document(
    talked, session_id, runtime, monkeypatch
):
    store = talked
    record = await store.load(session_id)
    assert await fit_to_budget(store, record, SMALL)
    spy = CreateSpy(store.container)
    monkeypatch.setattr(store.container, "create_item", spy)

    await store.save(record, etag=record.etag)  # no items: one plain conditional write, the chunk first

    assert spy.created == [items.ARCHIVE_TYPE]
    assert len(await archive_items(store, session_id)) == 1
    assert CHUNK_BATCH_BYTES < 2 * 1024 * 1024 - 1_000_000  # a batch stays under 2 MB with a 1 MB document
