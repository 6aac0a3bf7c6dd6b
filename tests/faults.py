"""A fault-injecting HTTP transport for the real azure-cosmos SDK, to test retries and failures.

It sits where the SDK's own transport sits (``CosmosClient(..., transport=...)``): requests
that match a rule get an injected answer (a 429/503 status or a dropped connection) without
reaching the server; everything else goes to the real local Cosmos DB. It also records the
size of every request body, so tests can assert no item over a budget was ever sent.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Self

from azure.core.exceptions import ServiceResponseError
from azure.core.pipeline.transport import AioHttpTransport, AsyncHttpTransport
from azure.core.utils import CaseInsensitiveDict


@dataclass
class Fault:
    """Answer the next ``times`` requests that ``matches`` with ``status`` (or drop the connection)."""

    matches: Callable[[Any], bool]
    status: int | None = 429
    times: int = 1
    retry_after_ms: int = 1
    hits: int = 0


class _InjectedResponse:
    """Just enough of azure-core's HTTP response for the Cosmos SDK to read a status and body."""

    def __init__(self, request: Any, status: int, headers: dict[str, str], body: bytes) -> None:
        self.request = request
        self.status_code = status
        self.reason = "Injected"
        self.headers = CaseInsensitiveDict(headers)
        self.content_type = "application/json"
        self._body = body

    def body(self) -> bytes:
        return self._body

    def text(self, encoding: str | None = None) -> str:
        return self._body.decode()

    async def load_body(self) -> None:
        return None


class DelegatingTransport(AsyncHttpTransport):
    """A transport that hands its connection's life to ``inner``; a subclass decides what ``send`` does around it."""

    inner: AsyncHttpTransport

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def __aenter__(self) -> Self:
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, *args: Any) -> None:
        await self.inner.__aexit__(*args)


@dataclass
class FaultInjectingTransport(DelegatingTransport):
    inner: AsyncHttpTransport = field(default_factory=AioHttpTransport)
    faults: list[Fault] = field(default_factory=list)
    sent: list[tuple[str, str, int]] = field(default_factory=list)
    """(method, url, body bytes) of every request that reached the server."""

    async def send(self, request: Any, **kwargs: Any) -> Any:
        for fault in self.faults:
            if fault.hits < fault.times and fault.matches(request):
                fault.hits += 1
                if fault.status is None:
                    raise ServiceResponseError("injected: connection dropped")
                headers = {"x-ms-retry-after-ms": str(fault.retry_after_ms), "x-ms-substatus": "3200"}
                body = json.dumps({"code": "Injected", "message": f"injected {fault.status}"}).encode()
                return _InjectedResponse(request, fault.status, headers, body)
        body = request.data if isinstance(request.data, (bytes, str)) else (request.body or b"")
        self.sent.append((request.method, request.url, len(body.encode() if isinstance(body, str) else body)))
        return await self.inner.send(request, **kwargs)


def batch_operations(request: Any) -> list[dict[str, Any]]:
    """The operations of a transactional batch request (none for any other request)."""
    if request.method != "POST" or str(request.headers.get("x-ms-cosmos-is-batch-request", "")).lower() != "true":
        return []
    body = request.data if isinstance(request.data, (bytes, str)) else (request.body or b"[]")
    operations: list[dict[str, Any]] = json.loads(body)
    return operations


def is_item_read(request: Any) -> bool:
    """A point read, or a batch that reads an item (a turn's claim reads its session in one)."""
    is_read = request.method == "GET" and "/docs/" in request.url
    return is_read or any(op.get("operationType") == "Read" for op in batch_operations(request))


def is_session_write(session_id: str) -> Callable[[Any], bool]:
    """The write of the session document ``session_id``: a replace of it, or a turn's commit batch."""

    def matches(request: Any) -> bool:
        if request.method == "PUT" and request.url.rstrip("/").endswith(f"/docs/{session_id}"):
            return True
        return any(
            op.get("operationType") in ("Create", "Replace")
            and (op.get("id") or op.get("resourceBody", {}).get("id")) == session_id
            for op in batch_operations(request)
        )

    return matches


def is_item_write(request: Any) -> bool:
    return (
        request.method in ("POST", "PUT")
        and "/docs" in request.url
        and "x-ms-documentdb-isquery" not in request.headers
    )


Wrap = Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]
"""Makes the faulty version of a port's method from the real one."""


@contextmanager
def intercept(target: Any, method: str, wrap: Wrap) -> Iterator[None]:
    """The one way tests break a port object (a repository, a lease): ``method`` of ``target`` behaves as
    ``wrap(real method)`` inside the ``with``, and is the real one again after it, whatever happened."""
    own = method in vars(target)
    original = getattr(target, method)
    setattr(target, method, wrap(original))
    try:
        yield
    finally:
        if own:
            setattr(target, method, original)
        else:
            delattr(target, method)


def raising(error: BaseException) -> Wrap:
    """A method that fails with ``error`` without doing anything."""

    def wrap(real: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def failing(*args: Any, **kwargs: Any) -> Any:
            raise error

        return failing

    return wrap
