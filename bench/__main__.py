"""``python -m bench``: run every measurement, print the report and write docs/performance.md.
``python -m bench profile``: profile turns instead (``bench/profile.py``; ``make bench PROFILE=1``; ``--cpu``).
``python -m bench compare --before DIR``: this checkout's per-turn overhead against another's (``bench/compare.py``).

Starts its own local Cosmos DB (unless ``COSMOS_ENDPOINT`` names a real account) and its own
local host processes on 127.0.0.1, and stops them all before exiting.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
import warnings
from pathlib import Path

from .coldstart import measure_cold_start
from .durable import measure_durable
from .firsttoken import DEFAULT_DELAY, measure_first_token
from .hosts import ROOT, BenchEnv, bench_cosmos
from .inprocess import variants
from .listing import measure_listing, measure_route_partitions, render_listing
from .measure import CountRow, Latencies, measure_counts, measure_overhead, measure_throughput, overhead_plan
from .memory import measure_memory
from .report import Results, render, standard_notes
from .tokens import measure_input_tokens
from .wire import measure_wire


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


async def _in_process(
    bench: BenchEnv, lengths: list[int], scale: float, with_http: bool
) -> tuple[list[CountRow], dict[tuple[str, int], Latencies]]:
    async with variants(bench) as v:
        print(f"Cosmos traffic per turn at lengths {lengths} ...", flush=True)
        counts = await measure_counts(v, lengths)
        overhead: dict = {}
        if with_http:
            print("Per-turn overhead over HTTP ...", flush=True)
            overhead = await measure_overhead(v, bench.env, lengths, scale)
    return counts, overhead


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["profile"]:  # python -m bench profile: a turn's top functions by cumulative time
        from .profile import main as profile

        profile(argv[1:])
        return
    if argv[:1] == ["compare"]:  # python -m bench compare --before DIR: two checkouts' overhead, interleaved
        from .compare import main as compare

        compare(argv[1:])
        return
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--lengths", type=_ints, default=[1, 10, 100, 500], help="conversation lengths (turns)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the HTTP timing sample counts")
    parser.add_argument("--concurrency", type=_ints, default=[1, 8, 32, 64])
    parser.add_argument("--processes", type=_ints, default=[1, 2], help="host process counts for the load test")
    parser.add_argument("--total", type=int, default=128, help="turns per load-test cell (about)")
    parser.add_argument("--cold-runs", type=int, default=5, help="fresh processes per cold-start measurement")
    parser.add_argument("--skip-http", action="store_true", help="only in-process counts (and cold start)")
    parser.add_argument("--skip-cold", action="store_true")
    parser.add_argument("--skip-durable", action="store_true", help="no durable-turns section (bench/durable.py)")
    parser.add_argument("--listing-others", type=_ints, default=[10, 1000, 10000], help="other users' sessions")
    parser.add_argument("--listing-samples", type=int, default=20, help="listings timed per cell")
    parser.add_argument("--only-listing", action="store_true", help="only the listing part; prints, writes nothing")
    parser.add_argument("--first-token-samples", type=int, default=30, help="streamed turns timed per path")
    parser.add_argument("--first-token-delay", type=float, default=DEFAULT_DELAY, help="stand-in's time to first token")
    parser.add_argument("--skip-first-token", action="store_true")
    parser.add_argument("--memory-turns", type=int, default=10_000, help="turns of the memory run (one host)")
    parser.add_argument("--memory-sessions", type=int, default=1_000, help="sessions those turns are spread over")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "performance.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore", category=Warning, module="agent_framework.*")

    started = time.perf_counter()
    with bench_cosmos() as bench:
        print(f"Listing among {args.listing_others} other users' sessions; partitions per route ...", flush=True)
        listing = asyncio.run(measure_listing(bench, args.listing_others, args.listing_samples))
        routes = asyncio.run(measure_route_partitions(bench))
        if args.only_listing:
            ru_kind = "real `x-ms-request-charge`" if bench.real_account else "estimated RU"
            print("\n".join(render_listing(listing, routes, ru_kind, bench.real_account)))
            return
        counts, overhead = asyncio.run(_in_process(bench, args.lengths, args.scale, not args.skip_http))
        print("Cosmos DB requests per steady plain turn, counted on the wire ...", flush=True)
        wire = asyncio.run(measure_wire(bench.env))
        print(f"Model input tokens per turn at lengths {args.lengths} ...", flush=True)
        input_tokens = asyncio.run(measure_input_tokens(bench.env, args.lengths))
        throughput = []
        if not args.skip_http:
            print(f"Throughput at concurrency {args.concurrency} with {args.processes} processes ...", flush=True)
            throughput = asyncio.run(measure_throughput(bench.env, args.concurrency, args.processes, args.total))
        first_token = None
        if not args.skip_first_token:
            print(f"Time to first token ({args.first_token_samples} streamed turns per path) ...", flush=True)
            first_token = measure_first_token(bench, args.first_token_samples, args.first_token_delay)
        memory = None
        if not args.skip_memory:
            print(f"Memory over {args.memory_turns:,} turns across {args.memory_sessions:,} sessions ...", flush=True)
            memory = measure_memory(bench, args.memory_turns, args.memory_sessions)
        cold = None
        if not args.skip_cold:
            print(f"Cold start ({args.cold_runs} processes of each kind) ...", flush=True)
            cold = measure_cold_start(bench.env, args.cold_runs)
        durable: list[str] = []
        if not args.skip_durable:
            print("Durable turns: extra writes per streamed turn, resume latency ...", flush=True)
            durable = asyncio.run(measure_durable(bench))
    results = Results(
        real_account=bench.real_account,
        lengths=args.lengths,
        counts=counts,
        overhead=overhead,
        plans={length: overhead_plan(length, args.scale) for length in args.lengths},
        throughput=throughput,
        cold_start=cold,
        seconds=time.perf_counter() - started,
        notes=standard_notes(bench.real_account, args.scale, args.total),
        input_tokens=input_tokens,
        listing=listing,
        routes=routes,
        first_token=first_token,
        memory=memory,
        wire=wire,
    )
    report = render(results) + ("\n" + "\n".join(durable) if durable else "")
    print(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report, encoding="utf-8")
    print(f"Written to {args.output}")


if __name__ == "__main__":
    main()
