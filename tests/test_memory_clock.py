"""The memory adapters read an injected clock: lease and replay expiry are tested by moving it, never by waiting."""

from __future__ import annotations

import pytest

from cosmos_history.adapters.memory import MemoryDatabase, MemoryReplayCache, MemoryTurnLease
from cosmos_history.domain.errors import TurnInProgressError

from .clock import ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


async def test_a_held_lease_refuses_a_racer_until_the_clock_passes_its_expiry(clock):
    lease = MemoryTurnLease(MemoryDatabase(clock=clock), seconds=30)
    first = await lease.claim("s1", "alice")

    clock.advance(29)
    with pytest.raises(TurnInProgressError) as refused:
        await lease.claim("s1", "alice")
    assert refused.value.retry_after == 1

    clock.advance(2)
    taken = await lease.claim("s1", "alice")  # no longer refused: the first claim has expired
    assert taken.etag != first.etag and await lease.renew("s1", "alice", first.etag) is None


async def test_a_renewal_moves_the_expiry_from_the_clocks_now(clock):
    lease = MemoryTurnLease(MemoryDatabase(clock=clock), seconds=30)
    etag = (await lease.claim("s1", "alice")).etag

    clock.advance(20)
    assert await lease.renew("s1", "alice", etag) is not None
    clock.advance(20)  # 40 s after the claim, 20 s after the renewal

    with pytest.raises(TurnInProgressError):
        await lease.claim("s1", "alice")


async def test_a_stored_answer_is_replayed_until_its_ttl_passes(clock):
    cache = MemoryReplayCache(MemoryDatabase(clock=clock), ttl_seconds=60)
    await cache.record("s1", "alice", "key", turn=1, result={"reply": "hi"})

    clock.advance(60)
    assert await cache.find("s1", "alice", "key", turn=1) == {"reply": "hi"}

    clock.advance(1)
    assert await cache.find("s1", "alice", "key", turn=1) is None
