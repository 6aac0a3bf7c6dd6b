"""Reliability guarantees against the real local Cosmos DB: leases, idempotent retries, bounded
documents, retention and injected faults. Each test fails without the guarantee it names."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from azure.cosmos.aio import ContainerProxy

from cosmos_history import SessionConflictError, Settings, StoreUnavailableError, build_agents, load_settings, run_turn
from cosmos_history.adapters.cosmos.client import create_client, ensure_container
from cosmos_history.adapters.cosmos.items import lease_id
from cosmos_history.adapters.cosmos.lease import CosmosTurnLease
from cosmos_history.adapters.cosmos.sessions import CosmosSessions
from cosmos_history.domain.archive import read_page
from cosmos_history.domain.errors import (
    IdempotencyKeyReusedError,
    IdempotentResultGoneError,
    ModelCallError,
    TurnInProgressError,
    TurnTooLargeError,
)
from cosmos_history.domain.policy import HistoryPolicy
from cosmos_history.domain.turn import TurnGuards
from cosmos_history.runtime import history_policy, session_services

from .clock import ManualClock, ManualHeartbeat
from .fakes import RecordingChatClient
from .faults import Fault, FaultInjectingTransport, is_item_read, is_item_write, is_session_write

pytestmark = pytest.mark.integration

BUDGET = 32_000


@dataclass
class Rig:
    store: CosmosSessions
    guards: TurnGuards
    transport: FaultInjectingTransport
    container: ContainerProxy
    settings: Settings
    model: RecordingChatClient
    policy: HistoryPolicy
    """The budget (``BUDGET`` bytes, 40 messages) the runtime would build from the settings."""

    @property
    def agents(self):
        return build_agents(self.settings, self.model)

    async def turn(self, session_id: str, message: str, **kwargs):
        return await run_turn(
            self.store,
            self.agents,
            session_id=session_id,
            message=message,
            guards=self.guards,
            policy=self.policy,
            **kwargs,
        )

    async def document(self, session_id: str) -> dict:
        return await self.container.read_item(session_id, partition_key=[self.store.user_id, session_id])

    async def lease_item(self, session_id: str) -> dict:
        return await self.container.read_item(lease_id(session_id), partition_key=[self.store.user_id, session_id])


@pytest.fixture
async def rig(cosmos_env) -> AsyncIterator[Rig]:
    """The real store and guards over the app's own client, whose transport can inject faults."""
    settings = load_settings(
        {
            **cosmos_env,
            "TURN_LEASE_SECONDS": "3",
            "TURN_TIMEOUT_SECONDS": "2",
            "MAX_SESSION_BYTES": str(BUDGET),
            "MAX_HISTORY_MESSAGES": "40",
            "SESSION_TTL_SECONDS": "3600",
        }
    )
    transport = FaultInjectingTransport()
    client = create_client(settings.cosmos, transport=transport)  # the production retry and timeout options
    container = await ensure_container(client, settings.cosmos)
    store, guards = session_services(container, settings)
    user = store.for_user(f"u-{uuid.uuid4().hex[:6]}")
    yield Rig(user, guards, transport, container, settings, RecordingChatClient(), history_policy(settings))
    await client.close()


# --- the lease ---------------------------------------------------------------------------------


async def test_a_second_concurrent_turn_is_rejected_before_its_model_call(rig, session_id):
    await rig.turn(session_id, "first")
    rig.model.gate, rig.model.entered = asyncio.Event(), asyncio.Event()
    running = asyncio.create_task(rig.turn(session_id, "racer a"))
    await rig.model.entered.wait()

    with pytest.raises(TurnInProgressError) as refused:
        await rig.turn(session_id, "racer b")
    rig.model.gate.set()
    await running

    assert refused.value.retry_after is not None and refused.value.retry_after >= 1
    assert len(rig.model.calls) == 2, "the rejected turn must not have called the model"
    assert (await rig.document(session_id))["turns"] == 2


async def test_a_racing_turn_is_told_to_retry_in_seconds_not_minutes(rig, session_id):
    lease = CosmosTurnLease(rig.container, seconds=load_settings({}).turn_lease_seconds)
    await lease.claim(session_id, "holder")

    with pytest.raises(TurnInProgressError) as refused:
        await lease.claim(session_id, "holder")

    assert 1 <= (refused.value.retry_after or 0) <= 4


def test_a_crashed_instances_session_accepts_turns_within_fifteen_seconds_by_default():
    assert load_settings({}).turn_lease_seconds <= 15


async def test_a_turn_longer_than_its_lease_keeps_it_by_renewing(rig, session_id):
    clock = ManualClock(time.time())  # the lease's clock: the test moves it, no real time passes
    heartbeat = ManualHeartbeat(clock)
    seconds = rig.settings.turn_lease_seconds
    lease = CosmosTurnLease(rig.container, seconds=seconds, ttl_seconds=rig.settings.session_ttl_seconds, clock=clock)
    # The gate, not a clock, ends the model call; the heartbeat renews when the test lets a third of the lease pass.
    rig.guards = dataclasses.replace(rig.guards, lease=lease, pause=heartbeat.pause, model_timeout_seconds=600)
    await rig.turn(session_id, "first")
    rig.model.gate, rig.model.entered = asyncio.Event(), asyncio.Event()
    running = asyncio.create_task(rig.turn(session_id, "a long answer"))
    await rig.model.entered.wait()
    claimed = await rig.lease_item(session_id)

    renewals = []
    for _ in range(4):  # four thirds of the lease: without renewals it would have run out
        await heartbeat.beat()
        renewals.append(await rig.lease_item(session_id))
    beats = [round(claimed["expiresAt"] + n * seconds / 3, 3) for n in (1, 2, 3, 4)]
    assert [r["expiresAt"] for r in renewals] == pytest.approx(beats, abs=0.002), "each beat renewed by a whole lease"
    assert clock.now > claimed["expiresAt"], "the racer comes after the claim alone would have expired"
    with pytest.raises(TurnInProgressError):
        await rig.turn(session_id, "racer")
    rig.model.gate.set()
    result = await running

    assert result.turn == 2 and renewals[-1]["expiresAt"] - claimed["expiresAt"] >= seconds
    lease_item = await rig.lease_item(session_id)
    assert lease_item["expiresAt"] == 0, "the commit released the renewed lease: the next turn claims it at once"
    assert (await rig.turn(session_id, "next")).turn == 3


async def test_a_crashed_turns_lease_expires_and_the_session_is_usable_again(rig, session_id):
    await rig.turn(session_id, "first")
    assert rig.guards.lease is not None
    await rig.guards.lease.claim(session_id, rig.store.user_id)  # then "crash"

    with pytest.raises(TurnInProgressError):
        await rig.turn(session_id, "too early")
    lease = await rig.lease_item(session_id)
    lease["expiresAt"] = time.time() - 1  # as if TURN_LEASE_SECONDS had passed without a renewal
    await rig.container.replace_item(lease["id"], lease)
    result = await rig.turn(session_id, "after expiry")

    assert result.turn == 2


async def test_a_failed_model_call_releases_the_lease_at_once(rig, session_id):
    await rig.turn(session_id, "first")
    rig.model.fail_with = RuntimeError("model down")
    with pytest.raises(ModelCallError):
        await rig.turn(session_id, "fails")
    rig.model.fail_with = None

    result = await rig.turn(session_id, "next")

    assert result.turn == 2


async def test_a_steady_state_turn_costs_two_round_trips(rig, session_id):
    await rig.turn(session_id, "first")
    before = len(rig.transport.sent)

    await rig.turn(session_id, "second")

    sent = rig.transport.sent[before:]
    assert [method for method, _, _ in sent] == ["POST", "POST"], sent  # claim + read, commit + release


# --- idempotent retries ------------------------------------------------------------------------


async def test_a_retry_with_the_same_key_replays_the_first_result_without_the_model(rig, session_id):
    await rig.turn(session_id, "hello")
    first = await rig.turn(session_id, "once only", idempotency_key="key-1")
    calls = len(rig.model.calls)

    retry = await rig.turn(session_id, "once only", idempotency_key="key-1")

    assert retry.replayed and retry.to_json() == first.to_json()
    assert len(rig.model.calls) == calls
    assert (await rig.document(session_id))["turns"] == 2


async def test_the_same_key_with_a_different_body_is_rejected(rig, session_id):
    await rig.turn(session_id, "hello")
    await rig.turn(session_id, "original", idempotency_key="key-2")

    with pytest.raises(IdempotencyKeyReusedError):
        await rig.turn(session_id, "something else", idempotency_key="key-2")


async def test_service_mode_keeps_replayable_results_out_of_the_session_document(rig, session_id):
    await rig.turn(session_id, "hi", mode="service")
    result = await rig.turn(session_id, "secret question", idempotency_key="key-3")

    document = json.dumps(await rig.document(session_id))
    replay = await rig.turn(session_id, "secret question", idempotency_key="key-3")
    assert result.reply not in document and "secret question" not in document
    assert replay.replayed and replay.reply == result.reply


async def test_a_retry_whose_first_save_failed_runs_its_turn_instead_of_replaying_a_later_one(rig, session_id):
    await rig.turn(session_id, "hello")
    session_write = Fault(is_session_write(session_id), 503, times=100)
    rig.transport.faults.append(session_write)
    with pytest.raises(StoreUnavailableError):
        await rig.turn(session_id, "IMPORTANT: wire the money", idempotency_key="K")
    session_write.times = 0
    assert (await rig.turn(session_id, "unrelated follow-up")).turn == 2

    retry = await rig.turn(session_id, "IMPORTANT: wire the money", idempotency_key="K")

    assert not retry.replayed and retry.turn == 3
    history = (await rig.document(session_id))["session"]["state"]["in_memory"]["messages"]
    assert "IMPORTANT: wire the money" in json.dumps(history)


async def test_a_key_is_replayed_only_while_its_turn_is_in_the_session(rig, session_id):
    await rig.turn(session_id, "hello")
    first = await rig.turn(session_id, "keyed", idempotency_key="K2")
    await rig.turn(session_id, "later turns do not hide it")

    retry = await rig.turn(session_id, "keyed", idempotency_key="K2")

    assert retry.replayed and retry.turn == first.turn == 2
    assert [k["turn"] for k in (await rig.document(session_id))["recentKeys"]] == [2]


async def test_a_retry_whose_answer_expired_is_told_it_was_applied_not_run_twice(rig, session_id):
    await rig.turn(session_id, "keyed", idempotency_key="K3")
    cached = [
        i
        async for i in rig.container.query_items(
            "SELECT * FROM c WHERE c.sessionId = @s AND c.type = 'idempotency'",
            parameters=[{"name": "@s", "value": session_id}],
            partition_key=[rig.store.user_id, session_id],
        )
    ]
    # as retention would:
    await rig.container.delete_item(cached[0]["id"], partition_key=[rig.store.user_id, session_id])
    calls = len(rig.model.calls)

    with pytest.raises(IdempotentResultGoneError) as gone:
        await rig.turn(session_id, "keyed", idempotency_key="K3")

    assert gone.value.retry_after is None and len(rig.model.calls) == calls


# --- bounded documents -------------------------------------------------------------------------


async def test_a_3000_turn_conversation_never_writes_an_item_over_budget_and_loses_nothing(rig, session_id):
    turns = 3000
    long_text = "lorem ipsum dolor sit amet " * 20  # ~540 characters per user message
    rig.model.reply_prefix = "a long and detailed answer " * 8
    guards = TurnGuards()  # the lease is tested above; here only the archive matters
    for n in range(turns):
        await run_turn(
            rig.store, rig.agents, session_id=session_id, message=f"{n}:{long_text}", guards=guards, policy=rig.policy
        )

    writes = [size for method, url, size in rig.transport.sent if method in ("POST", "PUT") and "/docs" in url]
    assert max(writes) <= BUDGET, f"largest write was {max(writes)} bytes"
    record = await rig.store.load(session_id)
    assert record is not None and record.turns == turns and record.archive.count > 0
    texts, before = [], None
    while True:
        page = await read_page(record, rig.store.archive, before=before, limit=200)
        texts[:0] = [message.text for _, message in page.messages]
        if page.next_before is None:
            break
        before = page.next_before
    assert len(texts) == 2 * turns
    assert [t.split(":", 1)[0] for t in texts[0::2]] == [str(n) for n in range(turns)]
    assert all(t.startswith("a long and detailed answer") for t in texts[1::2])


async def test_an_archive_chunk_from_a_failed_save_stays_invisible(rig, session_id):
    guards = TurnGuards()
    for n in range(30):
        await run_turn(
            rig.store, rig.agents, session_id=session_id, message=f"{n} " + "x" * 600, guards=guards, policy=rig.policy
        )
    committed = await archive_item_ids(rig, session_id)
    rig.transport.faults.append(Fault(lambda r: r.method == "PUT" and r.url.rstrip("/").endswith(session_id), 412, 50))

    for n in range(30, 40):  # each turn alone needs room: its save must archive older turns first
        with pytest.raises(SessionConflictError):
            await run_turn(
                rig.store,
                rig.agents,
                session_id=session_id,
                message=f"{n} " + "x" * 20_000,
                guards=guards,
                policy=rig.policy,
            )
    rig.transport.faults.clear()

    orphans = await archive_item_ids(rig, session_id) - committed
    assert orphans, "the failed saves wrote archive chunks before their session write was refused"
    record = await rig.store.load(session_id)
    assert record is not None
    page = await read_page(record, rig.store.archive, before=None, limit=200)
    user_texts = [m.text.split(" ")[0] for _, m in page.messages if m.role == "user"]
    assert user_texts == [str(n) for n in range(30)]


async def archive_item_ids(rig: Rig, session_id: str) -> set[str]:
    query = rig.container.query_items(
        "SELECT c.id FROM c WHERE c.sessionId = @s AND c.type = 'archive'",
        parameters=[{"name": "@s", "value": session_id}],
        partition_key=[rig.store.user_id, session_id],
    )
    return {item["id"] async for item in query}


async def test_every_item_of_a_session_carries_the_retention_ttl(rig, session_id):
    for n in range(30):
        await rig.turn(session_id, f"{n} " + "y" * 600, idempotency_key=f"k{n}")

    query = rig.container.query_items(
        "SELECT c.id, c.type, c.ttl FROM c WHERE c.sessionId = @s",
        parameters=[{"name": "@s", "value": session_id}],
        partition_key=[rig.store.user_id, session_id],
    )
    items = [item async for item in query]
    kinds = {item["type"] for item in items}
    assert {"session", "lease", "archive", "idempotency"} <= kinds
    assert all(item.get("ttl") for item in items)
    assert {item["ttl"] for item in items if item["type"] != "idempotency"} == {3600}


async def test_deleting_a_session_removes_its_archive_lease_and_replay_items(rig, session_id):
    for n in range(30):
        await rig.turn(session_id, f"{n} " + "z" * 600, idempotency_key=f"d{n}")

    assert await rig.store.delete(session_id)

    query = rig.container.query_items(
        "SELECT c.id FROM c WHERE c.sessionId = @s",
        parameters=[{"name": "@s", "value": session_id}],
        partition_key=[rig.store.user_id, session_id],
    )
    assert [item async for item in query] == []


# --- faults ------------------------------------------------------------------------------------


async def test_throttling_is_retried_by_the_sdk(rig, session_id):
    await rig.turn(session_id, "first")
    rig.transport.faults.append(Fault(is_item_read, 429, times=2))

    result = await rig.turn(session_id, "second")

    assert result.turn == 2 and rig.transport.faults[0].hits == 2


async def test_throttling_that_outlasts_the_retries_is_a_503_and_changes_nothing(rig, session_id):
    await rig.turn(session_id, "first")
    before = await rig.document(session_id)
    rig.transport.faults.append(Fault(is_item_write, 429, times=1000))

    with pytest.raises(StoreUnavailableError) as raised:
        await rig.turn(session_id, "second")
    rig.transport.faults.clear()

    assert raised.value.retry_after and raised.value.retry_after > 0
    assert await rig.document(session_id) == before


async def test_a_failed_session_write_releases_the_lease(rig, session_id):
    await rig.turn(session_id, "first")
    rig.transport.faults.append(Fault(is_session_write(session_id), 503, 10))
    with pytest.raises(StoreUnavailableError):
        await rig.turn(session_id, "second")
    rig.transport.faults.clear()

    assert (await rig.turn(session_id, "third")).turn == 2


async def test_a_dropped_connection_on_read_is_retried(rig, session_id):
    await rig.turn(session_id, "first")
    rig.transport.faults.append(Fault(is_item_read, None, times=1))

    assert (await rig.turn(session_id, "second")).turn == 2


async def test_a_model_that_hangs_fails_the_turn_at_the_time_limit(rig, session_id):
    await rig.turn(session_id, "first")
    before = await rig.document(session_id)
    rig.model.delay = rig.settings.turn_timeout_seconds + 5

    with pytest.raises(ModelCallError, match="in time"):
        await rig.turn(session_id, "slow")

    assert await rig.document(session_id) == before


async def test_a_model_returning_no_text_changes_nothing(rig, session_id):
    await rig.turn(session_id, "first")
    before = await rig.document(session_id)
    rig.model.reply_prefix = ""
    rig.model.reply_template = ""

    with pytest.raises(ModelCallError, match="no text"):
        await rig.turn(session_id, "garbage please")

    assert await rig.document(session_id) == before


async def test_a_reply_too_large_for_one_item_is_refused_and_changes_nothing(rig, session_id):
    await rig.turn(session_id, "first")
    before = await rig.document(session_id)
    rig.model.reply_template = "z" * BUDGET

    with pytest.raises(TurnTooLargeError):
        await rig.turn(session_id, "write me a novel")

    assert await rig.document(session_id) == before


async def test_archive_retention_slides_with_the_sessions_activity(rig, session_id):
    for n in range(30):
        await run_turn(
            rig.store,
            rig.agents,
            session_id=session_id,
            message=f"{n} " + "w" * 600,
            guards=TurnGuards(),
            policy=rig.policy,
        )
    record = await rig.store.load(session_id)
    assert record is not None and record.archive.starts
    first_chunk = record.archive.chunk_id(session_id, 0)
    await rig.container.patch_item(
        first_chunk,
        partition_key=[rig.store.user_id, session_id],
        patch_operations=[
            {"op": "set", "path": "/ttl", "value": 5}  # as if it had almost expired
        ],
    )
    document = await rig.document(session_id)
    document["archive"]["touchedAt"] = 0  # the last renewal was long ago
    await rig.container.replace_item(session_id, document)

    await rig.turn(session_id, "keeps the conversation alive")

    assert (await rig.container.read_item(first_chunk, partition_key=[rig.store.user_id, session_id]))["ttl"] == 3600


async def test_archive_chunks_of_different_saves_never_share_an_id(rig, session_id):
    for n in range(60):
        await run_turn(
            rig.store,
            rig.agents,
            session_id=session_id,
            message=f"{n} " + "v" * 600,
            guards=TurnGuards(),
            policy=rig.policy,
        )
    record = await rig.store.load(session_id)

    assert record is not None and len(record.archive.starts) >= 2
    ids = [record.archive.chunk_id(session_id, n) for n in range(len(record.archive.starts))]
    assert len(set(ids)) == len(ids) and len(set(record.archive.tokens)) == len(ids)
