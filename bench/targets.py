"""The benchmark's targets, each reported as met or not met with the figure measured."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cosmos_history import Settings

from .coldstart import ColdStart
from .inprocess import Variant
from .markdown import kb as _kb
from .markdown import mark as _mark
from .markdown import ms as _ms
from .markdown import table as _table
from .measure import CountRow
from .wire import wire_row

if TYPE_CHECKING:
    from .report import Results

BEFORE_COMPACTION_WRITTEN_KB = {100: 150.7, 500: 114.8}
"""Local-mode bytes written per turn before history compaction (docs/performance.md of that time)."""


def count_row(results: Results, variant: Variant, length: int) -> CountRow | None:
    return next((r for r in results.counts if r.variant == variant and r.length == length), None)


def target_lines(results: Results) -> list[str]:
    steady = [r for r in results.counts if r.length > 1]
    rows: list[list[str]] = []
    local_rt = sorted({r.traffic.requests for r in steady if r.variant == "local"})
    service_rt = sorted({r.traffic.requests for r in steady if r.variant == "service"})
    provider_rt = sorted({r.traffic.requests for r in steady if r.variant == "provider"})
    rows.append(
        [
            "Cosmos round trips per steady-state turn: 2, lease included (claim-and-read batch + commit batch)",
            f"local {local_rt}, service {service_rt}",
            _mark(all(n <= 2 for n in local_rt + service_rt)),
        ]
    )
    if results.wire is not None:
        rows.append(wire_row(results.wire))
    rows.append(
        ["Per-message provider: at least 3 per turn", f"provider {provider_rt}", _mark(min(provider_rt or [0]) >= 3)]
    )
    service = [r.stored_bytes for r in results.counts if r.variant == "service"]
    rows.append(
        [
            "Service mode stored bytes constant and < 1 KB",
            f"{min(service):,} to {max(service):,} bytes" if service else "n/a",
            _mark(bool(service) and max(service) < 1024 and max(service) - min(service) < 64),
        ]
    )
    written = [(r.length, r.traffic.written_bytes) for r in results.counts if r.variant == "local"]
    defaults = Settings()
    budget, window = defaults.max_session_bytes, defaults.max_history_messages
    rows.append(
        [
            f"Local mode bytes written per turn bounded by the history budget (MAX_SESSION_BYTES "
            f"{budget:,}, MAX_HISTORY_MESSAGES {window})",
            ", ".join(f"{_kb(b)} at {n}" for n, b in written),
            _mark(
                bool(written) and max(b for _, b in written) <= budget and written[-1][1] <= max(b for _, b in written)
            ),
        ]
    )
    rows += _compaction_targets(results)
    rows += overhead_rows(results)
    rows += first_token_rows(results)
    rows += throughput_rows(results)
    rows += memory_rows(results)
    if results.cold_start is not None:
        rows += cold_start_rows(results.cold_start)
    return ["## Targets", "", *_table(["Target", "Measured", "Status"], rows)]


OVERHEAD_LENGTHS = (100, 500)
"""Lengths at which local mode's overhead must be at most half the provider's (#23 target 2)."""
THROUGHPUT_CONCURRENCY = (8, 32, 64)


def overhead_rows(results: Results) -> list[list[str]]:
    """Local mode's HTTP overhead: at most half the provider's at 100 and 500 turns, within 1.2x of service
    mode's at every length (medians of the same run)."""
    median = {key: lat.median for key, lat in results.overhead.items()}
    rows = []
    for length in (n for n in OVERHEAD_LENGTHS if ("provider", n) in median and ("local", n) in median):
        ratio = median[("local", length)] / median[("provider", length)]
        rows.append(
            [
                f"Backend overhead per turn at {length} turns at most half the provider's (local mode, medians)",
                f"{ratio:.2f}x the provider's",
                _mark(ratio <= 0.5),
            ]
        )
    pairs = [(n, median[("local", n)] / median[("service", n)]) for n in results.lengths if ("service", n) in median]
    if pairs:
        rows.append(
            [
                "Local mode's overhead per turn within 1.2x of service mode's at every length (medians)",
                ", ".join(f"{ratio:.2f}x at {n}" for n, ratio in pairs),
                _mark(all(ratio <= 1.2 for _, ratio in pairs)),
            ]
        )
    return rows


def first_token_rows(results: Results) -> list[list[str]]:
    """What the backend adds to a streamed turn's first delta: at most 10 ms (median), p95 reported."""
    first = results.first_token
    if first is None:
        return []
    rows = []
    for mode in ("local", "service"):
        median, p95 = first.added(mode)
        rows.append(
            [
                f"Time to first token: the backend adds at most 10 ms to the stand-in's first delta ({mode} mode, "
                "median; p95 reported)",
                f"{_ms(median)} ms (p95 {_ms(p95)} ms)",
                _mark(median <= 0.010),
            ]
        )
    return rows


def throughput_rows(results: Results) -> list[list[str]]:
    """Turns/s of one host process at 8, 32 and 64 concurrent sessions: at least 1.5x the provider's."""
    cells = {(r.variant, r.concurrency): r for r in results.throughput if r.processes == 1}
    rows = []
    for concurrency in THROUGHPUT_CONCURRENCY:
        provider = cells.get(("provider", concurrency))
        if provider is None:
            continue
        for variant in ("local", "service"):
            row = cells.get((variant, concurrency))
            if row is None:
                continue
            ratio = row.per_second / provider.per_second
            bound = ""
            if row.cpu and provider.cpu and row.cpu.host and provider.cpu.host:
                bound = (
                    f"; host CPU {row.cpu.per_turn_ms('host'):.1f} vs {provider.cpu.per_turn_ms('host'):.1f} ms a "
                    f"turn, so {row.cpu.bound_per_second / provider.cpu.bound_per_second:.2f}x bound by its own CPU"
                )
            rows.append(
                [
                    f"Throughput of one instance at concurrency {concurrency} at least 1.5x the provider's "
                    f"({variant} mode; p95 latency reported)",
                    f"{ratio:.2f}x ({row.per_second:,.1f} vs {provider.per_second:,.1f} turns/s; p95 "
                    f"{_ms(row.latencies.p95)} vs {_ms(provider.latencies.p95)} ms{bound})",
                    _mark(ratio >= 1.5),
                ]
            )
    return rows


def memory_rows(results: Results) -> list[list[str]]:
    """One instance's RSS over many turns across many sessions stays flat."""
    run = results.memory
    if run is None:
        return []
    mb = 2**20
    return [
        [
            f"Memory of one instance flat over {run.turns:,} turns across {run.sessions:,} sessions (RSS end within "
            "10% of settled)",
            f"start {run.start / mb:,.1f} MB, settled {run.settled / mb:,.1f} MB, peak {run.peak / mb:,.1f} MB, "
            f"end {run.end / mb:,.1f} MB ({run.growth:+.1%})",
            _mark(run.flat),
        ]
    ]


def cold_start_rows(cold: ColdStart) -> list[list[str]]:
    """Measured in a read-only copy of the deployment package with bytecode writing off, as Azure runs it."""
    return [
        [
            "Cold start compiles nothing: modules compiled from source while a fresh process imports "
            "`function_app` from the read-only package",
            f"{cold.modules_compiled} (without the package's bytecode: {cold.modules_compiled_sources_only})",
            _mark(cold.modules_compiled == 0),
        ],
        [
            "Cold start compiles nothing: dataclass methods compiled while a fresh process imports `function_app` "
            "from the read-only package (`cosmos_history/precompiled.py`)",
            "no precompiled file in the package"
            if cold.dataclass_methods_compiled is None
            else f"{cold.dataclass_methods_compiled} ({cold.dataclass_methods_precompiled} run precompiled; "
            "without the package's file each is compiled)",
            _mark(cold.dataclass_methods_compiled == 0),
        ],
        [
            "Cold start: the project's own import at most 5% of its dependencies' (read-only package, "
            "bytecode writing off)",
            f"{cold.project_overhead_pct:.1f}% (without the package's bytecode: "
            f"{cold.project_overhead_pct_sources_only:.1f}%)",
            _mark(cold.project_overhead_pct <= 5),
        ],
        [
            "First request after a cold start, reported (runtime build and first turn, "
            f"{cold.first_request_cosmos_requests} Cosmos DB requests)",
            f"{_ms(cold.first_request)} ms",
            "reported",
        ],
    ]


def cold_start_targets(cold: ColdStart) -> list[str]:
    """The cold-start rows alone (``python -m bench.coldstart measure``)."""
    return ["## Targets (cold start)", "", *_table(["Target", "Measured", "Status"], cold_start_rows(cold))]


def _compaction_targets(results: Results) -> list[list[str]]:
    rows: list[list[str]] = []
    budget = Settings().compaction.max_input_tokens
    tokens = results.input_tokens or {}
    if tokens:
        longest = max(results.lengths)
        kept = {v: tokens[v][longest] for v in ("local, summarize", "local, window")}
        provider = tokens["CosmosHistoryProvider"]
        rows.append(
            [
                f"Model input tokens per turn at {longest} turns within MAX_INPUT_TOKENS ({budget:,}), local mode, "
                "where the provider's grow with the conversation",
                ", ".join(f"{v} {n:,}" for v, n in kept.items()) + f"; provider {provider[longest]:,}",
                _mark(max(kept.values()) <= budget and provider[longest] > provider[min(results.lengths)]),
            ]
        )
    for length, before_kb in BEFORE_COMPACTION_WRITTEN_KB.items():
        row = count_row(results, "local", length)
        if row is not None:
            rows.append(
                [
                    f"Local mode bytes written per turn at {length} turns at most a quarter of before ({before_kb} KB)",
                    _kb(row.traffic.written_bytes),
                    _mark(row.traffic.written_bytes <= before_kb * 1024 / 4),
                ]
            )
    pairs = [(count_row(results, "local", n), count_row(results, "provider", n)) for n in results.lengths]
    measured = [
        (local.length, local.traffic.ru, provider.traffic.ru) for local, provider in pairs if local and provider
    ]
    if measured:
        rows.append(
            [
                "Request units per turn at most the provider's at every length (local mode)",
                ", ".join(f"{ours:.1f} vs {theirs:.1f} at {n}" for n, ours, theirs in measured),
                _mark(all(ours <= theirs for _, ours, theirs in measured)),
            ]
        )
    return rows
