"""Listing one user's sessions while the container fills with other users' sessions, before and after
the per-user partition key (issue #26), and the partitions every API request touches.

- **before**: the former layout, a container partitioned by ``/sessionId``, and the former listing query
  (``TOP``, ``ORDER BY c.updatedAt DESC``, across partitions: no partition key);
- **after**: the app's container, partitioned by ``[/userId, /sessionId]``, and ``CosmosSessions.list_sessions``
  (a query for the key prefix ``[userId]``).

Both containers receive the same sessions. Request units are counted at the transport (real charges on
a real account, else estimated from sizes, :mod:`bench.counting`); partitions come from the routing
headers the SDK sends (:mod:`bench.partitions`).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

from azure.cosmos import PartitionKey
from azure.cosmos.aio import ContainerProxy
from azurefunctions.extensions.http.fastapi import Request

from cosmos_history import SessionRecord, build_agents, build_runtime, create_app, load_settings
from cosmos_history.adapters.cosmos import items
from cosmos_history.adapters.cosmos.client import (
    INDEXING_POLICY,
    OLD_PARTITION_KEY_PATHS,
    create_client,
    ensure_container,
)
from cosmos_history.adapters.cosmos.sessions import CosmosSessions

from .counting import CountingTransport, RequestCounter
from .hosts import BenchEnv
from .inprocess import registered_function
from .markdown import ms as _ms
from .markdown import table as _table
from .model import BenchChatClient
from .partitions import EVERY_PARTITION, ScopeLog, ScopeRecordingTransport, partitions_touched

LISTER = "bench-lister"
#: The lister's own sessions: one page of the listing.
OWN_SESSIONS = 20
#: Sessions per other user.
PER_OTHER_USER = 4
#: The former listing query (before #26), as it ran: across every partition.
BEFORE_QUERY = (
    "SELECT TOP 21 c.id, c.title, c.mode, c.createdAt, c.updatedAt, c.turns FROM c "
    "WHERE c.userId = @userId AND c.type = @type ORDER BY c.updatedAt DESC"
)


@dataclass(frozen=True)
class ListingRow:
    layout: str
    others: int
    requests: float
    ru: float
    median_seconds: float
    partitions: int | str
    listed: int


@dataclass(frozen=True)
class RouteRow:
    route: str
    status: int
    requests: int
    partitions: int | str


async def _fill(containers: list[ContainerProxy], first: int, count: int) -> None:
    """Sessions ``first .. first+count-1`` of other users, written to every container."""
    records = [
        SessionRecord.new(f"other-{n}", user_id=f"user-{n // PER_OTHER_USER}", mode="local")
        for n in range(first, first + count)
    ]
    for start in range(0, len(records), 100):
        batch = [items.session_document(r, None) for r in records[start : start + 100]]
        await asyncio.gather(*(c.upsert_item(doc, no_response=True) for c in containers for doc in batch))


async def measure_listing(bench: BenchEnv, others: list[int], samples: int = 20) -> list[ListingRow]:
    """Each listing ``samples`` times at each count of other users' sessions (counts ascending, filled
    incrementally into the same two containers)."""
    counter, log = RequestCounter(real_charges=bench.real_account), ScopeLog()
    settings = load_settings(bench.env).cosmos
    client = create_client(settings, transport=CountingTransport(counter, ScopeRecordingTransport(log)))
    suffix = uuid.uuid4().hex[:6]
    rows: list[ListingRow] = []
    try:
        with counter.pause():
            after = await ensure_container(client, replace(settings, container=f"listing-after-{suffix}"))
            database = client.get_database_client(settings.database)
            before = await database.create_container_if_not_exists(
                f"listing-before-{suffix}",
                partition_key=PartitionKey(path=OLD_PARTITION_KEY_PATHS[0]),
                indexing_policy=INDEXING_POLICY,
            )
            own = [SessionRecord.new(f"mine-{n}", user_id=LISTER, mode="local") for n in range(OWN_SESSIONS)]
            for container in (before, after):
                await asyncio.gather(*(container.upsert_item(items.session_document(r, None)) for r in own))
        store = CosmosSessions(after, user_id=LISTER)

        async def list_before() -> int:
            parameters: list[dict[str, Any]] = [
                {"name": "@userId", "value": LISTER},
                {"name": "@type", "value": items.SESSION_TYPE},
            ]
            return len([item async for item in before.query_items(BEFORE_QUERY, parameters=parameters)])

        async def list_after() -> int:
            return len((await store.list_sessions(limit=OWN_SESSIONS)).sessions)

        filled = 0
        for count in sorted(others):
            with counter.pause():
                await _fill([before, after], filled, count - filled)
            filled = count
            for layout, listing in (("before", list_before), ("after", list_after)):
                await listing()  # warm: partition map and query plan caches, as in a running app
                rows.append(await _sample(layout, count, listing, counter, log, samples))
    finally:
        await client.close()
    return rows


async def _sample(
    layout: str, others: int, listing: Any, counter: RequestCounter, log: ScopeLog, samples: int
) -> ListingRow:
    snapshot, mark = counter.snapshot(), log.mark()
    timings, listed = [], 0
    for _ in range(samples):
        started = time.perf_counter()
        listed = await listing()
        timings.append(time.perf_counter() - started)
    spent = counter.since(snapshot)
    one_listing = log.since(mark)[: len(log.since(mark)) // samples]
    return ListingRow(
        layout,
        others,
        spent.requests / samples,
        spent.ru / samples,
        statistics.median(timings),
        partitions_touched(one_listing),
        listed,
    )


def _request(method: str, path: str, route: dict[str, str], body: Any = None) -> Request:
    data = json.dumps(body).encode() if body is not None else b""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": data, "more_body": False}

    return Request(
        {
            "type": "http",
            "method": method,
            "path": path,
            "query_string": b"",
            "headers": [(b"content-type", b"application/json"), (b"x-user-id", LISTER.encode())],
            "path_params": route,
        },
        receive,
    )


async def measure_route_partitions(bench: BenchEnv) -> list[RouteRow]:
    """One call of each storage route, in process, with the partitions its Cosmos requests addressed."""
    import function_app

    log = ScopeLog()
    settings = load_settings(bench.env)
    runtime = await build_runtime(
        settings, agents=build_agents(settings, BenchChatClient()), transport=ScopeRecordingTransport(log)
    )
    app = create_app(function_app.ROUTES, runtime=runtime)
    session = f"routes-{uuid.uuid4().hex[:8]}"
    route = {"id": session}
    plan: list[tuple[str, str, str, str, dict[str, str], Any]] = [
        ("POST /api/sessions", "create_session_route", "POST", "/api/sessions", {}, {"id": session}),
        ("POST /api/sessions/{id}/messages", "post_message_route", "POST", "/m", route, {"message": "hello"}),
        ("GET /api/sessions", "list_sessions_route", "GET", "/api/sessions", {}, None),
        ("GET /api/sessions/{id}", "get_session_route", "GET", "/s", route, None),
        ("GET /api/sessions/{id}/messages", "list_messages_route", "GET", "/m", route, None),
        ("POST /api/v1/responses", "create_response_route", "POST", "/r", {}, {"model": "assistant", "input": "hi"}),
    ]
    rows: list[RouteRow] = []
    try:
        for label, name, method, path, params, body in plan:
            row, answer = await _route(app, log, label, name, _request(method, path, params, body))
            rows.append(row)
        response = {"id": answer["id"]}  # the response just created
        for label, name, method in (
            ("GET /api/v1/responses/{id}", "get_response_route", "GET"),
            ("GET /api/v1/responses/{id}/input_items", "list_input_items_route", "GET"),
            ("DELETE /api/v1/responses/{id}", "delete_response_route", "DELETE"),
            ("DELETE /api/sessions/{id}", "delete_session_route", "DELETE"),
        ):
            ids = route if name == "delete_session_route" else response
            rows.append((await _route(app, log, label, name, _request(method, "/x", ids)))[0])
    finally:
        await runtime.close()
    return rows


async def _route(app: Any, log: ScopeLog, label: str, name: str, request: Request) -> tuple[RouteRow, Any]:
    mark = log.mark()
    response = await registered_function(app, name)(request)
    scopes = log.since(mark)
    body = json.loads(response.body) if response.body else None
    return RouteRow(label, response.status_code, len(scopes), partitions_touched(scopes)), body


def render_listing(rows: list[ListingRow], routes: list[RouteRow], ru_kind: str, real_account: bool) -> list[str]:
    if not rows and not routes:
        return []
    out = [
        "## Listing a user's sessions, and partitions per request",
        "",
        f"`bench/listing.py`: one user with {OWN_SESSIONS} sessions lists them (one page) while the container "
        f"holds sessions of other users ({PER_OTHER_USER} each). **before**: the former layout "
        "(`/sessionId`) and its cross-partition `ORDER BY` query; **after**: `[/userId, /sessionId]` and the "
        "prefix query of `list_sessions`. Partitions are read from the routing headers the SDK sends; "
        f"{ru_kind} and median latency per listing.",
        "",
    ]
    if rows:
        out += _table(
            ["Layout", "Other users' sessions", "Requests", ru_kind, "Median ms", "Partitions touched", "Listed"],
            [
                [
                    r.layout,
                    f"{r.others:,}",
                    f"{r.requests:g}",
                    f"{r.ru:.1f}",
                    _ms(r.median_seconds),
                    str(r.partitions),
                    str(r.listed),
                ]
                for r in rows
            ],
        )
    if routes:
        out += [
            "",
            "Every storage route, called once in process (`bench/listing.py::measure_route_partitions`): "
            "data-plane requests and the partitions they addressed (1 = one logical partition or one "
            f"physical partition's key range; `{EVERY_PARTITION}` = a fan-out).",
            "",
            *_table(
                ["Route", "Status", "Cosmos requests", "Partitions touched"],
                [[r.route, str(r.status), str(r.requests), str(r.partitions)] for r in routes],
            ),
        ]
    if not real_account:
        out += [
            "",
            "The local stand-in has one physical partition and no request charges: `every partition` is one "
            "partition here but every physical partition of a real container (at least 100 at 100 million "
            "sessions, see [adr-partitioning.md](adr-partitioning.md)); RU are estimated from sizes, so they do "
            "not show the per-partition minimum a fan-out pays; and it answers every query by scanning its "
            "whole container, so its latency grows with the other users' sessions in both layouts, which a "
            "real account's index and partition routing do not.",
        ]
    return out
