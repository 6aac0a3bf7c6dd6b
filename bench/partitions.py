"""Which partitions each Cosmos DB request addresses, read from the headers the SDK sends.

Cosmos DB routes a data-plane request by its headers: ``x-ms-documentdb-partitionkey`` names one
logical partition (a point operation, or a query with a full key); ``x-ms-documentdb-partitionkeyrangeid``
names one physical partition (the SDK sends a query for a hierarchical key *prefix* this way, with
``x-ms-start-epk``/``x-ms-end-epk`` narrowing it to the prefix's effective-partition-key range). A query
with neither, sent with ``x-ms-documentdb-query-enablecrosspartition``, fans out to every physical
partition. :class:`ScopeRecordingTransport` records that scope for every request through a client, so
a test or the benchmark can show that each API request touches one partition, on the local stand-in
as against Azure (the SDK sends the same headers to both).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from azure.core.pipeline.transport import AioHttpTransport, AsyncHttpTransport

from bench.counting import classify

#: The scope of a request naming no partition: every physical partition of the container.
EVERY_PARTITION = "every partition"


@dataclass(frozen=True)
class Scope:
    """Where one data-plane request goes: ``kind`` is ``logical`` (a full or partial key), ``range``
    (one physical partition, optionally an EPK sub-range) or :data:`EVERY_PARTITION`."""

    operation: str
    kind: str
    key: tuple[Any, ...] = ()
    epk: tuple[str, str] | None = None

    @property
    def single_partition(self) -> bool:
        return self.kind != EVERY_PARTITION


def request_scope(method: str, url: str, headers: Any) -> Scope | None:
    """The scope of one request; ``None`` for metadata (account, container, partition map) reads."""
    parts = [p for p in urlparse(url).path.split("/") if p]
    if "docs" not in parts:
        return None
    operation = classify(method, url, headers)
    key = headers.get("x-ms-documentdb-partitionkey")
    if key and key != "[{}]":
        value = json.loads(key)
        return Scope(operation, "logical", tuple(value) if isinstance(value, list) else (value,))
    range_id = headers.get("x-ms-documentdb-partitionkeyrangeid")
    if range_id is not None:
        start, end = headers.get("x-ms-start-epk"), headers.get("x-ms-end-epk")
        epk = (str(start), str(end)) if start is not None and end is not None else None
        return Scope(operation, "range", (str(range_id),), epk)
    return Scope(operation, EVERY_PARTITION)


@dataclass
class ScopeLog:
    """Every data-plane request's scope, in order; :meth:`mark`/:meth:`since` cut out one API request."""

    scopes: list[Scope] = field(default_factory=list)

    def mark(self) -> int:
        return len(self.scopes)

    def since(self, mark: int) -> list[Scope]:
        return self.scopes[mark:]


def partitions_touched(scopes: list[Scope]) -> int | str:
    """Distinct partitions a group of requests addressed; :data:`EVERY_PARTITION` when any fanned out."""
    if any(not s.single_partition for s in scopes):
        return EVERY_PARTITION
    return len({(s.kind, s.key) for s in scopes})


class ScopeRecordingTransport(AsyncHttpTransport):
    """The default aiohttp transport (or ``inner``), recording each request's :class:`Scope`."""

    def __init__(self, log: ScopeLog, inner: AsyncHttpTransport | None = None) -> None:
        self.log = log
        self.inner = inner if inner is not None else AioHttpTransport()

    async def send(self, request: Any, **kwargs: Any) -> Any:
        scope = request_scope(request.method, request.url, request.headers)
        if scope is not None:
            self.log.scopes.append(scope)
        return await self.inner.send(request, **kwargs)

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def __aenter__(self) -> ScopeRecordingTransport:
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, *args: Any) -> None:
        await self.inner.__aexit__(*args)
