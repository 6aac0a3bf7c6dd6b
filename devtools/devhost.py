"""A small local host for development and tests, standing in for Azure Functions Core Tools.

It serves the HTTP functions registered on ``function_app.app`` under the route prefix
(``/api``) and calls the registered function itself, so the code path is the one Azure runs.
A function taking a FastAPI/Starlette ``Request`` (Functions HTTP streams) gets the request
with its route values in ``path_params``, as the worker passes them, and its response is sent
as it is (it is ASGI, so streams stream); a function taking ``azure.functions.HttpRequest``
gets one built from the request. Queue-triggered functions run as the host runs them (poll, lease,
retry, poison queue: :mod:`devtools.queue_runner`). It does not check function keys or emulate the
host's limits: use ``func start`` where Core Tools is installed. Never expose it beyond localhost.

    python -m devtools.devhost [--host 127.0.0.1] [--port 7071] [--app function_app]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import importlib
import inspect
import json
import logging
import os
import re
import socket
import sys
import typing
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azure.functions as func
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cosmos_history.app import ConversationApp
from devtools.local_cosmos import check_cosmos_credential, use_local_cosmos
from devtools.local_storage import add_storage_arguments, use_local_storage
from devtools.queue_runner import QueueOptions, QueueRunner, queue_functions

logger = logging.getLogger("devtools.devhost")

#: The most of a refused body the host reads (and drops) so that its client can still read the answer.
MAX_DISCARDED_BYTES = 64 * 1024 * 1024

_PARAM = re.compile(r"\{(\w+)(?::[^}?]*)?(\?)?\}")
_CATCH_ALL = re.compile(r"/\{\*(\w+)\}$")


@dataclass(frozen=True)
class DevContext:
    """The part of ``azure.functions.Context`` the app reads: a fresh invocation id per request."""

    invocation_id: str
    function_name: str
    function_directory: str = "."
    trace_context: Any = None
    retry_context: Any = None


@dataclass(frozen=True)
class HttpFunction:
    name: str
    pattern: re.Pattern[str]
    methods: frozenset[str]
    function: Callable[..., Any]
    route: str = ""
    """The route template with its prefix (``/api/sessions/{id}``)."""

    @functools.cached_property
    def takes_context(self) -> bool:
        """Whether the function takes the invocation ``context`` (looked up once, not per request)."""
        return "context" in inspect.signature(self.function).parameters

    @functools.cached_property
    def takes_asgi_request(self) -> bool:
        """Whether the function's first parameter is a Starlette (FastAPI) ``Request`` (looked up once: resolving
        the type hints again cost every request a quarter of a millisecond)."""
        hints = typing.get_type_hints(self.function)
        first = next(iter(inspect.signature(self.function).parameters), None)
        annotation = hints.get(first) if first else None
        return isinstance(annotation, type) and issubclass(annotation, Request)


def load_local_settings(path: Path = Path("local.settings.json")) -> None:
    """Copy ``Values`` from local.settings.json into the environment, as ``func start`` does.

    Variables already set in the environment win.
    """
    if not path.is_file():
        return
    values = json.loads(path.read_text(encoding="utf-8")).get("Values", {})
    for name, value in values.items():
        os.environ.setdefault(name, str(value))


def route_prefix(host_json: Path = Path("host.json")) -> str:
    if host_json.is_file():
        http = json.loads(host_json.read_text(encoding="utf-8")).get("extensions", {}).get("http", {})
        return str(http.get("routePrefix", "api")).strip("/")
    return "api"


def http_functions(registered: list[func.FunctionBuilder] | Any, prefix: str) -> list[HttpFunction]:
    """The HTTP-triggered ones of the app's functions (``get_functions()``, which may run once per app) with their
    routes compiled to regular expressions."""
    found = []
    for function in registered:
        trigger = function.get_trigger()
        if trigger is None or trigger.get_binding_name() != "httpTrigger":
            continue
        route = (getattr(trigger, "route", None) or function.get_function_name()).strip("/")
        template = "/" + "/".join(part for part in (prefix, route) if part)
        # A catch-all ({*path}) takes the rest of the path, empty included (ASP.NET routing, as in the host).
        regex = _CATCH_ALL.sub(lambda m: f"(?:/(?P<{m.group(1)}>.*))?", template)
        regex = _PARAM.sub(lambda m: f"(?P<{m.group(1)}>[^/]+)" + ("?" if m.group(2) else ""), regex)
        methods = frozenset(str(getattr(m, "value", m)).upper() for m in (getattr(trigger, "methods", None) or []))
        found.append(
            HttpFunction(
                function.get_function_name(),
                re.compile(f"^{regex}/?$"),
                methods,
                function.get_user_function(),
                template,
            )
        )
    # As in the host, a catch-all route matches only where no other route does.
    return sorted(found, key=lambda f: _CATCH_ALL.search(f.route) is not None)


def create_host(app: func.FunctionApp, prefix: str = "api", *, queue_lease_seconds: float = 600) -> Starlette:
    """An ASGI app dispatching every request to the matching registered function, and running its queue
    functions for as long as it serves (a message is hidden from other hosts for ``queue_lease_seconds``)."""
    registered = app.get_functions()
    functions = http_functions(registered, prefix)
    runner = QueueRunner(queue_functions(registered), QueueOptions.from_host_json(), lease_seconds=queue_lease_seconds)

    async def dispatch(request: Request) -> Response:
        path = request.url.path
        matches = [(f, m) for f in functions if (m := f.pattern.match(path))]
        if not matches:
            return _problem(404, "Not found", f"No function serves {path}.")
        for function, match in matches:
            if not function.methods or request.method in function.methods:
                return await _invoke(function, request, {k: v for k, v in match.groupdict().items() if v is not None})
        return _problem(405, "Method not allowed", f"{request.method} is not allowed on {path}.")

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await runner.start()
        yield
        await runner.stop()
        if isinstance(app, ConversationApp):
            # Streamed turns whose clients left are still saving: the runtime lets them, within reason.
            await app.runtime.close()

    async def unrouted(scope: Any, receive: Any, send: Any) -> None:
        """Paths Starlette's own routing cannot match (its ``{path:path}`` stops at a newline, which a
        percent-encoded ``%0A`` becomes) still reach the functions, as they do in the Functions host."""
        if scope["type"] == "http":
            response = await dispatch(Request(scope, receive))
            await response(scope, receive, send)

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    host = Starlette(routes=[Route("/{path:path}", dispatch, methods=methods)], lifespan=lifespan)
    host.router.default = unrouted
    return host


async def _invoke(function: HttpFunction, request: Request, route_params: dict[str, str]) -> Response:
    kwargs: dict[str, Any] = {}
    if function.takes_context:
        kwargs["context"] = DevContext(str(uuid.uuid4()), function.name)
    if function.takes_asgi_request:
        # What the worker's request synchronizer does: the route's values replace the path params.
        request.path_params.clear()
        request.path_params.update(route_params)
        result = await function.function(request, **kwargs)
        if not isinstance(result, Response):
            raise TypeError(f"{function.name} returned {type(result).__name__}, not a Starlette response")
        await _discard_unread_body(request)
        return result
    body = await request.body()
    req = func.HttpRequest(
        method=request.method,
        url=str(request.url),
        headers=dict(request.headers),
        params=dict(request.query_params),
        route_params=route_params,
        body=body,
    )
    if inspect.iscoroutinefunction(function.function):
        result = await function.function(req, **kwargs)
    else:
        result = await asyncio.to_thread(function.function, req, **kwargs)
    return Response(
        content=result.get_body(),
        status_code=result.status_code,
        headers={k: v for k, v in result.headers.items() if k.lower() != "content-length"},
        media_type=result.mimetype,
    )


async def _discard_unread_body(request: Request) -> None:
    """Read what the function left unread (a body refused as too large) before answering.

    Closing a connection with unread bytes in its receive buffer makes the kernel send a reset, and
    clients then report "connection reset" instead of the 413 they were sent. Bounded, so a client
    streaming without end is cut off all the same.
    """
    discarded = 0
    with contextlib.suppress(RuntimeError):  # the body was read whole already
        async for chunk in request.stream():
            discarded += len(chunk)
            if discarded > MAX_DISCARDED_BYTES:
                break


def _problem(status: int, title: str, detail: str) -> Response:
    return JSONResponse(
        {"type": "about:blank", "title": title, "status": status, "detail": detail},
        status_code=status,
        media_type="application/problem+json",
    )


@contextlib.contextmanager
def host_process(
    env: dict[str, str],
    *,
    app: str = "function_app",
    log_path: Path | None = None,
    timeout: float = 60.0,
    ready: Callable[[int], bool] = lambda status: status == 200,
    queue_lease_seconds: float | None = None,
) -> Iterator[str]:
    """Run this host in a separate process on a free port, as `make run` does, until the block ends;
    yields its base URL (…/api) once ``/health`` answers a status ``ready`` accepts (by default: 200,
    Cosmos DB answers). For end-to-end tests and benchmarks."""
    with running_host(
        env, app=app, log_path=log_path, timeout=timeout, ready=ready, queue_lease_seconds=queue_lease_seconds
    ) as host:
        yield host.base


@dataclass(frozen=True)
class RunningHost:
    """A host process started by :func:`running_host`: its base URL and the process (crash tests kill it)."""

    base: str
    process: Any


@contextlib.contextmanager
def running_host(
    env: dict[str, str],
    *,
    app: str = "function_app",
    log_path: Path | None = None,
    timeout: float = 60.0,
    ready: Callable[[int], bool] = lambda status: status == 200,
    queue_lease_seconds: float | None = None,
) -> Iterator[RunningHost]:
    """:func:`host_process`, yielding the process as well (``queue_lease_seconds``: see ``--queue-lease``)."""
    import subprocess
    import sys
    import time

    import httpx

    from devtools.local_cosmos import free_port, stop_process

    port = free_port()
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "devtools.devhost", "--host", "127.0.0.1", "--port", str(port), "--app", app]
        + ([] if queue_lease_seconds is None else ["--queue-lease", str(queue_lease_seconds)]),
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the {app} host exited with code {process.returncode}")
            try:
                if ready(httpx.get(f"{base}/health", timeout=30).status_code):
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {app} host did not become healthy in time")
            time.sleep(0.2)
        yield RunningHost(base, process)
    finally:
        stop_process(process, grace=15)
        if log is not subprocess.DEVNULL:
            log.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument("--app", default="function_app", help="module that defines `app` (default function_app)")
    parser.add_argument(
        "--local-cosmos",
        action="store_true",
        help="also run the local Cosmos DB (unless COSMOS_ENDPOINT names an account on another machine)",
    )
    parser.add_argument("--cosmos-port", type=int, default=8081, help="port of the local Cosmos DB (default 8081)")
    add_storage_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=(os.environ.get("LOG_LEVEL") or "INFO").upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    load_local_settings()
    with contextlib.ExitStack() as stack:
        # Taken before anything starts, and handed to the server: a busy port is said at once, by its variable.
        listener = stack.enter_context(bind_port(args.host, args.port))
        if args.local_cosmos:
            use_local_cosmos(stack, args.cosmos_port)
        if args.local_storage:
            use_local_storage(stack, args.storage_port)
        check_cosmos_credential()
        module = importlib.import_module(args.app)
        host = create_host(module.app, route_prefix(), queue_lease_seconds=args.queue_lease)

        import uvicorn

        logger.info("Serving %s on http://%s:%d/%s", args.app, args.host, args.port, route_prefix())
        config = uvicorn.Config(host, host=args.host, port=args.port, log_level="warning", lifespan="on")
        uvicorn.Server(config).run(sockets=[listener])


@contextlib.contextmanager
def bind_port(host: str, port: int) -> Iterator[socket.socket]:
    """A socket bound to ``host:port`` (uvicorn's options), or exit naming ``make run``'s PORT variable."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    with sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as error:
            sys.exit(
                f"Port {port} on {host} is not available ({error.strerror}): choose another with "
                f"`make run PORT=<port>` (devhost: --port <port>)."
            )
        yield sock


if __name__ == "__main__":
    main()
