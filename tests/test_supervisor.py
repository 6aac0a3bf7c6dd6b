"""The runtime's turn supervisor: running turns are found by session, cancelled and drained."""

from __future__ import annotations

import asyncio

from cosmos_history.domain.supervisor import TurnSupervisor


async def test_a_running_turn_is_found_by_its_session_only():
    supervisor, gate = TurnSupervisor(), asyncio.Event()
    task = supervisor.start(gate.wait(), name="turn", session_id="s1")

    assert supervisor.running("s1") == [task] and supervisor.running("s2") == []

    gate.set()
    await supervisor.drain()
    assert supervisor.running("s1") == [] and len(supervisor) == 0


async def test_cancelling_a_session_stops_its_turns_and_leaves_the_others_running():
    supervisor, gate = TurnSupervisor(), asyncio.Event()
    mine = supervisor.start(gate.wait(), name="turn", session_id="s1")
    other = supervisor.start(gate.wait(), name="turn", session_id="s2")

    assert supervisor.cancel("s1") == 1
    await asyncio.wait([mine])

    assert mine.cancelled() and not other.done()
    gate.set()
    await supervisor.drain()
    assert other.done() and not other.cancelled()


async def test_drain_waits_for_work_started_while_draining():
    supervisor, finished = TurnSupervisor(), []

    async def follow_up() -> None:
        finished.append("follow-up")

    async def turn() -> None:
        supervisor.start(follow_up(), name="response")
        finished.append("turn")

    supervisor.start(turn(), name="turn", session_id="s1")
    await supervisor.drain()

    assert finished == ["turn", "follow-up"]


async def test_two_supervisors_share_nothing():
    first, second, gate = TurnSupervisor(), TurnSupervisor(), asyncio.Event()
    first.start(gate.wait(), name="turn", session_id="s1")

    assert second.running("s1") == [] and len(second) == 0
    await second.drain()  # returns at once: nothing of the other runtime's is waited for
    gate.set()
    await first.drain()
