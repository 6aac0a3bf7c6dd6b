"""``python -m bench profile`` (``make bench PROFILE=1``): where a turn's time goes, as the top functions
by cumulative time per turn.

Turns of one session, seeded to ``--length`` turns as the benchmark seeds them, run through the
project's registered ``post_message`` function in this process (the code path of the traffic counts:
route, body parsing, lease, load, agent, model stand-in, save) against the benchmark's Cosmos DB,
under :mod:`cProfile`, after a warm-up turn on another session that pays the clients' start-up.
Times include waiting for Cosmos DB (inside the event loop's ``select``); the profiler slows Python
code down, so read the shares, not the milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from .hosts import ROOT, bench_cosmos
from .inprocess import Variant, Variants, new_session_id, variants
from .markdown import table

SITE_PACKAGES = "site-packages/"
STDLIB = sysconfig.get_paths()["stdlib"]


@dataclass(frozen=True)
class ProfileRow:
    """One function of the profile, its figures divided by the number of turns profiled."""

    function: str
    calls: float
    cumulative_ms: float
    own_ms: float


async def profile_turns(v: Variants, variant: Variant, length: int, turns: int) -> pstats.Stats:
    """Profile turns ``length`` to ``length + turns - 1`` of a session seeded with ``length - 1`` turns."""
    await v.turn(variant, new_session_id(variant, "profile-warm"), 1)
    session_id = new_session_id(variant, "profile")
    await v.seed(variant, session_id, length - 1)
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        for turn in range(length, length + turns):
            await v.turn(variant, session_id, turn)
    finally:
        profiler.disable()
    return pstats.Stats(profiler)


def where(filename: str, line: int, name: str) -> str:
    """``package/module.py:line(name)``: paths shortened to the repository or site-packages."""
    if SITE_PACKAGES in filename:
        filename = filename.split(SITE_PACKAGES, 1)[1]
    elif filename.startswith(STDLIB):
        filename = filename[len(STDLIB) + 1 :]
    elif filename.startswith(str(ROOT)):
        filename = filename[len(str(ROOT)) + 1 :]
    return f"{name}" if filename == "~" else f"{filename}:{line}({name})"


def top_functions(stats: pstats.Stats, turns: int, top: int) -> list[ProfileRow]:
    """The ``top`` functions by cumulative time, per turn."""
    entries = stats.stats  # type: ignore[attr-defined]  # {(file, line, name): (cc, nc, tt, ct, callers)}
    ranked = sorted(entries.items(), key=lambda item: item[1][3], reverse=True)[:top]
    return [
        ProfileRow(where(*key), calls / turns, 1000 * cumulative / turns, 1000 * own / turns)
        for key, (_, calls, own, cumulative, _) in ranked
    ]


def render(rows: list[ProfileRow], *, variant: Variant, length: int, turns: int) -> list[str]:
    return [
        f"## Profile of a {variant}-mode turn at {length} turns ({turns} turns profiled; per turn)",
        "",
        *table(
            ["Function", "Calls", "Cumulative ms", "Own ms"],
            [[f"`{r.function}`", f"{r.calls:,.1f}", f"{r.cumulative_ms:,.2f}", f"{r.own_ms:,.2f}"] for r in rows],
        ),
    ]


async def _run(variant: Variant, length: int, turns: int) -> pstats.Stats:
    with bench_cosmos() as bench:
        async with variants(bench) as v:
            return await profile_turns(v, variant, length, turns)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench profile", description=__doc__)
    parser.add_argument("--variant", choices=["local", "service"], default="local")
    parser.add_argument("--length", type=int, default=100, help="the conversation's length at the first profiled turn")
    parser.add_argument("--turns", type=int, default=20, help="turns profiled")
    parser.add_argument("--top", type=int, default=40, help="functions listed")
    parser.add_argument("--save", type=Path, help="also write the raw profile (pstats format) here")
    args = parser.parse_args(argv)
    print(f"Profiling {args.turns} {args.variant}-mode turns from length {args.length} ...", flush=True)
    stats = asyncio.run(_run(args.variant, args.length, args.turns))
    if args.save is not None:
        stats.dump_stats(args.save)
    rows = top_functions(stats, args.turns, args.top)
    print("\n".join(render(rows, variant=args.variant, length=args.length, turns=args.turns)))
