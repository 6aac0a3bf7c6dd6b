"""``python -m bench compare --before <checkout>``: the per-turn overhead of this checkout and another one (the
merged code, say), measured in one run with their turns interleaved, as a before/after table.

Each checkout serves the project's routes with the benchmark's model stand-in (``bench.bench_app``) in a host
process of its own, against the same local Cosmos DB; the provider's host takes its turn too, so each side's
ratios to it and between its own modes come from the same minutes of the same shared machine. Sessions are
seeded by this checkout (the document format is the same); each timed turn is one HTTP request, as in the
report's overhead table (:func:`bench.measure.measure_overhead`), and the order of the variants rotates from one
turn to the next so that none always follows the same one.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx

from .firsttoken import host_in
from .hosts import app_hosts, bench_cosmos
from .inprocess import Variant, Variants, new_session_id, provider_container, variants
from .markdown import table
from .measure import Latencies, overhead_plan, post_turn, prepare_container


@dataclass(frozen=True)
class Side:
    """One timed path: a variant (its mode, or the provider) on one checkout's host."""

    variant: Variant
    before: bool = False

    @property
    def label(self) -> str:
        return f"{self.variant} (before)" if self.before else self.variant


SIDES = (Side("local"), Side("local", True), Side("service"), Side("service", True), Side("provider"))


async def measure_compare(
    v: Variants, bases: dict[Side, str], lengths: list[int], scale: float
) -> dict[tuple[str, int], Latencies]:
    """Wall time of HTTP turns per side and length, the sides interleaved turn by turn."""
    results: dict[tuple[str, int], Latencies] = {}
    async with httpx.AsyncClient(timeout=300) as http:
        for side in bases:  # warm-up: imports, client metadata, first-request paths
            for turn in (1, 2, 3):
                await post_turn(http, bases[side], side.variant, f"warm-{side.variant}-{side.before}", turn)
        for length in lengths:
            plan = overhead_plan(length, scale)
            sessions = {
                side: [new_session_id(side.variant, f"c{length}") for _ in range(plan.sessions)] for side in bases
            }
            for side, ids in sessions.items():
                for session_id in ids:
                    await v.seed(side.variant, session_id, length - 1)
                    if side.variant == "provider":
                        await prepare_container(http, bases[side], provider_container(session_id))
            order = list(bases)
            for index, step in itertools.product(range(plan.sessions), range(plan.turns)):
                for side in order:
                    elapsed = await post_turn(http, bases[side], side.variant, sessions[side][index], length + step)
                    results.setdefault((side.label, length), Latencies()).samples.append(elapsed)
                order = order[1:] + order[:1]
    return results


def _ms(lat: Latencies | None) -> str:
    return "-" if lat is None else f"{lat.median * 1000:,.1f}"


def _ratio(top: Latencies | None, bottom: Latencies | None) -> str:
    return "-" if top is None or bottom is None else f"{top.median / bottom.median:.2f}x"


def render(results: dict[tuple[str, int], Latencies], lengths: list[int], before: Path, load: str) -> list[str]:
    """The before/after table: medians per side, local mode's ratios to service mode and to the provider."""
    rows = []
    for length in lengths:

        def at(label: str, length: int = length) -> Latencies | None:
            return results.get((label, length))

        local, local_before, provider = at("local"), at("local (before)"), at("provider")
        rows.append(
            [
                str(length),
                f"{_ms(local_before)} → {_ms(local)} ({_ratio(local, local_before)})",
                f"{_ms(at('service (before)'))} → {_ms(at('service'))}",
                f"{_ratio(local_before, at('service (before)'))} → {_ratio(local, at('service'))}",
                f"{_ratio(local_before, provider)} → {_ratio(local, provider)}",
                _ms(provider),
                str(len(local.samples) if local else 0),
            ]
        )
    return [
        f"## Per-turn overhead, before ({before}) → after (this checkout), interleaved in one run",
        "",
        f"Median HTTP turn in ms against the model stand-in (no model time). Load average at the end: {load}.",
        "",
        *table(
            [
                "Turns",
                "Local mode",
                "Service mode",
                "Local ÷ service (target ≤ 1.2x)",
                "Local ÷ provider (target ≤ 0.5x)",
                "Provider",
                "Samples per side",
            ],
            rows,
        ),
    ]


async def _run(before: Path, lengths: list[int], scale: float, with_provider: bool) -> dict[tuple[str, int], Latencies]:
    with bench_cosmos() as bench, ExitStack() as stack:
        bases: dict[Side, str] = {}
        here = stack.enter_context(app_hosts(bench.env, "bench.bench_app", 1))[0]
        there = stack.enter_context(host_in(before, bench.env, app="bench.bench_app"))
        for side in SIDES:
            if side.variant == "provider":
                if with_provider:
                    bases[side] = stack.enter_context(app_hosts(bench.env, "bench.provider_app", 1))[0]
                continue
            bases[side] = there if side.before else here
        async with variants(bench) as v:
            return await measure_compare(v, bases, lengths, scale)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench compare", description=__doc__)
    parser.add_argument("--before", type=Path, required=True, help="the other checkout (say, a worktree of main)")
    parser.add_argument("--lengths", default="100,500", help="conversation lengths (turns), comma-separated")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the sample counts (10 turns × 3 sessions)")
    parser.add_argument("--no-provider", action="store_true", help="leave the provider out (only before vs after)")
    args = parser.parse_args(argv)
    lengths = [int(part) for part in args.lengths.split(",") if part]
    before = args.before.resolve()
    if not (before / "bench" / "bench_app.py").exists():
        parser.error(f"{before} is not a checkout of this project with bench/bench_app.py")
    print(f"Comparing {before} (before) with this checkout at lengths {lengths} ...", flush=True)
    results = asyncio.run(_run(before, lengths, args.scale, not args.no_provider))
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print("\n".join(render(results, lengths, before, load)))
