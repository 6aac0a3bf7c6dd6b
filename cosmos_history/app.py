"""Composition: the one place that turns a route table and a runtime into an Azure Functions app.

``function_app.py`` calls :func:`create_app` with its route table and gets the module-level app the
worker indexes; tests and the benchmark call it with a runtime of their own (a recording model, a
counting transport) instead of patching modules. Nothing here is process-global: each app owns
its :class:`~cosmos_history.runtime.RuntimeSource`.
"""

from __future__ import annotations

import gc
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import azure.functions as func
from azure.functions.decorators.http import HttpOutput, HttpTrigger
from azure.functions.decorators.queue import QueueTrigger as QueueBinding
from azurefunctions.extensions.http.fastapi import Request, Response

from cosmos_history.http.calls import ErrorRenderer, Handler, endpoint
from cosmos_history.http.fallback import CATCH_ALL, fallback_handler
from cosmos_history.http.responses import problem_response
from cosmos_history.runtime import LazyRuntime, ReadyRuntime, Runtime, RuntimeSource
from cosmos_history.settings import Settings, load_settings
from cosmos_history.triggers import QueueTrigger, queue_function

PublicHandler = Callable[[Request], Awaitable[Response]]

ALL_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


@dataclass(frozen=True)
class Route:
    """One HTTP function: ``handler`` takes a :class:`~cosmos_history.http.calls.Call` (the caller is
    resolved, errors become problem+json), or, when ``public``, the bare request: public routes hold no
    data, need no runtime and are anonymous whatever ``HTTP_AUTH_LEVEL`` says."""

    method: str
    path: str
    handler: Handler | PublicHandler
    public: bool = False
    errors: ErrorRenderer = problem_response
    """How the route's errors look: problem+json, or another API's error shape."""


class ConversationApp(func.FunctionApp):
    """A ``FunctionApp`` that knows the runtime its functions share, so hosts can close it."""

    def __init__(self, runtime: RuntimeSource, settings: Settings) -> None:
        super().__init__(http_auth_level=func.AuthLevel[settings.http_auth_level.upper()])
        self.runtime = runtime
        self.settings = settings


def _bindings_signed_once(*bindings: type) -> None:
    """Let ``azure.functions`` read each binding class's ``__init__`` signature once per process, not per function.

    The library wraps every binding class's ``__init__`` (``BuildDictMeta.add_to_dict``) in a function that calls
    ``inspect.signature`` on the original ``__init__`` each time a binding is made, twice per binding (the class's and
    its base's): 136 signatures for the app's 36 functions, about 2.5 ms of a cold start (bench/optimisations.md),
    for the same few answers. ``inspect.signature`` returns a function's ``__signature__`` when it has one, so giving
    each original ``__init__`` its own signature, computed once, makes every later call return the same answer at
    once. A library whose wrapper looks different is left as it is (it then computes them as before).
    """
    for binding in bindings:
        for cls in binding.__mro__:
            wrapper = cls.__dict__.get("__init__")
            code = getattr(wrapper, "__code__", None)
            if code is None or code.co_freevars != ("func",) or not code.co_qualname.startswith("BuildDictMeta."):
                continue
            original = wrapper.__closure__[0].cell_contents
            if inspect.isfunction(original) and "__signature__" not in original.__dict__:
                original.__signature__ = inspect.signature(original)


def create_app(
    routes: Iterable[Route],
    *,
    triggers: Iterable[QueueTrigger] = (),
    runtime: Runtime | RuntimeSource | None = None,
    settings: Settings | None = None,
) -> ConversationApp:
    """Register ``routes`` (HTTP functions) and ``triggers`` (queue functions, see :mod:`cosmos_history.triggers`)
    on a new app whose functions share one runtime and its error handling.

    Without ``runtime`` the agents are built now and the rest of the runtime from ``settings`` (default: the
    environment) on the first request, on the worker's running event loop, as the async Cosmos client needs.
    A :class:`Runtime` passed in stays its owner's to close.
    """
    if isinstance(runtime, Runtime):
        source: RuntimeSource = ReadyRuntime(runtime)
        settings = settings or runtime.settings
    else:
        settings = settings or (runtime.settings if runtime is not None else load_settings())
        source = runtime if runtime is not None else LazyRuntime(settings)
    if settings.log_level is not None:
        for name in ("cosmos_history", settings.agents_package):
            logging.getLogger(name).setLevel(settings.log_level.upper())
    if runtime is None and isinstance(source, LazyRuntime):
        # The agents are built as the app starts (the worker imports function_app.py when it indexes
        # the functions; the local host when it starts), so a broken one is reported then, once.
        source.load_agents()
    app = ConversationApp(source, settings)
    _bindings_signed_once(HttpTrigger, HttpOutput, QueueBinding)
    routes = list(routes)
    for route in routes:
        if route.public:
            function = route.handler
            register = app.route(route=route.path, methods=[route.method], auth_level=func.AuthLevel.ANONYMOUS)
        else:
            function = endpoint(route.handler, source, route.errors)  # type: ignore[arg-type]
            register = app.route(route=route.path, methods=[route.method])
        register(function)
    for trigger in triggers:
        app.queue_trigger(arg_name="message", queue_name=trigger.queue, connection=trigger.connection)(
            queue_function(trigger, source)
        )
    # Every other path under the prefix: links at the root, problem+json pointing to the OpenAPI document elsewhere
    # (OpenAI's error body under v1/, whose routes answer in it).
    app.route(route=CATCH_ALL, methods=list(ALL_METHODS), auth_level=func.AuthLevel.ANONYMOUS)(
        fallback_handler((route.method, route.path, route.errors) for route in routes)
    )
    if runtime is None:
        # What the start-up built (modules, classes, agents: some 90,000 objects) lives as long as the worker:
        # out of the collector's way, a full collection no longer stops one request for 50-130 ms.
        gc.freeze()
    return app
