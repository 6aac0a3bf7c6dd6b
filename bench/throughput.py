"""``python -m bench.throughput``: the load test alone (#23 target 5), with what judging a change needs in one run.

Turns per second of one host process per app at each concurrency, p95 latency, and the ratio to the
framework provider's host measured in the same run, with the machine's load average. Cells run in
rounds, every configuration, client and variant taking its turn in each round, so a change in the
machine's other load weighs on all alike. It prints; it writes nothing (``python -m bench`` writes the
report). Options compare, in the same run:

- ``--clients aiohttp,httpx``: the load generator's HTTP client (``bench/loadclient.py``);
- ``--standins DIR,DIR``: local Cosmos DB stand-ins installed in other ``cosmos-emulator`` directories
  (say, the merged code's patch and this branch's), each with hosts of its own;
- ``--before CHECKOUT``: the backend host of another checkout (the merged code, say), on the first stand-in.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from devtools.local_cosmos import EMULATOR_DIR, EMULATOR_KEY, free_port, node_server

from .cpu import CpuMeter, CpuShare, pid_listening
from .hosts import ARTIFACTS, app_hosts, checkout_host
from .inprocess import Variant, new_session_id
from .loadclient import CLIENTS, LoadClient
from .measure import ThroughputRow, merged, post_turn, run_load


@dataclass(frozen=True)
class Setup:
    """One configuration under load: its label, the base URL of each variant's host and its stand-in's URL."""

    label: str
    bases: dict[Variant, str]
    standin: str


Key = tuple[str, LoadClient, Variant, int]


@contextmanager
def standin(directory: Path) -> Iterator[dict[str, str]]:
    """A keep-alive local Cosmos DB from ``directory``'s ``node_modules``; yields the hosts' environment."""
    library = directory / "node_modules" / "@vercel" / "cosmosdb-server" / "lib"
    node = shutil.which("node")
    if node is None or not library.is_dir():
        raise RuntimeError(f"no Node.js or no {library}: run `npm ci --prefix {directory}`")
    port = free_port()
    script = f"require({json.dumps(str(library))}).createHttpsServer({{keepAlive: true}}).listen({port}, '127.0.0.1')"
    ARTIFACTS.mkdir(exist_ok=True)
    log = ARTIFACTS / f"bench-throughput-cosmos-{port}.log"
    with node_server([node, "-e", script], port, name=f"The stand-in in {directory}", log_path=log, timeout=30):
        yield {
            "COSMOS_ENDPOINT": f"https://127.0.0.1:{port}",
            "COSMOS_KEY": EMULATOR_KEY,
            "COSMOS_DATABASE": f"bench-{uuid.uuid4().hex[:8]}",
            "COSMOS_CONTAINER": "sessions",
            "BENCH_PROVIDER_CONTAINER": "provider-history",
            "MODEL_PROVIDER": "offline",
            "LOG_LEVEL": "WARNING",
        }


async def warm(setups: list[Setup]) -> None:
    """One turn per variant and host before anything is timed (imports, clients, first-request paths)."""
    async with httpx.AsyncClient(timeout=300) as http:
        for setup in setups:
            for variant, base in setup.bases.items():
                await post_turn(http, base, variant, new_session_id("warm"), 1)


async def run(
    setups: list[Setup], clients: list[LoadClient], concurrencies: list[int], total: int, rounds: int
) -> tuple[dict[Key, ThroughputRow], dict[Key, CpuShare]]:
    """Every cell ``rounds`` times, interleaved; returns the merged cells and the CPU each took."""
    await warm(setups)
    cells: dict[Key, list[ThroughputRow]] = {}
    cpu: dict[Key, CpuShare] = {}
    for concurrency in concurrencies:
        for _, setup, client in itertools.product(range(rounds), setups, clients):
            for variant, base in setup.bases.items():
                key = (setup.label, client, variant, concurrency)
                meter = CpuMeter([pid_listening(base)], pid_listening(setup.standin))
                meter.start()
                row = await run_load([base], variant, concurrency, total, client)
                meter.add_to(cpu.setdefault(key, CpuShare()), row.requests)
                cells.setdefault(key, []).append(row)
    return {key: merged(rows) for key, rows in cells.items()}, cpu


def render(results: dict[Key, ThroughputRow], cpu: dict[Key, CpuShare]) -> list[str]:
    """One line per cell: turns/s, median and p95 latency, the CPU per turn of the host, the stand-in and the
    load generator, and the ratios to the provider of the same setup and client: measured turns/s, and
    turns/s of an instance bound by its own CPU (``1 / host CPU per turn``)."""
    lines = [
        f"{'setup':<12} {'client':<8} {'conc':>4} {'variant':<9} {'turns/s':>8} {'med ms':>7} {'p95 ms':>7} "
        f"{'host':>6} {'stand-in':>8} {'gen':>5}  {'ratio':>6} {'bound/s':>8} {'ratio':>6}"
    ]
    for key, row in results.items():
        label, client, variant, concurrency = key
        provider = results.get((label, client, "provider", concurrency))
        share, provider_share = cpu[key], cpu.get((label, client, "provider", concurrency))
        ratio = bound_ratio = ""
        if provider and provider_share and variant != "provider":
            ratio = f"{row.per_second / provider.per_second:.2f}x"
            bound_ratio = f"{share.bound_per_second / provider_share.bound_per_second:.2f}x"
        lines.append(
            f"{label:<12} {client:<8} {concurrency:>4} {variant:<9} {row.per_second:>8.1f} "
            f"{row.latencies.median * 1000:>7.1f} {row.latencies.p95 * 1000:>7.1f} "
            f"{share.per_turn_ms('host'):>6.2f} {share.per_turn_ms('standin'):>8.2f} "
            f"{share.per_turn_ms('generator'):>5.2f}  {ratio:>6} {share.bound_per_second:>8.1f} {bound_ratio:>6}"
        )
    return lines


def _paths(text: str) -> list[Path]:
    return [Path(part).resolve() for part in text.split(",") if part]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__)
    parser.add_argument("--concurrency", default="8,32,64", help="concurrent sessions per cell")
    parser.add_argument("--total", type=int, default=128, help="turns per cell and round (about)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", default="aiohttp", help=f"load generator clients, of {','.join(CLIENTS)}")
    parser.add_argument("--standins", type=_paths, default=[EMULATOR_DIR], help="cosmos-emulator directories")
    parser.add_argument("--before", type=Path, help="another checkout whose backend host is measured too")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    clients: list[LoadClient] = [c for c in CLIENTS if c in args.clients.split(",")]
    concurrencies = [int(part) for part in args.concurrency.split(",") if part]
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    with ExitStack() as stack:
        setups = []
        for index, directory in enumerate(args.standins):
            env = stack.enter_context(standin(directory))
            cosmos = env["COSMOS_ENDPOINT"]
            backend = stack.enter_context(app_hosts(env, "bench.bench_app", 1))[0]
            provider = stack.enter_context(app_hosts(env, "bench.provider_app", 1))[0]
            name = f"{directory.parent.name}" if len(args.standins) > 1 else "this"
            setups.append(Setup(name, {"local": backend, "service": backend, "provider": provider}, cosmos))
            if index == 0 and args.before is not None:
                before = stack.enter_context(checkout_host(args.before, env, app="bench.bench_app")).base
                setups.append(Setup("before", {"local": before, "service": before, "provider": provider}, cosmos))
        results, cpu = asyncio.run(run(setups, clients, concurrencies, args.total, args.rounds))
    print("CPU ms per turn of the host, the stand-in and the load generator; bound/s = turns/s at the host's CPU")
    print("\n".join(render(results, cpu)))
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)


if __name__ == "__main__":
    main()
