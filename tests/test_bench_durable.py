"""Keeps the durable-turns benchmark alive (bench/durable.py): a tiny run, its counts checked, no timing assertions."""

from __future__ import annotations

import math

import pytest

from bench.durable import STREAM_SECONDS, measure_durable, turn_cost
from bench.hosts import BenchEnv

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bench_env(cosmos_env: dict[str, str]) -> BenchEnv:
    return BenchEnv(dict(cosmos_env), real_account=False)


async def test_a_plain_turn_writes_what_it_always_did_and_a_streamed_one_a_bounded_number_more(bench_env):
    plain = await turn_cost(bench_env, None, 2, seconds=0.5)
    streamed = await turn_cost(bench_env, 250, 2, seconds=0.5)

    # The claim-and-read batch and the commit batch (both write): no record, no events.
    assert plain.requests == 2 and plain.writes == 2
    # Two record writes and at most one batch per interval (and one at the end) on top; one read per interval.
    batches = math.ceil(0.5 / 0.25) + 1
    assert plain.writes + 2 < streamed.writes <= plain.writes + 2 + batches + 1
    assert streamed.ru > plain.ru


async def test_the_report_section_names_both_figures(bench_env):
    lines = await measure_durable(bench_env, samples=1)

    text = "\n".join(lines)
    assert "| plain |" in text and "EVENTS_FLUSH_MS=1000" in text and "replay a finished turn whole" in text
    assert f"over {STREAM_SECONDS:.0f} s" in text
