"""Count what the Cosmos SDK really sends: requests, bytes and request units, at the transport.

A :class:`CountingTransport` wraps the SDK's default ``AioHttpTransport``, so every HTTP
request (retries, metadata reads and query pages included) passes through it. Counting
at the transport, not by estimate, is what lets the benchmark compare designs honestly.

The local Cosmos DB reports no real request charge, so :func:`estimate_ru` prices each
request from its size with Microsoft's published figures; against a real account the
``x-ms-request-charge`` header is summed instead (see :attr:`RequestCounter.real_charges`).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from azure.core.pipeline.transport import AsyncHttpTransport

from cosmos_history.adapters.cosmos.client import default_transport

#: Published reference points (Azure Cosmos DB "Request Units" and key-value cost pages): a point
#: read of a 1 KB item costs 1 RU and of a 100 KB item about 10 RU; a write of a 1 KB item about
#: 5.5 RU with few indexed paths, growing roughly linearly with size (about 50 RU at 100 KB) and
#: with every indexed property. A query pays a fixed engine cost (about 2.5 RU) on top of reading.
READ_RU_PER_KB_FIRST = 1.0
READ_RU_PER_KB_MORE = 9.0 / 99.0
WRITE_RU_PER_KB_FIRST = 5.5
WRITE_RU_PER_KB_MORE = 44.5 / 99.0
QUERY_RU_BASE = 2.5

_group: contextvars.ContextVar[RoundTrip | None] = contextvars.ContextVar("bench_round_trip", default=None)


@dataclass
class RoundTrip:
    """Requests that a real account serves as one round trip (a transactional batch run as upserts here)."""

    counted: bool = False


@dataclass
class RequestCounter:
    """Totals for every request the counted clients send; :meth:`snapshot`/`since` measure one turn."""

    requests: int = 0
    http_requests: int = 0
    request_bytes: int = 0
    response_bytes: int = 0
    written_bytes: int = 0
    estimated_ru: float = 0.0
    real_ru: float = 0.0
    real_charges: bool = False
    operations: Counter[str] = field(default_factory=Counter)
    paused: bool = False

    def snapshot(self) -> RequestCounter:
        return RequestCounter(
            self.requests,
            self.http_requests,
            self.request_bytes,
            self.response_bytes,
            self.written_bytes,
            self.estimated_ru,
            self.real_ru,
            self.real_charges,
            Counter(self.operations),
        )

    def since(self, before: RequestCounter) -> RequestCounter:
        """What was sent after ``before`` was taken."""
        return RequestCounter(
            self.requests - before.requests,
            self.http_requests - before.http_requests,
            self.request_bytes - before.request_bytes,
            self.response_bytes - before.response_bytes,
            self.written_bytes - before.written_bytes,
            self.estimated_ru - before.estimated_ru,
            self.real_ru - before.real_ru,
            self.real_charges,
            self.operations - before.operations,
        )

    @property
    def ru(self) -> float:
        """Real charges when the account reported them, else the size-based estimate."""
        return self.real_ru if self.real_charges else self.estimated_ru

    @contextlib.contextmanager
    def pause(self) -> Iterator[None]:
        """Leave the benchmark's own bookkeeping reads (stored-size probes) out of the totals."""
        self.paused, previous = True, self.paused
        try:
            yield
        finally:
            self.paused = previous

    def record(
        self, operation: str, request_size: int, response_size: int, body_size: int, charge: float | None
    ) -> None:
        if self.paused:
            return
        group = _group.get()
        if group is None or not group.counted:
            self.requests += 1
            if group is not None:
                group.counted = True
        self.http_requests += 1
        self.request_bytes += request_size
        self.response_bytes += response_size
        self.operations[operation] += 1
        if operation in WRITES:
            self.written_bytes += body_size
        self.estimated_ru += estimate_ru(operation, body_size, response_size)
        if charge is not None:
            self.real_ru += charge


@contextlib.contextmanager
def one_round_trip() -> Iterator[None]:
    """Count every request sent inside the block as a single round trip (bytes still add up)."""
    token = _group.set(RoundTrip())
    try:
        yield
    finally:
        _group.reset(token)


WRITES = frozenset({"create", "replace", "upsert", "delete", "batch"})


def classify(method: str, url: str, headers: Any) -> str:
    """Name the Cosmos operation an HTTP request performs, from its method, path and headers."""
    parts = [p for p in urlparse(url).path.split("/") if p]
    on_documents = "docs" in parts
    is_item = on_documents and parts[-1] != "docs"
    if not on_documents:
        return f"metadata {method}"
    if method == "GET":
        return "read" if is_item else "read feed"
    if method == "PUT":
        return "replace"
    if method == "DELETE":
        return "delete"
    if method == "POST":
        if str(headers.get("x-ms-cosmos-is-query-plan-request", "")).lower() == "true":
            return "query plan"
        if str(headers.get("x-ms-documentdb-isquery", "")).lower() == "true":
            return "query"
        if str(headers.get("x-ms-cosmos-is-batch-request", "")).lower() == "true":
            return "batch"
        if str(headers.get("x-ms-documentdb-is-upsert", "")).lower() == "true":
            return "upsert"
        return "create"
    return f"other {method}"


def estimate_ru(operation: str, body_size: int, response_size: int) -> float:
    """Request units a real account would charge, from item size (an estimate, see the module doc)."""
    if operation in ("read", "read feed"):
        return _scaled(response_size, READ_RU_PER_KB_FIRST, READ_RU_PER_KB_MORE)
    if operation == "query":
        return QUERY_RU_BASE + _scaled(response_size, READ_RU_PER_KB_FIRST, READ_RU_PER_KB_MORE)
    if operation in WRITES:
        return _scaled(body_size, WRITE_RU_PER_KB_FIRST, WRITE_RU_PER_KB_MORE)
    return 0.0  # metadata and query plans are not charged as data-plane request units


def _scaled(size: int, first_kb: float, per_more_kb: float) -> float:
    kilobytes = max(1.0, math.ceil(size / 1024))
    return first_kb + per_more_kb * (kilobytes - 1)


def _headers_size(headers: Any) -> int:
    return sum(len(str(k)) + len(str(v)) + 4 for k, v in headers.items()) + 2


class CountingTransport(AsyncHttpTransport):
    """The app's aiohttp transport (:func:`~cosmos_history.adapters.cosmos.client.default_transport`) with a
    :class:`RequestCounter` looking at every exchange."""

    def __init__(self, counter: RequestCounter, inner: AsyncHttpTransport | None = None) -> None:
        self.counter = counter
        self.inner = inner if inner is not None else default_transport()

    async def send(self, request: Any, **kwargs: Any) -> Any:
        response = await self.inner.send(request, **kwargs)
        body = request.data if request.data is not None else b""
        body_size = len(body.encode() if isinstance(body, str) else body)
        request_line = len(request.method) + len(request.url) + 11
        response_body = len(response.body() or b"") if not kwargs.get("stream") else 0
        charge = response.headers.get("x-ms-request-charge")
        self.counter.record(
            classify(request.method, request.url, request.headers),
            request_line + _headers_size(request.headers) + body_size,
            15 + _headers_size(response.headers) + response_body,
            body_size,
            float(charge) if charge and self.counter.real_charges else None,
        )
        return response

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def __aenter__(self) -> CountingTransport:
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, *args: Any) -> None:
        await self.inner.__aexit__(*args)
