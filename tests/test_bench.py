"""Keeps the benchmark machinery alive: a tiny run of the traffic counts, no timing assertions."""

from __future__ import annotations

import pytest

from bench.counting import RequestCounter, classify
from bench.hosts import BenchEnv
from bench.inprocess import variants
from bench.measure import measure_counts
from bench.report import Results, render, standard_notes

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bench_env(cosmos_env: dict[str, str]) -> BenchEnv:
    return BenchEnv({**cosmos_env, "BENCH_PROVIDER_CONTAINER": "provider-history"}, real_account=False)


async def test_a_steady_state_local_turn_is_one_point_read_one_lease_write_and_one_replace(bench_env: BenchEnv) -> None:
    async with variants(bench_env) as v:
        rows = await measure_counts(v, [1, 2])

    cell = {(r.variant, r.length): r for r in rows}
    steady = cell[("local", 2)].traffic
    # The seeded history was written without a turn lease, so this turn creates it (later ones replace it).
    assert steady.requests == 3 and steady.http_requests == 3
    assert dict(steady.operations) == {"read": 1, "create": 1, "replace": 1}
    assert dict(cell[("local", 1)].traffic.operations) == {"read": 1, "create": 2}
    assert cell[("service", 2)].traffic.requests == 3
    assert cell[("service", 2)].stored_bytes < 1024
    # The provider's batch of two messages runs as two upserts here but counts as one round trip.
    provider = cell[("provider", 2)].traffic
    assert provider.requests == 3 and provider.operations["query"] == 2 and provider.operations["upsert"] == 2
    assert steady.request_bytes > steady.written_bytes > 0 and steady.response_bytes > 0

    report = render(
        Results(False, [1, 2], rows, {}, {}, [], None, 0.0, standard_notes(real_account=False, scale=1, total=1))
    )
    assert "| backend, local mode | 2 | 3 | 1 create, 1 read, 1 replace |" in report


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
