"""Two requests per steady turn, counted on the wire, and the combined claim-and-read under races.

The app's real Cosmos client talks to the local Cosmos DB through a counting proxy
(:class:`devtools.wire.CountingProxy`): every HTTP request it sends is counted there, whatever the SDK
says about itself.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import pytest

from cosmos_history import build_agents, load_settings, run_turn
from cosmos_history.adapters.cosmos.client import create_client, ensure_container
from cosmos_history.adapters.cosmos.sessions import CosmosSessions
from cosmos_history.domain.compaction import summary_of
from cosmos_history.domain.errors import TurnInProgressError
from cosmos_history.domain.policy import HistoryPolicy
from cosmos_history.domain.turn import TurnGuards
from cosmos_history.runtime import history_policy, session_services
from devtools.wire import CountingProxy

from .fakes import RecordingChatClient

pytestmark = pytest.mark.integration


@dataclass
class Wire:
    proxy: CountingProxy
    store: CosmosSessions
    guards: TurnGuards
    model: RecordingChatClient
    policy: HistoryPolicy

    async def turn(self, session_id: str, message: str, **kwargs):
        agents = build_agents(load_settings({}), self.model)
        return await run_turn(
            self.store, agents, session_id=session_id, message=message, guards=self.guards, policy=self.policy, **kwargs
        )


@pytest.fixture
async def wire(cosmos_env) -> AsyncIterator[Wire]:
    async with CountingProxy(cosmos_env["COSMOS_ENDPOINT"]) as proxy:
        settings = load_settings({**cosmos_env, "COSMOS_ENDPOINT": proxy.endpoint, "TURN_TIMEOUT_SECONDS": "600"})
        client = create_client(settings.cosmos)
        try:
            store, guards = session_services(await ensure_container(client, settings.cosmos), settings)
            user = store.for_user(f"u-{uuid.uuid4().hex[:6]}")
            yield Wire(proxy, user, guards, RecordingChatClient(), history_policy(settings))
        finally:
            await client.close()


@pytest.mark.parametrize("mode", ["local", "service"])
async def test_a_steady_plain_turn_makes_two_requests_on_the_wire(wire, session_id, mode):
    await wire.turn(session_id, "first", mode=mode)
    await wire.turn(session_id, "second")
    turns, mark = 5, len(wire.proxy.requests)

    for n in range(turns):
        await wire.turn(session_id, f"steady {n}")

    sent = wire.proxy.requests[mark:]
    assert len(sent) / turns == 2.00, sent
    assert {method for method, _ in sent} == {"POST"}, "a claim batch and a commit batch per turn"


async def test_the_first_turn_of_a_session_makes_three_requests(wire, session_id):
    mark = len(wire.proxy.requests)

    await wire.turn(session_id, "hello")

    assert wire.proxy.count_since(mark) == 3  # claim (no session yet), create the lease, commit


@pytest.mark.parametrize("existing", [True, False], ids=["steady", "first-turn"])
async def test_of_two_turns_racing_for_the_combined_claim_the_second_is_refused_before_its_model_call(
    wire, session_id, existing
):
    if existing:
        await wire.turn(session_id, "before the race")
    calls = len(wire.model.calls)
    wire.model.gate = asyncio.Event()
    racers = [asyncio.create_task(wire.turn(session_id, f"racer {n}")) for n in range(2)]

    done, running = await asyncio.wait(racers, return_when=asyncio.FIRST_COMPLETED)
    wire.model.gate.set()
    await asyncio.wait(running)

    (loser,) = done
    (winner,) = running
    assert isinstance(loser.exception(), TurnInProgressError)
    assert (loser.exception().retry_after or 0) >= 1
    assert winner.result().turn == (2 if existing else 1)
    assert len(wire.model.calls) == calls + 1, "the refused turn never called the model"


async def test_a_turn_arriving_while_another_holds_the_claim_is_refused_with_one_request(wire, session_id):
    await wire.turn(session_id, "first")
    wire.model.gate, wire.model.entered = asyncio.Event(), asyncio.Event()
    running = asyncio.create_task(wire.turn(session_id, "holds the lease"))
    await wire.model.entered.wait()
    mark = len(wire.proxy.requests)

    with pytest.raises(TurnInProgressError):
        await wire.turn(session_id, "too early")
    refused = wire.proxy.requests[mark:]
    wire.model.gate.set()
    await running

    assert refused[0][0] == "POST" and len(refused) <= 2  # the claim batch, and a read of the lease's expiry


async def test_a_lease_and_session_stored_by_the_previous_version_keep_working(wire, session_id):
    await wire.turn(session_id, "first")
    container, key = wire.store.container, [wire.store.user_id, session_id]
    document = await container.read_item(session_id, partition_key=key)
    await container.replace_item(session_id, {**document, "leaseEtag": '"00000000-0000"'})  # as it used to save
    old_lease = {"id": f"{session_id}:lease", "sessionId": session_id, "type": "lease", "userId": key[0]}
    await container.upsert_item({**old_lease, "holder": "an-old-instance", "expiresAt": time.time() + 600})

    with pytest.raises(TurnInProgressError):  # a live lease of the old version is honoured
        await wire.turn(session_id, "while an old turn runs")
    await container.upsert_item({**old_lease, "holder": "an-old-instance", "expiresAt": 0.0})  # old release
    result = await wire.turn(session_id, "after it")

    assert result.turn == 2
    assert "leaseEtag" not in await container.read_item(session_id, partition_key=key)


async def small_budget_turns(wire: Wire, cosmos_env: dict[str, str], session_id: str, turns: int) -> None:
    """``turns`` long turns of a local-mode session whose budget archives (and then summarises) every few turns."""
    small = load_settings({**cosmos_env, "MAX_INPUT_TOKENS": "500"})
    agents, policy = build_agents(small, wire.model), history_policy(small)
    for n in range(turns):
        message = f"turn {n} " + "word " * 80
        mode = "local" if n == 0 else None
        await run_turn(
            wire.store, agents, session_id=session_id, message=message, guards=wire.guards, policy=policy, mode=mode
        )


async def test_turns_that_archive_and_summarise_still_make_two_requests_each(wire, session_id, cosmos_env):
    await small_budget_turns(wire, cosmos_env, session_id, 2)
    turns, mark = 8, len(wire.proxy.requests)

    await small_budget_turns(wire, cosmos_env, session_id, turns)
    sent = wire.proxy.requests[mark:]

    record = await wire.store.load(session_id)
    assert len(record.archive.starts) >= 2 and summary_of(record), "the turns archived and were summarised"
    assert len(sent) / turns == 2.00, sent


async def test_another_instance_reads_a_just_archived_chunk_from_cosmos_db_and_gets_the_same_messages(
    wire, session_id, cosmos_env
):
    await small_budget_turns(wire, cosmos_env, session_id, 6)
    other_instance = CosmosSessions(wire.store.container, user_id=wire.store.user_id)
    record = await other_instance.load(session_id)
    chunk = len(record.archive.starts) - 1
    mark = len(wire.proxy.requests)

    from_cosmos = await other_instance.archive.read(record, chunk)
    read = wire.proxy.count_since(mark)
    kept = await wire.store.archive.read(record, chunk)

    assert read == 1 and wire.proxy.count_since(mark) == 1, "the committing instance reads nothing"
    assert from_cosmos and [m.to_dict() for m in kept] == [m.to_dict() for m in from_cosmos]


async def test_a_chunk_kept_for_one_user_is_not_served_to_another_with_the_same_ids(wire, session_id, cosmos_env):
    await small_budget_turns(wire, cosmos_env, session_id, 6)
    record = await wire.store.load(session_id)
    stranger = wire.store.for_user(f"u-{uuid.uuid4().hex[:6]}")  # the same process's kept chunks

    foreign = await stranger.archive.read(replace(record, user_id=stranger.user_id), 0)

    assert await wire.store.archive.read(record, 0)
    assert foreign is None, "read from the stranger's own partition, where no such chunk exists"
