"""``python -m bench compare --before <checkout>``: the per-turn overhead of this checkout and another one (the
merged code, say), measured in one run with their turns interleaved, as a before/after table.

Each side (a checkout's local or service mode, and the provider) is served by a host process of its own (the
project's routes with the benchmark's model stand-in, ``bench.bench_app``) against the same local Cosmos DB, so
each side's ratios come from the same minutes of the same shared machine. Besides each turn's wall time, the
table gives each host's CPU time per turn (the kernel's run time of its threads over the timed turns): on a
machine shared with other work, wall times wait for the CPU, and the CPU a turn costs is the steadier figure.
Sessions are seeded by this checkout (the document format is the same); each timed turn is one HTTP request, as in the
report's overhead table (:func:`bench.measure.measure_overhead`), and the order of the variants rotates from one
turn to the next so that none always follows the same one.

``--floor`` serves the after side from this checkout with ``BENCH_FLOOR=1`` (:mod:`bench.floor`): what local mode
would cost with the app's per-message checks and the framework's copies of the window switched off.
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

from .floor import ENV as FLOOR_ENV
from .hosts import ROOT, Host, bench_cosmos, checkout_host
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


@dataclass
class Timed:
    """One side's figures at one length: wall times of its turns and its host's CPU seconds over them."""

    latencies: Latencies
    cpu_seconds: float = 0.0

    @property
    def cpu_per_turn(self) -> float:
        return self.cpu_seconds / len(self.latencies.samples)


async def measure_compare(
    v: Variants, hosts: dict[Side, Host], lengths: list[int], scale: float
) -> dict[tuple[str, int], Timed]:
    """Wall time of HTTP turns per side and length, the sides interleaved turn by turn, and each host's CPU."""
    results: dict[tuple[str, int], Timed] = {}
    async with httpx.AsyncClient(timeout=300) as http:
        for side, host in hosts.items():  # warm-up: imports, client metadata, first-request paths
            for turn in (1, 2, 3):
                await post_turn(http, host.base, side.variant, f"warm-{side.variant}-{side.before}", turn)
        for length in lengths:
            plan = overhead_plan(length, scale)
            sessions = {
                side: [new_session_id(side.variant, f"c{length}") for _ in range(plan.sessions)] for side in hosts
            }
            for side, ids in sessions.items():
                for session_id in ids:
                    await v.seed(side.variant, session_id, length - 1)
                    if side.variant == "provider":
                        await prepare_container(http, hosts[side].base, provider_container(session_id))
            timed = {side: Timed(Latencies()) for side in hosts}
            started = {side: host.cpu_seconds() for side, host in hosts.items()}
            order = list(hosts)
            for index, step in itertools.product(range(plan.sessions), range(plan.turns)):
                for side in order:
                    turn = length + step
                    elapsed = await post_turn(http, hosts[side].base, side.variant, sessions[side][index], turn)
                    timed[side].latencies.samples.append(elapsed)
                order = order[1:] + order[:1]
            for side, host in hosts.items():
                timed[side].cpu_seconds = host.cpu_seconds() - started[side]
                results[(side.label, length)] = timed[side]
    return results


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:,.1f}"


def _ratio(top: float | None, bottom: float | None) -> str:
    return "-" if top is None or bottom is None else f"{top / bottom:.2f}x"


def _change(before: float | None, after: float | None) -> str:
    return f"{_ms(before)} → {_ms(after)} ({_ratio(after, before)})"


def render(
    results: dict[tuple[str, int], Timed], lengths: list[int], before: Path, after: Path | str | None, load: str
) -> list[str]:
    """The before/after table: per side, the median wall time and the CPU time per turn; local mode's ratios."""
    rows = []
    for length in lengths:
        wall: dict[str, float | None] = {}
        cpu: dict[str, float | None] = {}
        for side in SIDES:
            found = results.get((side.label, length))
            wall[side.label] = found.latencies.median if found else None
            cpu[side.label] = found.cpu_per_turn if found else None
        for kind, figures in (("wall (median)", wall), ("CPU of the host", cpu)):
            rows.append(
                [
                    f"{length}, {kind}",
                    _change(figures["local (before)"], figures["local"]),
                    _change(figures["service (before)"], figures["service"]),
                    f"{_ratio(figures['local (before)'], figures['service (before)'])} → "
                    f"{_ratio(figures['local'], figures['service'])}",
                    f"{_ratio(figures['local (before)'], figures['provider'])} → "
                    f"{_ratio(figures['local'], figures['provider'])}",
                    _ms(figures["provider"]),
                ]
            )
    samples = {len(timed.latencies.samples) for timed in results.values()}
    return [
        f"## Per-turn overhead, before ({before}) → after ({after or 'this checkout'}), interleaved in one run",
        "",
        f"Milliseconds per turn against the model stand-in (no model time); {'/'.join(map(str, sorted(samples)))} "
        f"turns per side and length. Load average at the end: {load}.",
        "",
        *table(
            [
                "Turns, figure",
                "Local mode",
                "Service mode",
                "Local ÷ service (target ≤ 1.2x)",
                "Local ÷ provider (target ≤ 0.5x)",
                "Provider",
            ],
            rows,
        ),
    ]


FLOOR_LABEL = f"this checkout with {FLOOR_ENV}=1: its per-message checks and the framework's copies switched off"


async def _run(
    before: Path, after: Path | None, lengths: list[int], scale: float, with_provider: bool, floor: bool = False
) -> dict[tuple[str, int], Timed]:
    with bench_cosmos() as bench, ExitStack() as stack:
        hosts: dict[Side, Host] = {}
        for side in SIDES:
            if side.variant == "provider":
                if with_provider:
                    hosts[side] = stack.enter_context(checkout_host(ROOT, bench.env, app="bench.provider_app"))
                continue
            checkout = before if side.before else after or ROOT
            env = bench.env | ({FLOOR_ENV: "1"} if floor and not side.before else {})
            hosts[side] = stack.enter_context(checkout_host(checkout, env, app="bench.bench_app"))
        async with variants(bench) as v:
            return await measure_compare(v, hosts, lengths, scale)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench compare", description=__doc__)
    parser.add_argument("--before", type=Path, help="the other checkout (a worktree of main, say)")
    parser.add_argument("--after", type=Path, help="another checkout in place of this one (one change at a time)")
    parser.add_argument("--lengths", default="100,500", help="conversation lengths (turns), comma-separated")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the sample counts (10 turns × 3 sessions)")
    parser.add_argument("--no-provider", action="store_true", help="leave the provider out (only before vs after)")
    parser.add_argument("--floor", action="store_true", help="after: this checkout, checks off (bench/floor.py)")
    args = parser.parse_args(argv)
    if args.floor and args.after:
        parser.error("--floor measures this checkout as the after side: leave --after out")
    if args.before is None and not args.floor:
        parser.error("--before is required (or --floor, which compares this checkout with its own floor)")
    lengths = [int(part) for part in args.lengths.split(",") if part]
    before, after = (args.before or ROOT).resolve(), args.after.resolve() if args.after else None
    for checkout in (before, after):
        if checkout is not None and not (checkout / "bench" / "bench_app.py").exists():
            parser.error(f"{checkout} is not a checkout of this project with bench/bench_app.py")
    label = FLOOR_LABEL if args.floor else after
    print(f"Comparing {before} (before) with {label or 'this checkout'} at lengths {lengths} ...", flush=True)
    results = asyncio.run(_run(before, after, lengths, args.scale, not args.no_provider, args.floor))
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print("\n".join(render(results, lengths, before, label, load)))
