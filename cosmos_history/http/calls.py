"""HTTP edges: who is calling, what they sent, and the single mapping from errors to problem+json.

Routes (``function_app.py``, registered by :func:`cosmos_history.app.create_app`) are wrapped by
:func:`endpoint`, which resolves the caller, hands the handler a :class:`Call`, and turns every :class:`ProblemError`
into ``application/problem+json``. Anything unexpected is logged in full and
answered with a generic 500 body: no exception text ever reaches a client.

Requests and responses are FastAPI's (Starlette's) types from the Functions HTTP streams
extension: importing it switches the whole app to HTTP streams, where the worker checks that
*every* HTTP function takes ``fastapi.Request`` and returns a FastAPI response, so there is
no mixing with ``func.HttpRequest``. One code path serves plain JSON and Server-Sent Events.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import azure.functions as func
from azurefunctions.extensions.http.fastapi import Request, Response

from cosmos_history.domain.errors import (
    BadRequestError,
    PayloadTooLargeError,
    ProblemError,
    UnauthorizedError,
    UnsupportedMediaTypeError,
)
from cosmos_history.domain.records import ANONYMOUS_USER
from cosmos_history.http.bodies import parse_idempotency_key, parse_session_id
from cosmos_history.http.responses import problem_response
from cosmos_history.runtime import Runtime, RuntimeSource
from cosmos_history.settings import Settings
from cosmos_history.telemetry import request_context

if TYPE_CHECKING:
    from cosmos_history.agents.catalog import Agents
    from cosmos_history.domain.background import BackgroundTurns
    from cosmos_history.domain.ports import ResponseLog, SessionRepository
    from cosmos_history.domain.service import Turns
    from cosmos_history.domain.workflows import WorkflowRuns

logger = logging.getLogger(__name__)

PRINCIPAL_HEADER = "x-ms-client-principal"
USER_ID_HEADER = "x-user-id"
_OBJECT_ID_CLAIMS = ("http://schemas.microsoft.com/identity/claims/objectidentifier", "oid")
_USER_ID = re.compile(r"^[A-Za-z0-9._:@+-]{1,256}$")


@dataclass(frozen=True)
class Call:
    """One authenticated request: the caller's store view, the process's agents and its turn service."""

    request: Request
    user_id: str
    store: SessionRepository
    agents: Agents
    settings: Settings
    turns: Turns
    responses: ResponseLog | None = None
    runtime: Runtime | None = None
    """The runtime that served it, for the subsystems built on first use (background turns, workflows)."""

    @property
    def background(self) -> BackgroundTurns | None:
        return self.runtime.background if self.runtime is not None else None

    @property
    def workflows(self) -> WorkflowRuns | None:
        """The runtime's workflow runs (built now if this is their first use; raises if a workflow module is broken)."""
        return self.runtime.workflows if self.runtime is not None else None

    def route(self, name: str) -> str:
        """A route parameter (the worker copies the host's route values into ``path_params``)."""
        return str(self.request.path_params.get(name, ""))

    def session_id(self) -> str:
        """The ``{id}`` of the route, checked against the API's session-id rule before any I/O."""
        return parse_session_id(self.route("id"))

    def query(self, name: str) -> str | None:
        return self.request.query_params.get(name)

    async def json_body(self, *, required: bool = True) -> dict[str, Any]:
        return await read_json_object(self.request, self.settings.max_request_bytes, required=required)

    def idempotency_key(self) -> str | None:
        key = self.request.headers.get("idempotency-key")
        return parse_idempotency_key(key) if key is not None else None


Handler = Callable[[Call], Awaitable[Response]]


ErrorRenderer = Callable[[ProblemError], Response]


def endpoint(
    handler: Handler, runtime: RuntimeSource, render: ErrorRenderer = problem_response
) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a handler of :class:`Call` as an Azure Functions HTTP function served by ``runtime``.

    Errors become problem+json, or what ``render`` makes of them (the OpenAI-compatible routes answer
    in OpenAI's error shape, which their clients parse).

    The wrapper's signature is ``(req: Request, context: func.Context)``, exactly what the
    Functions worker binds and type-checks (``context`` carries the invocation id that log records
    are stamped with), so it deliberately does not use ``functools.wraps``.
    """

    # The worker accepts `context` only when annotated exactly as azure.functions.Context; it is
    # optional so hosts and tests that pass only the request still work.
    async def function(req: Request, context: func.Context = None) -> Response:  # type: ignore[assignment]
        with request_context(invocation_id(context), req.path_params.get("id")):
            response = await _handle(req)
        # Browsers must never guess another type for an API answer (JSON, problem+json or SSE).
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    async def _handle(req: Request) -> Response:
        built: Runtime | None = None
        try:
            built = await runtime.get()
            return await handler(make_call(req, built))
        except ProblemError as error:
            if built is not None:
                await built.recover(error)
            if not error.kind.caller_fault and error.log_each:
                # Types only at the default level: an upstream error's message may quote the user's text.
                cause = type(error.__cause__).__name__ if error.__cause__ is not None else "-"
                logger.warning("%s failed: %s (caused by %s)", handler.__name__, error.title, cause)
                logger.debug("%s failure details", handler.__name__, exc_info=error)
            return render(error)
        except Exception as error:
            # Types only at the default level (an exception's text may quote user input); the URL is
            # never logged: it may carry the function key in ?code=.
            logger.error("Unhandled %s in %s", type(error).__name__, handler.__name__)
            logger.debug("%s failure details", handler.__name__, exc_info=error)
            return render(ProblemError("The server failed to handle this request."))

    function.__name__ = handler.__name__
    function.__qualname__ = handler.__qualname__
    function.__doc__ = handler.__doc__
    return function


def invocation_id(context: func.Context | None) -> str:
    """The Functions invocation id (the host's logs use it too), or a fresh one outside Functions.

    A client-sent header is deliberately not trusted: log correlation must not be forgeable.
    """
    if context is not None and getattr(context, "invocation_id", None):
        return str(context.invocation_id)
    return str(uuid.uuid4())


def make_call(req: Request, runtime: Runtime) -> Call:
    user_id = caller_identity(req, runtime.settings)
    store = runtime.store.for_user(user_id)
    return Call(
        req,
        user_id,
        store,
        runtime.agents,
        runtime.settings,
        runtime.turns,
        runtime.responses,
        runtime,
    )


def caller_identity(req: Request, settings: Settings) -> str:
    """The user who owns the sessions this request may touch.

    The Easy Auth principal wins (App Service sets and strips it, so it cannot be forged
    from outside). ``X-User-Id`` is trusted only because the function key guards the app:
    a trusted backend calls it on behalf of its users.
    """
    principal = req.headers.get(PRINCIPAL_HEADER)
    if principal:
        return _object_id(principal)
    if settings.http_auth_level == "anonymous" and not settings.local_dev_allow_anonymous:
        # Nothing but Easy Auth guards an anonymous-level app: a caller without its principal is
        # unauthenticated, and X-User-Id (which anyone can send) must not be believed.
        raise UnauthorizedError("Sign in: this app requires App Service Authentication (Easy Auth).")
    user_id = req.headers.get(USER_ID_HEADER)
    if user_id is not None:
        if not _USER_ID.match(user_id):
            raise BadRequestError("X-User-Id must be 1-256 characters of letters, digits or ._:@+-")
        return user_id
    return ANONYMOUS_USER


def _object_id(principal: str) -> str:
    try:
        decoded = json.loads(base64.b64decode(principal, validate=True))
        claims = decoded["claims"]
        for claim in claims:
            if claim.get("typ") in _OBJECT_ID_CLAIMS and isinstance(claim.get("val"), str) and claim["val"]:
                claim["val"].encode("utf-8")  # a lone surrogate is malformed, not a user
                return claim["val"]
    except (binascii.Error, ValueError, UnicodeError, KeyError, TypeError, AttributeError, RecursionError):
        raise UnauthorizedError("The client principal header is malformed.") from None
    raise UnauthorizedError("The client principal carries no object id.")


async def read_body(req: Request, max_bytes: int) -> bytes:
    """The request body, read chunk by chunk and abandoned as soon as it passes ``max_bytes``."""
    too_large = PayloadTooLargeError(f"The request body is larger than {max_bytes} bytes.")
    declared = req.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    chunks = bytearray()
    async for chunk in req.stream():
        chunks += chunk
        if len(chunks) > max_bytes:
            raise too_large
    return bytes(chunks)


async def read_json_object(req: Request, max_bytes: int, *, required: bool = True) -> dict[str, Any]:
    """The request body as a JSON object, after size and content-type checks."""
    body = await read_body(req, max_bytes)
    if not body.strip():
        if required:
            raise BadRequestError("The request body must be a JSON object.")
        return {}
    content_type = req.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise UnsupportedMediaTypeError("Send the body as application/json.")
    try:
        value = json.loads(body, parse_constant=_non_finite, parse_float=_finite_float)
    except NonFiniteNumberError:
        raise BadRequestError(
            "The request body holds a number JSON cannot carry (NaN, Infinity or one too large for a double)."
        ) from None
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurdly deep nesting
        raise BadRequestError("The request body is not valid JSON.") from None
    if not isinstance(value, dict):
        raise BadRequestError("The request body must be a JSON object.")
    if not is_unicode(value):
        raise BadRequestError("The request body holds a string that is not valid Unicode (a lone surrogate escape).")
    return value


class NonFiniteNumberError(ValueError):
    """``NaN``, ``Infinity`` or a literal such as ``1e400``: Python's parser takes them, JSON has no such numbers
    (they would be echoed back as invalid JSON, and neither the store nor a model API takes them)."""


def _non_finite(literal: str) -> float:
    raise NonFiniteNumberError(literal)


def _finite_float(literal: str) -> float:
    number = float(literal)
    if not math.isfinite(number):
        raise NonFiniteNumberError(literal[:40])
    return number


def is_unicode(value: Any) -> bool:
    """Whether every string in ``value`` is encodable Unicode: JSON's ``\\udc00`` escapes decode to lone
    surrogates, which no UTF-8 encoder (hashing, storage, responses) accepts."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
