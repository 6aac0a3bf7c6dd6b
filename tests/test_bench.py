"""Keeps the benchmark machinery alive: a tiny run of the traffic counts, no timing assertions."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from bench.coldreport import cold_start_lines
from bench.coldstart import Before, ColdStart, _run_child, read_only_packages, record_dependencies
from bench.counting import RequestCounter, classify
from bench.firsttoken import FirstToken, measure_first_token, profile_first_token
from bench.firsttoken import render as render_first_token
from bench.hosts import BenchEnv
from bench.inprocess import variants
from bench.listing import OWN_SESSIONS, measure_listing, measure_route_partitions
from bench.measure import Latencies, ThroughputRow, measure_counts
from bench.memory import MemoryRun, measure_memory
from bench.partitions import EVERY_PARTITION, request_scope
from bench.profile import profile_turns, render, top_functions
from bench.report import Results, standard_notes
from bench.report import render as render_report
from bench.wire import measure_wire, wire_row

pytestmark = pytest.mark.integration


REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench_env(cosmos_env: dict[str, str]) -> BenchEnv:
    return BenchEnv({**cosmos_env, "BENCH_PROVIDER_CONTAINER": "provider-history"}, real_account=False)


async def test_a_steady_state_local_turn_is_a_claim_and_read_batch_and_a_commit_batch(bench_env: BenchEnv) -> None:
    async with variants(bench_env) as v:
        rows = await measure_counts(v, [1, 2])

    cell = {(r.variant, r.length): r for r in rows}
    steady = cell[("local", 2)].traffic
    # The seeded history was written as a turn writes it (its lease released), so this turn claims it in its read.
    assert steady.requests == 2 and steady.http_requests == 2
    assert dict(steady.operations) == {"batch": 2}
    # A first turn: the claim finds no session, creates the lease alone, and the commit creates the session.
    assert dict(cell[("local", 1)].traffic.operations) == {"batch": 2, "create": 1}
    assert cell[("service", 2)].traffic.requests == 2
    assert cell[("service", 2)].stored_bytes < 1024
    # The provider's batch of two messages runs as two upserts here but counts as one round trip.
    provider = cell[("provider", 2)].traffic
    assert provider.requests == 3 and provider.operations["query"] == 2 and provider.operations["upsert"] == 2
    assert steady.request_bytes > steady.written_bytes > 0 and steady.response_bytes > 0

    report = render_report(
        Results(False, [1, 2], rows, {}, {}, [], None, 0.0, standard_notes(real_account=False, scale=1, total=1))
    )
    assert "| backend, local mode | 2 | 2 | 2 batch |" in report


def test_operations_are_named_from_method_path_and_headers() -> None:
    item = "https://127.0.0.1:8081/dbs/d/colls/c/docs/s1"
    assert classify("GET", item, {}) == "read"
    assert classify("PUT", item, {}) == "replace"
    assert classify("POST", item.rsplit("/", 1)[0], {"x-ms-documentdb-isquery": "True"}) == "query"
    assert classify("POST", item.rsplit("/", 1)[0], {"x-ms-documentdb-is-upsert": "True"}) == "upsert"
    assert classify("GET", "https://127.0.0.1:8081/dbs/d/colls/c", {}) == "metadata GET"
    counter = RequestCounter()
    with counter.pause():
        counter.record("read", 10, 10, 0, None)
    assert counter.requests == 0


async def test_the_profile_lists_the_turn_path_by_cumulative_time(bench_env: BenchEnv) -> None:
    async with variants(bench_env) as v:
        stats = await profile_turns(v, "local", length=3, turns=2)

    rows = top_functions(stats, turns=2, top=60)
    assert len(rows) == 60
    assert [r.cumulative_ms for r in rows] == sorted((r.cumulative_ms for r in rows), reverse=True)
    functions = [r.function for r in rows]
    assert any(f.startswith("cosmos_history/domain/service.py:") and f.endswith("(run)") for f in functions)
    assert any(f.startswith("cosmos_history/http/handlers.py:") for f in functions)
    lines = render(rows, variant="local", length=3, turns=2)
    assert lines[0] == "## Profile of a local-mode turn at 3 turns (2 turns profiled; per turn)"
    assert len(lines) == 2 + 2 + 60


def test_a_cold_import_from_the_read_only_package_compiles_no_module_and_without_its_bytecode_every_one(
    tmp_path: Path,
) -> None:
    with read_only_packages() as (package, sources_only):
        assert not list(sources_only.rglob("*.pyc")) and list(package.rglob("*.pyc"))
        env = record_dependencies({}, package, tmp_path / "dependencies.json")
        shipped, _ = _run_child("split", env, package)
        bare, _ = _run_child("split", env, sources_only)

    assert Path(shipped["app_file"]) == package / "function_app.py"
    assert shipped["compiled"] == 0
    assert bare["compiled"] > 40
    # The dependencies were loaded before function_app: what the child timed is the project's own code.
    assert "agent_framework._mcp" in json.loads((tmp_path / "dependencies.json").read_text(encoding="utf-8"))


def test_the_first_request_after_a_cold_import_is_the_apps_own_counted_on_its_cosmos_client(
    tmp_path: Path, cosmos_env: dict[str, str]
) -> None:
    """The app child answers one message through ``function_app.app`` itself (its start-up agents, its runtime built
    on that request), with a counting transport; another checkout's package is built by that checkout's own hook."""
    with read_only_packages(REPO) as (package, _, other):
        env = record_dependencies(cosmos_env, package, tmp_path / "dependencies.json")
        result, _ = _run_child("app", env, package)
        assert (other / "function_app.py").is_file() and list(other.rglob("*.pyc"))

    assert result["first_request"] > 0 and result["cosmos_requests"] >= 2
    assert 40 < result["own_modules"] < result["modules"]


def test_a_cold_start_that_writes_into_the_package_fails_the_measurement() -> None:
    with pytest.raises(RuntimeError, match="wrote to the read-only package"), read_only_packages() as (package, _):
        pyc = next(package.rglob("*.pyc"))
        os.utime(pyc, ns=(0, 0))  # what a rewritten .pyc would look like; the owner may, read-only or not


COLD = ColdStart(
    runs=5,
    deps_import=1.0,
    all_deps_import=1.5,
    project_import=0.04,
    project_import_sources_only=0.15,
    project_share=0.04,
    project_share_sources_only=0.15,
    modules_compiled=0,
    modules_compiled_sources_only=49,
    app_import=1.1,
    first_request=0.2,
    first_request_cosmos_requests=7,
    process_wall=2.0,
)


def test_the_report_lists_the_cold_start_targets() -> None:
    notes = standard_notes(real_account=False, scale=1, total=1)
    report = render_report(Results(False, [1], [], {}, {}, [], COLD, 0.0, notes))
    assert "from the read-only package | 0 (without the package's bytecode: 49) | met |" in report
    assert "bytecode writing off) | 4.0% (without the package's bytecode: 15.0%) | met |" in report
    assert "7 Cosmos DB requests) | 200.0 ms | reported |" in report
    assert "| The same from the package without bytecode (every module compiled at every cold start) |" in report

    slow = render_report(Results(False, [1], [], {}, {}, [], replace(COLD, project_share=0.06), 0.0, notes))
    assert "bytecode writing off) | 6.0% (without the package's bytecode: 15.0%) | **not met** |" in slow


def test_the_report_lists_the_dataclass_methods_a_cold_start_compiles() -> None:
    notes = standard_notes(real_account=False, scale=1, total=1)
    shipped = replace(COLD, dataclass_methods_compiled=0, dataclass_methods_precompiled=330)
    report = render_report(Results(False, [1], [], {}, {}, [], shipped, 0.0, notes))
    assert "(`cosmos_history/precompiled.py`) | 0 (330 run precompiled; without the package's file each is" in report
    assert "compiled) | met |" in report

    without = render_report(Results(False, [1], [], {}, {}, [], COLD, 0.0, notes))
    assert "(`cosmos_history/precompiled.py`) | no precompiled file in the package | **not met** |" in without


def test_the_report_sets_another_checkouts_cold_start_beside_this_ones() -> None:
    before = Before("/tmp/main", 0.05, 0.08, 0.7, 0.045, 8, 88, 951)
    report = "\n".join(cold_start_lines(replace(COLD, before=before, project_modules=72, modules_loaded=900)))

    assert "Before (`/tmp/main`) and after, same run, interleaved:" in report
    assert "| Project's own import (ms) | 50.0 | 40.0 |" in report
    assert "| ... as a share of its dependencies' | 8.0% | 4.0% |" in report
    assert "| Modules loaded (the project's) | 951 (88) | 900 (72) |" in report
    assert "Before (" not in "\n".join(cold_start_lines(COLD))


def _lat(*ms: float) -> Latencies:
    return Latencies([m / 1000 for m in ms])


def test_the_report_lists_the_overhead_first_token_throughput_and_memory_targets() -> None:
    overhead = {
        ("local", 100): _lat(20),
        ("service", 100): _lat(18),
        ("provider", 100): _lat(50),
        ("local", 500): _lat(30),
        ("service", 500): _lat(20),
        ("provider", 500): _lat(200),
    }
    throughput = [
        ThroughputRow("local", 1, 8, 100, 1.25, _lat(100, 200)),
        ThroughputRow("service", 1, 8, 100, 0.625, _lat(50, 90)),
        ThroughputRow("provider", 1, 8, 100, 1.0, _lat(120, 300)),
        ThroughputRow("local", 2, 8, 100, 10.0, _lat(100)),  # two processes: not the per-instance target
    ]
    first = FirstToken(0.05, {"direct": _lat(60), "local": _lat(65), "service": _lat(80)})
    memory = MemoryRun(1000, 100, 8, [(0, 100 << 20), (100, 110 << 20), (500, 130 << 20), (1000, 115 << 20)])
    notes = standard_notes(real_account=False, scale=1, total=1)
    results = Results(False, [100, 500], [], overhead, {}, throughput, None, 0.0, notes)

    report = render_report(replace(results, first_token=first, memory=memory))

    assert "at 100 turns at most half the provider's (local mode, medians) | 0.40x the provider's | met |" in report
    assert "within 1.2x of service mode's at every length (medians) | 1.11x at 100, 1.50x at 500 | **not met** |" in (
        report
    )
    assert "(local mode, median; p95 reported) | 5.0 ms (p95 5.0 ms) | met |" in report
    assert "(service mode, median; p95 reported) | 20.0 ms (p95 20.0 ms) | **not met** |" in report
    assert "concurrency 8 at least 1.5x the provider's (local mode; p95 latency reported) | 0.80x" in report
    assert (
        "(service mode; p95 latency reported) | 1.60x (160.0 vs 100.0 turns/s; p95 90.0 vs 300.0 ms) | met |" in report
    )
    assert "start 100.0 MB, settled 110.0 MB, peak 130.0 MB, end 115.0 MB (+4.5%) | met |" in report
    assert "## Time to first token" in report and "## Memory over many turns" in report


def test_memory_is_flat_when_the_end_stays_within_a_tenth_of_the_settled_size() -> None:
    grown = MemoryRun(1000, 100, 8, [(0, 100), (100, 100), (1000, 111)])

    assert (grown.start, grown.settled, grown.peak, grown.end) == (100, 100, 111, 111)
    assert not grown.flat and MemoryRun(1000, 100, 8, [(0, 90), (100, 100), (1000, 109)]).flat


def test_the_memory_bench_reads_one_hosts_rss_along_the_turns(bench_env: BenchEnv) -> None:
    run = measure_memory(bench_env, turns=12, sessions=4, every=4, concurrency=2)

    assert [done for done, _ in run.readings] == [0, 4, 8, 12]
    assert all(rss > 10 << 20 for _, rss in run.readings)


def test_the_first_token_bench_times_streamed_turns_and_the_stand_in_called_directly(bench_env: BenchEnv) -> None:
    result = measure_first_token(bench_env, samples=2, delay=0.0, sessions=1)

    assert {path: len(lat.samples) for path, lat in result.samples.items()} == {"direct": 2, "local": 2, "service": 2}
    assert all(sample > 0 for lat in result.samples.values() for sample in lat.samples)


def test_the_first_token_bench_times_another_checkouts_host_in_the_same_run(bench_env: BenchEnv) -> None:
    result = measure_first_token(bench_env, samples=2, delay=0.0, sessions=1, before=REPO)

    assert set(result.samples) == {"direct", "local", "service", "local (before)", "service (before)"}
    assert all(len(lat.samples) == 2 and min(lat.samples) > 0 for lat in result.samples.values())
    assert "| backend, local mode (before) | 2 |" in "\n".join(render_first_token(result))


def test_the_first_token_profile_lists_the_path_from_request_to_first_delta(bench_env: BenchEnv) -> None:
    stats = profile_first_token(bench_env, "local", turns=2)

    functions = [row.function for row in top_functions(stats, 2, 400)]
    assert any(f.startswith("cosmos_history/adapters/cosmos/lease.py:") and "(claim)" in f for f in functions)
    assert any(f.startswith("cosmos_history/domain/turn.py:") and "(_call_model)" in f for f in functions)


async def test_the_listing_bench_shows_one_partition_after_and_a_fan_out_before(bench_env: BenchEnv) -> None:
    rows = await measure_listing(bench_env, [3, 12], samples=1)

    cells = {(r.layout, r.others): r for r in rows}
    assert set(cells) == {("before", 3), ("after", 3), ("before", 12), ("after", 12)}
    assert all(r.listed == OWN_SESSIONS and r.requests == 1 for r in rows)
    assert {r.partitions for r in rows if r.layout == "after"} == {1}
    assert {r.partitions for r in rows if r.layout == "before"} == {EVERY_PARTITION}


async def test_every_storage_route_touches_one_partition(bench_env: BenchEnv) -> None:
    routes = await measure_route_partitions(bench_env)

    assert len(routes) == 10 and all(r.status < 300 and r.requests >= 1 for r in routes)
    assert {r.partitions for r in routes} == {1}


def test_a_requests_partition_scope_is_read_from_its_routing_headers() -> None:
    docs = "https://127.0.0.1:8081/dbs/d/colls/c/docs"
    point = request_scope("GET", f"{docs}/s1", {"x-ms-documentdb-partitionkey": '["u","s1"]'})
    prefix = request_scope(
        "POST",
        docs,
        {
            "x-ms-documentdb-isquery": "True",
            "x-ms-documentdb-partitionkeyrangeid": "0",
            "x-ms-start-epk": "AB",
            "x-ms-end-epk": "ABFF",
        },
    )
    fan_out = request_scope(
        "POST", docs, {"x-ms-documentdb-isquery": "True", "x-ms-documentdb-query-enablecrosspartition": "True"}
    )

    assert point is not None and (point.kind, point.key) == ("logical", ("u", "s1"))
    assert prefix is not None and (prefix.kind, prefix.epk) == ("range", ("AB", "ABFF"))
    assert fan_out is not None and not fan_out.single_partition
    assert request_scope("GET", "https://127.0.0.1:8081/dbs/d/colls/c/pkranges", {}) is None


async def test_the_wire_bench_counts_two_requests_per_steady_turn_in_both_modes(bench_env: BenchEnv) -> None:
    per_turn = await measure_wire(bench_env.env, turns=3)

    assert per_turn == {"local": 2.0, "service": 2.0}
    assert wire_row(per_turn)[1:] == ["local 2.00, service 2.00", "met"]
