"""Keeps the before/after comparison and the CPU profile of the benchmark alive: tiny runs, no timing assertions."""

from __future__ import annotations

import os
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from bench.compare import SIDES, Side, measure_compare, render
from bench.hosts import BenchEnv, Host, checkout_host
from bench.inprocess import variants
from bench.profile import cpu_per_turn, profile_turns, top_functions
from bench.profile import render as render_profile

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench_env(cosmos_env: dict[str, str]) -> BenchEnv:
    return BenchEnv({**cosmos_env, "BENCH_PROVIDER_CONTAINER": "provider-history"}, real_account=False)


async def test_two_checkouts_are_timed_side_by_side_with_each_hosts_cpu(bench_env: BenchEnv) -> None:
    wanted = [side for side in SIDES if side.variant != "provider"]
    with ExitStack() as stack:
        hosts: dict[Side, Host] = {
            side: stack.enter_context(checkout_host(REPO, bench_env.env, app="bench.bench_app")) for side in wanted
        }
        async with variants(bench_env) as v:
            results = await measure_compare(v, hosts, [2], scale=0.2)

    assert set(results) == {(side.label, 2) for side in wanted}
    for timed in results.values():
        assert len(timed.latencies.samples) == 3 * 2  # three sessions, two turns each
        assert timed.cpu_seconds > 0
    lines = render(results, [2], REPO, None, "1.00, 1.00, 1.00")
    assert lines[0].startswith(f"## Per-turn overhead, before ({REPO}) → after (this checkout)")
    assert [line.split(" | ")[0] for line in lines[-2:]] == ["| 2, wall (median)", "| 2, CPU of the host"]


def test_a_hosts_cpu_time_grows_while_it_works() -> None:
    host = Host("http://unused", os.getpid())
    before = host.cpu_seconds()
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:
        pass

    assert host.cpu_seconds() - before >= 0.04


async def test_the_cpu_profile_counts_the_processs_cpu_per_turn(bench_env: BenchEnv) -> None:
    async with variants(bench_env) as v:
        per_turn = await cpu_per_turn(v, "local", length=3, turns=2)
        stats = await profile_turns(v, "local", length=3, turns=2, timer=time.process_time)

    assert per_turn > 0
    rows = top_functions(stats, turns=2, top=30)
    assert any(row.function.startswith("cosmos_history/domain/service.py:") for row in rows)
    assert not any("select.epoll" in row.function for row in rows[:5])  # waiting costs no CPU
    lines = render_profile(rows, variant="local", length=3, turns=2, clock="CPU")
    assert lines[0] == "## CPU profile of a local-mode turn at 3 turns (2 turns profiled; per turn)"
