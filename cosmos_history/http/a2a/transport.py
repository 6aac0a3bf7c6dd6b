"""``/api/a2a/{agent}``: the agent card, and A2A's JSON-RPC methods run by the ``a2a-sdk`` server's dispatcher.

Each request gets its own dispatcher and :class:`SessionTaskHandler` (bound to the caller), so nothing lives
in an instance between requests. The body is read here within ``MAX_REQUEST_BYTES`` and checked as strictly as
the native API checks its JSON (no ``NaN``, no lone surrogates, ``application/json`` only, which keeps
browsers' cross-site form posts out), then handed to the dispatcher, which answers JSON-RPC: its own errors
(parse error, invalid request, method not found, invalid params, version not supported) and the handler's.
A streamed answer is re-sent as the Functions HTTP stream's own ``StreamingResponse``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.server.routes.jsonrpc_dispatcher import JsonRpcDispatcher
from a2a.utils.errors import JSON_RPC_ERROR_CODE_MAP, InvalidRequestError, JSONParseError
from azurefunctions.extensions.http.fastapi import Response, StreamingResponse
from sse_starlette import EventSourceResponse
from sse_starlette.event import ensure_bytes
from starlette.requests import Request

from cosmos_history.agents.catalog import ServedAgent
from cosmos_history.domain.errors import (
    AgentNotFoundError,
    ProblemError,
    StoreUnavailableError,
    UnsupportedMediaTypeError,
)
from cosmos_history.http.a2a.card import agent_card, endpoint_url
from cosmos_history.http.a2a.handler import SessionTaskHandler
from cosmos_history.http.bodies import MAX_NAME_CHARS
from cosmos_history.http.calls import Call, NonFiniteNumberError, is_unicode, read_body
from cosmos_history.http.responses import http_status, json_bytes, json_response

JSON = "application/json"

# The dispatcher logs a request's failures with their text (a parse error quotes the body it read): the
# handler logs what the app needs, by type only, and answers every failure itself.
logging.getLogger("a2a.server.routes.jsonrpc_dispatcher").setLevel(logging.CRITICAL)


def served_agent(call: Call) -> ServedAgent:
    name = call.route("agent")
    if len(name) > MAX_NAME_CHARS:
        raise AgentNotFoundError("No agent has a name that long; GET /api/agents lists them.")
    return call.agents.resolve(name)


async def agent_card_route(call: Call) -> Response:
    """``GET /api/a2a/{agent}/.well-known/agent-card.json``: the card as the SDK's own card route serves it."""
    card = agent_card(served_agent(call), url=endpoint_url(call), auth_level=call.settings.http_auth_level)
    return json_response(agent_card_to_dict(card))


async def a2a_route(call: Call) -> Response:
    """``POST /api/a2a/{agent}``: one JSON-RPC request in, its answer (JSON, or SSE for a stream) out."""
    agent = served_agent(call)
    body = await read_body(call.request, call.settings.max_request_bytes)
    content_type = call.request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != JSON and not content_type.endswith("+json"):
        raise UnsupportedMediaTypeError("Send the JSON-RPC request as application/json.")
    refused = _unacceptable(body)
    if refused is not None:
        return refused
    outages: list[StoreUnavailableError] = []
    dispatcher = JsonRpcDispatcher(SessionTaskHandler(call, agent.name, outages))
    answer = await dispatcher.handle_requests(Request(call.request.scope, _BodyOnce(body)))
    if outages:
        raise outages[0]  # answered as a JSON-RPC error with the 503 of every route (see error_response)
    if isinstance(answer, EventSourceResponse):
        return StreamingResponse(
            _sse(answer),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    return Response(bytes(answer.body), status_code=answer.status_code, media_type=JSON)


async def _sse(answer: EventSourceResponse) -> AsyncIterator[bytes]:
    async for item in answer.body_iterator:
        yield ensure_bytes(item, answer.sep)


class _BodyOnce:
    """The ASGI ``receive`` of a request whose body was read already: the body, then the client gone."""

    def __init__(self, body: bytes) -> None:
        self._body: bytes | None = body

    async def __call__(self) -> dict[str, Any]:
        if self._body is None:
            return {"type": "http.disconnect"}
        body, self._body = self._body, None
        return {"type": "http.request", "body": body, "more_body": False}


def _unacceptable(body: bytes) -> Response | None:
    """A JSON-RPC error for JSON the native API refuses too (it parses what the dispatcher would not catch)."""
    try:
        value = json.loads(body, parse_constant=_non_finite, parse_float=_finite)
    except NonFiniteNumberError:
        return _error(InvalidRequestError(message="The request holds a number JSON cannot carry (NaN, Infinity)."))
    except RecursionError:
        return _error(JSONParseError(message="The request is nested too deeply."))
    except (ValueError, UnicodeDecodeError):
        return None  # the dispatcher answers its own parse error
    if not is_unicode(value):
        return _error(InvalidRequestError(message="The request holds a string that is not valid Unicode."))
    return None


def _non_finite(literal: str) -> float:
    raise NonFiniteNumberError(literal)


def _finite(literal: str) -> float:
    number = float(literal)
    if number in (float("inf"), float("-inf")):
        raise NonFiniteNumberError(literal[:40])
    return number


def _error(error: InvalidRequestError | JSONParseError) -> Response:
    body = {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": JSON_RPC_ERROR_CODE_MAP[type(error)], "message": error.message},
    }
    return Response(json_bytes(body), media_type=JSON)


def error_response(error: ProblemError) -> Response:
    """The app's errors before the dispatcher runs (the caller's identity, an unknown agent, a body too large
    or not JSON, the store or runtime unavailable) in JSON-RPC's shape, with the HTTP status (and Retry-After)
    the native API would answer."""
    code = -32600 if error.kind.caller_fault else -32603
    body = {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": f"{error.title}: {error.detail}"}}
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
    return Response(json_bytes(body), status_code=http_status(error), media_type=JSON, headers=headers)


__all__ = ["a2a_route", "agent_card_route", "error_response"]
