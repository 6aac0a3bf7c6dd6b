"""Keeps the before/after comparison and the CPU profile of the benchmark alive: tiny runs, no timing assertions."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from agent_framework import Content, Message

from bench.compare import SIDES, Side, measure_compare, render
from bench.floor import ENV as FLOOR_ENV
from bench.floor import checks_off
from bench.hosts import BenchEnv, Host, checkout_host
from bench.inprocess import USER, new_session_id, variants
from bench.measure import post_turn
from bench.profile import cpu_per_turn, profile_turns, top_functions
from bench.profile import render as render_profile
from cosmos_history.domain import stored_forms

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


def test_the_floor_trusts_a_fingerprint_once_taken_and_only_inside_its_block() -> None:
    message = Message(role="user", contents=[Content.from_text("before")])
    with checks_off() as switched:
        known = stored_forms.message_key(message)
        message.contents[0].text = "changed in place"
        trusted = stored_forms.message_key(message)

    assert "cosmos_history.domain.stored_forms.message_key" in switched
    assert trusted == known  # unsafe by design: the floor's measure only
    assert stored_forms.message_key(message) != known


def test_a_floor_host_keeps_its_checks_off_for_good() -> None:
    script = (
        "import gc; from bench.floor import switch_off_for_process; switch_off_for_process(); gc.collect(); "
        "from cosmos_history.domain import stored_forms; print(stored_forms.message_key.__qualname__)"
    )
    shown = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True)

    assert shown.stdout.strip() == "_memoized.<locals>.once"


async def test_a_floor_host_keeps_the_same_history_as_the_app(bench_env: BenchEnv) -> None:
    """The floor switches off checks, not behaviour: the same turns leave the same window and the same archive."""
    kept = []
    with ExitStack() as stack:
        hosts = [
            stack.enter_context(checkout_host(REPO, bench_env.env | extra, app="bench.bench_app"))
            for extra in ({}, {FLOOR_ENV: "1"})
        ]
        async with httpx.AsyncClient(timeout=120, headers={"X-User-Id": USER}) as http:
            for host in hosts:
                session_id = new_session_id("local", "floor")
                for turn in range(1, 25):
                    await post_turn(http, host.base, "local", session_id, turn)
                session = (await http.get(f"{host.base}/sessions/{session_id}")).json()
                page = (await http.get(f"{host.base}/sessions/{session_id}/messages", params={"limit": 200})).json()
                window = [(m["role"], m["text"]) for m in session["messages"]]
                kept.append((session["archivedMessages"], window, [(m["role"], m["text"]) for m in page["messages"]]))

    archived, window, everything = kept[0]
    assert archived > 0 and len(everything) == 48 and window == everything[archived:]
    assert kept[1] == kept[0]
