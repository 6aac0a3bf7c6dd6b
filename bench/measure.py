"""The measurements: Cosmos traffic per turn, per-turn overhead over HTTP, throughput under concurrency."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import statistics
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlparse

import httpx

from .counting import RequestCounter
from .cpu import CpuMeter, CpuShare, merged_shares, pid_listening
from .hosts import app_hosts
from .inprocess import USER, VARIANTS, Variant, Variants, new_session_id, provider_container, user_message
from .loadclient import LoadClient, Post, load_session, timed_post
from .provider import CONTAINER_HEADER


@dataclass(frozen=True)
class CountRow:
    """Cosmos traffic of the turn that makes a conversation ``length`` turns long."""

    variant: Variant
    length: int
    traffic: RequestCounter
    stored_bytes: int


async def measure_counts(v: Variants, lengths: list[int]) -> list[CountRow]:
    """For each variant and length: a session seeded with ``length - 1`` turns, then turn ``length`` counted.

    Counts are deterministic, so one turn per cell is enough; a warm-up turn per variant first
    pays the client's one-off metadata reads, which are not per-turn costs.
    """
    for variant in VARIANTS:
        with v.counter.pause():
            await v.turn(variant, new_session_id(variant, "warm"), 1)
    rows = []
    for variant, length in itertools.product(VARIANTS, lengths):
        session_id = new_session_id(variant, str(length))
        await v.seed(variant, session_id, length - 1)
        before = v.counter.snapshot()
        await v.turn(variant, session_id, length)
        traffic = v.counter.since(before)
        rows.append(CountRow(variant, length, traffic, await v.stored_bytes(variant, session_id)))
    return rows


@dataclass
class Latencies:
    """Wall times of HTTP turns, in seconds."""

    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def p95(self) -> float:
        return percentile(self.samples, 95)


def percentile(samples: list[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: with few samples it is an observed value)."""
    ordered = sorted(samples)
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]


@dataclass(frozen=True)
class OverheadPlan:
    """How many sessions per length and measured turns per session (lengths L .. L+turns-1)."""

    sessions: int
    turns: int


def overhead_plan(length: int, scale: float) -> OverheadPlan:
    if length == 1:
        return OverheadPlan(max(3, int(30 * scale)), 1)
    return OverheadPlan(3, max(2, int(10 * scale)))


async def post_turn(
    http: httpx.AsyncClient, base: str, variant: Variant, session_id: str, turn: int, container: str | None = None
) -> float:
    """One turn over HTTP; its wall time. The backend gets the mode; the provider app gets its container."""
    headers = {"X-User-Id": USER}
    if variant == "provider":
        headers[CONTAINER_HEADER] = container or provider_container(session_id)
    started = time.perf_counter()
    response = await http.post(
        f"{base}/sessions/{session_id}/messages",
        json={"message": user_message(turn), "mode": "local" if variant == "provider" else variant},
        headers=headers,
    )
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"{variant} turn {turn} over HTTP answered {response.status_code}: {response.text[:300]}")
    return elapsed


async def measure_overhead(
    v: Variants, env: dict[str, str], lengths: list[int], scale: float
) -> dict[tuple[Variant, int], Latencies]:
    """Per-turn wall time through one host process per app, variants interleaved turn by turn.

    The stand-in model takes no time, so a turn's HTTP round trip is the backend's overhead
    (plus the same local-host and client costs for every variant). Sessions are seeded in
    this process (same database) and then continued over HTTP.
    """
    results: dict[tuple[Variant, int], Latencies] = {}
    with app_hosts(env, "bench.bench_app", 1) as backend, app_hosts(env, "bench.provider_app", 1) as provider:
        bases = {"local": backend[0], "service": backend[0], "provider": provider[0]}
        async with httpx.AsyncClient(timeout=300) as http:
            for variant in VARIANTS:  # warm-up: imports, client metadata, first-request paths
                for turn in (1, 2, 3):
                    await post_turn(http, bases[variant], variant, f"warm-{variant}", turn)
            for length in lengths:
                plan = overhead_plan(length, scale)
                sessions = {
                    variant: [new_session_id(variant, f"h{length}") for _ in range(plan.sessions)]
                    for variant in VARIANTS
                }
                for variant in VARIANTS:
                    for session_id in sessions[variant]:
                        await v.seed(variant, session_id, length - 1)
                for session_id in sessions["provider"]:  # the host opens each container before timing starts
                    await prepare_container(http, bases["provider"], provider_container(session_id))
                for index, step in itertools.product(range(plan.sessions), range(plan.turns)):
                    for variant in VARIANTS:
                        elapsed = await post_turn(
                            http, bases[variant], variant, sessions[variant][index], length + step
                        )
                        results.setdefault((variant, length), Latencies()).samples.append(elapsed)
    return results


async def prepare_container(http: httpx.AsyncClient, base: str, container: str) -> None:
    """Make the provider host create and cache ``container`` now, outside any timed request."""
    response = await http.get(f"{base}/health", headers={CONTAINER_HEADER: container})
    response.raise_for_status()


@dataclass(frozen=True)
class ThroughputRow:
    variant: Variant
    processes: int
    concurrency: int
    requests: int
    seconds: float
    latencies: Latencies
    cpu: CpuShare | None = None  # CPU time of the hosts, the local Cosmos DB and the load generator (bench/cpu.py)

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds


async def run_load(
    bases: list[str], variant: Variant, concurrency: int, total: int, client: LoadClient = "aiohttp"
) -> ThroughputRow:
    """``concurrency`` sessions, each running turns back to back, requests spread round-robin over ``bases``.

    The requests go through one keep-alive session of ``client`` (``bench/loadclient.py``), the same for
    every variant."""
    turns = max(2, total // concurrency)
    latencies = Latencies()
    next_base = itertools.cycle(range(len(bases)))
    container = f"p-load-{len(bases)}-{concurrency}-{uuid.uuid4().hex[:8]}"
    headers = {"X-User-Id": USER}
    if variant == "provider":
        headers[CONTAINER_HEADER] = container
    mode = "local" if variant == "provider" else variant

    async def session(post: Post) -> None:
        session_id = new_session_id(variant, f"c{concurrency}")
        for turn in range(1, turns + 1):
            url = f"{bases[next(next_base)]}/sessions/{session_id}/messages"
            payload = {"message": user_message(turn), "mode": mode}
            latencies.samples.append(await timed_post(post, url, payload, headers))

    if variant == "provider":  # a fresh container per cell, opened in every process before timing
        async with httpx.AsyncClient(timeout=300) as http:
            for base in bases:
                await prepare_container(http, base, container)
    async with load_session(client, concurrency * 2) as post:
        started = time.perf_counter()
        await asyncio.gather(*(session(post) for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return ThroughputRow(variant, len(bases), concurrency, turns * concurrency, seconds, latencies)


def merged(rows: list[ThroughputRow]) -> ThroughputRow:
    """One cell from its rounds: their turns, their seconds and all their latencies."""
    first = rows[0]
    latencies = Latencies([sample for row in rows for sample in row.latencies.samples])
    seconds = sum(row.seconds for row in rows)
    return ThroughputRow(
        first.variant,
        first.processes,
        first.concurrency,
        sum(r.requests for r in rows),
        seconds,
        latencies,
        merged_shares([r.cpu for r in rows]),
    )


async def measure_throughput(
    env: dict[str, str],
    concurrencies: list[int],
    process_counts: list[int],
    total: int,
    rounds: int = 3,
    client: LoadClient = "aiohttp",
) -> list[ThroughputRow]:
    """Bounded load (about ``total`` turns per cell and round) against 1 and N host processes of each app.

    Each cell runs in ``rounds`` rounds, the variants taking turns within each round, so a change in the
    machine's other load during the run weighs on every variant alike (the ratios are what counts)."""
    rows = []
    most = max(process_counts)
    endpoint = urlparse(env["COSMOS_ENDPOINT"])
    standin = pid_listening(endpoint.port or 443) if endpoint.hostname in ("localhost", "127.0.0.1") else None
    with app_hosts(env, "bench.bench_app", most) as backends, app_hosts(env, "bench.provider_app", most) as providers:
        async with httpx.AsyncClient(timeout=300) as http:
            for base in backends + providers:  # warm every process before timing anything
                app_variant: Variant = "provider" if base in providers else "local"
                await post_turn(http, base, app_variant, new_session_id("warm"), 1)
                if app_variant == "local":
                    await post_turn(http, base, "service", new_session_id("warm"), 1)
        for processes, concurrency in itertools.product(process_counts, concurrencies):
            cells: dict[Variant, list[ThroughputRow]] = {variant: [] for variant in VARIANTS}
            for _, variant in itertools.product(range(max(1, rounds)), VARIANTS):
                bases = (providers if variant == "provider" else backends)[:processes]
                meter = CpuMeter([pid_listening(base) for base in bases], standin)
                meter.start()
                row = await run_load(bases, variant, concurrency, total, client)
                meter.add_to(share := CpuShare(), row.requests)
                cells[variant].append(dataclasses.replace(row, cpu=share))
            rows += [merged(cells[variant]) for variant in VARIANTS]
    return rows
