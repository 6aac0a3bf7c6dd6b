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
            "Cosmos round trips per steady-state turn: 2 (point read + conditional write) plus the lease's 1",
            f"local {local_rt}, service {service_rt}",
            _mark(all(n <= 3 for n in local_rt + service_rt)),
        ]
    )
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
    at_100 = [length for length in results.lengths if length == 100] or results.lengths[-1:]
    if at_100 and ("provider", at_100[0]) in results.overhead:
        length = at_100[0]
        ratio = results.overhead[("local", length)].median / results.overhead[("provider", length)].median
        rows.append(
            [
                f"Backend overhead per turn at {length} turns at most half the provider's (local mode, medians)",
                f"{ratio:.2f}x the provider's",
                _mark(ratio <= 0.5),
            ]
        )
    if results.cold_start is not None:
        rows += cold_start_rows(results.cold_start)
    return ["## Targets", "", *_table(["Target", "Measured", "Status"], rows)]


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
