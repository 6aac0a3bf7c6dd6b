"""Memory: the resident set of one host process over many turns across many sessions.

One ``bench.bench_app`` host (the project's routes, the zero-latency model stand-in) serves ``turns``
local-mode turns spread over ``sessions`` sessions: every session gets its first turn, then its
second, and so on, by a few concurrent clients. The host's RSS (``VmRSS`` of ``/proc/<pid>/status``)
is read after a warm-up turn (*start*), every ``every`` turns, and at the end; *settled* is the first
reading after a tenth of the turns, when caches that fill once (clients, compiled code, pools) are full.
Flat means the end stays within :data:`FLAT_GROWTH` of settled: a leak per turn or per session would
grow it all the way.

    python -m bench.memory [--turns 10000] [--sessions 1000]
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from devtools.devhost import running_host

from .hosts import ARTIFACTS, BenchEnv, bench_cosmos
from .inprocess import new_session_id
from .markdown import table
from .measure import post_turn

FLAT_GROWTH = 0.10
"""How much the RSS may grow from settled to the end and still count as flat."""


def rss_bytes(pid: int) -> int:
    """The resident set size of process ``pid`` (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


@dataclass(frozen=True)
class MemoryRun:
    turns: int
    sessions: int
    concurrency: int
    readings: list[tuple[int, int]] = field(default_factory=list)
    """``(turns done, RSS bytes)``, the first after the warm-up turn (0 done)."""

    @property
    def start(self) -> int:
        return self.readings[0][1]

    @property
    def settled(self) -> int:
        return next(rss for done, rss in self.readings if done >= self.turns // 10)

    @property
    def peak(self) -> int:
        return max(rss for _, rss in self.readings)

    @property
    def end(self) -> int:
        return self.readings[-1][1]

    @property
    def growth(self) -> float:
        """End over settled, minus one."""
        return self.end / self.settled - 1

    @property
    def flat(self) -> bool:
        return self.growth <= FLAT_GROWTH


async def _load(base: str, pid: int, turns: int, sessions: int, every: int, concurrency: int) -> list[tuple[int, int]]:
    ids = [new_session_id("local", "mem") for _ in range(sessions)]
    plan = iter((ids[index % sessions], index // sessions + 1) for index in range(turns))
    readings = []
    done = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=300, limits=limits) as http:
        await post_turn(http, base, "local", new_session_id("local", "mem-warm"), 1)
        readings.append((0, rss_bytes(pid)))

        async def worker() -> None:
            nonlocal done
            for session_id, turn in plan:  # a shared iterator: each turn is taken once
                await post_turn(http, base, "local", session_id, turn)
                done += 1
                if done % every == 0 or done == turns:
                    readings.append((done, rss_bytes(pid)))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return sorted(set(readings))


def measure_memory(
    bench: BenchEnv, turns: int = 10_000, sessions: int = 1_000, every: int = 500, concurrency: int = 8
) -> MemoryRun:
    """Run the load against one fresh ``bench.bench_app`` host and read its RSS along the way.

    A session's turns are ``sessions`` turns apart in the plan, so with fewer concurrent clients than
    sessions a session's previous turn has always finished (no lease conflicts)."""
    if concurrency > sessions:
        raise ValueError("memory: concurrency must not exceed the number of sessions")
    ARTIFACTS.mkdir(exist_ok=True)
    with running_host(bench.env, app="bench.bench_app", log_path=ARTIFACTS / "bench-hosts.log") as host:
        readings = asyncio.run(_load(host.base, host.process.pid, turns, sessions, max(1, every), concurrency))
    return MemoryRun(turns, sessions, concurrency, readings)


def _mb(size: int) -> str:
    return f"{size / 2**20:,.1f}"


def render(run: MemoryRun) -> list[str]:
    rows = [[f"{done:,}", _mb(rss)] for done, rss in run.readings]
    return [
        "## Memory over many turns",
        "",
        f"RSS of one host process (`bench.bench_app`, local mode) over {run.turns:,} turns across "
        f"{run.sessions:,} sessions, {run.concurrency} clients at a time (`bench/memory.py`): start "
        f"{_mb(run.start)} MB (after one warm-up turn), settled {_mb(run.settled)} MB (after a tenth of the "
        f"turns), peak {_mb(run.peak)} MB, "
        f"end {_mb(run.end)} MB ({run.growth:+.1%} from settled).",
        "",
        *table(["Turns done", "RSS MB"], rows),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    parser.add_argument("--turns", type=int, default=10_000)
    parser.add_argument("--sessions", type=int, default=1_000)
    parser.add_argument("--every", type=int, default=500, help="turns between RSS readings")
    args = parser.parse_args(argv)
    with bench_cosmos() as bench:
        run = measure_memory(bench, args.turns, args.sessions, args.every)
    print("\n".join(render(run)))


if __name__ == "__main__":
    main()
