"""``POST /api/mcp``: the ``mcp`` SDK's Streamable HTTP transport, run for one request of the Functions HTTP stream.

Stateless by design: each request gets its own SDK session manager (``stateless=True``, JSON responses,
no ``Mcp-Session-Id``), so nothing of an MCP session lives in an instance and any instance answers any
request; what lasts is the app's own sessions in Cosmos DB, named by the tools' ``sessionId``. The SDK's
ASGI handler runs on the request's scope with the body this module read (within ``MAX_REQUEST_BYTES``),
and what it sends is collected into the FastAPI response the worker returns. GET (a server-to-client
stream) is not served: a stateless server has nothing to push, which the specification allows.

Every answer is JSON-RPC: the SDK's own errors (parse errors, invalid messages, unacceptable headers),
the caller's and the store's errors raised before the SDK runs (see :func:`error_response`), and the
few plain-text refusals of the SDK, which are rewrapped with their status.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import anyio
import mcp_types as types
from azurefunctions.extensions.http.fastapi import Response
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

from cosmos_history.domain.errors import ProblemError, StoreUnavailableError
from cosmos_history.http.calls import Call, read_body
from cosmos_history.http.mcp.tools import mcp_server
from cosmos_history.http.responses import http_status, json_bytes

JSON = "application/json"

# A session manager per request (and a transport per manager) is the design: their start, stop and
# "terminating session" lines at INFO would be three lines of noise for every MCP request.
for _name in ("mcp.server.streamable_http_manager", "mcp.server.streamable_http"):
    logging.getLogger(_name).setLevel(logging.WARNING)


async def mcp_route(call: Call) -> Response:
    """One MCP message (a request or a notification) in, its JSON-RPC answer out."""
    body = await read_body(call.request, call.settings.max_request_bytes)
    outages: list[StoreUnavailableError] = []
    manager = StreamableHTTPSessionManager(
        mcp_server(call, outages),
        json_response=True,
        stateless=True,
        max_request_body_size=call.settings.max_request_bytes,
    )
    exchange = Exchange(body)
    async with manager.run():
        await manager.handle_request(call.request.scope, exchange.receive, exchange.send)
    if outages:
        raise outages[0]  # answered as a JSON-RPC error with the 503 of every route (see error_response)
    return exchange.response()


class Exchange:
    """The SDK's ASGI side of one request: ``receive`` hands it the body already read (then reports the
    client gone only once the answer is complete), ``send`` gathers the answer into one response."""

    def __init__(self, body: bytes) -> None:
        self._pending: list[dict[str, Any]] = [{"type": "http.request", "body": body, "more_body": False}]
        self._answered = anyio.Event()
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.body = bytearray()

    async def receive(self) -> dict[str, Any]:
        if self._pending:
            return self._pending.pop(0)
        await self._answered.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
            self.headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in message.get("headers", [])}
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")
            if not message.get("more_body", False):
                self._answered.set()

    def response(self) -> Response:
        if self.status is None:
            raise ProblemError("The MCP transport sent no response.")
        headers = {k: v for k, v in self.headers.items() if k not in ("content-length", "content-type")}
        media_type = self.headers.get("content-type", "").split(";")[0].strip().lower()
        if self.status >= 400 and media_type != JSON:
            # The SDK refuses a few requests in plain text or with no body (a wrong Content-Type or Accept).
            text = bytes(self.body).decode("utf-8", "replace").strip() or _phrase(self.status)
            body = jsonrpc_error(types.INVALID_REQUEST, text)
            return Response(body, status_code=self.status, media_type=JSON, headers=headers)
        media = JSON if self.body else None
        return Response(bytes(self.body), status_code=self.status, media_type=media, headers=headers)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Refused"


def jsonrpc_error(code: int, message: str) -> bytes:
    """A JSON-RPC error answering no particular request (``id`` null), as the transport's own errors do."""
    return json_bytes({"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}})


def error_response(error: ProblemError) -> Response:
    """The app's errors before the SDK runs (the caller's identity, a body too large, the store or runtime
    unavailable) in JSON-RPC's shape, with the HTTP status (and Retry-After) the native API would answer."""
    code = types.INVALID_REQUEST if error.kind.caller_fault else types.INTERNAL_ERROR
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
    return Response(
        jsonrpc_error(code, f"{error.title}: {error.detail}"),
        status_code=http_status(error),
        media_type=JSON,
        headers=headers,
    )


__all__ = ["error_response", "mcp_route"]
