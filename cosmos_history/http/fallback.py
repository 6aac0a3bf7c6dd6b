"""What the API answers where no route of its table matches: links at its root, and problem+json that
points to the OpenAPI document for any other path (the Functions host would answer a bare 404). Under a
prefix whose routes answer in another error shape (``v1/``: OpenAI's), the answer takes that shape, so
the clients of those routes (the ``openai`` SDKs) can read it.

:func:`cosmos_history.app.create_app` registers it as a catch-all route (``{*path}``), which the host
matches after every more specific route; it is anonymous, as it holds no data.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable

from azurefunctions.extensions.http.fastapi import Request, Response

from cosmos_history.domain.errors import MethodNotAllowedError, RouteNotFoundError
from cosmos_history.http.calls import ErrorRenderer
from cosmos_history.http.responses import json_response, problem_response

CATCH_ALL = "{*path}"
_PARAMETER = r"\{[^}]+\}"
"""A route template's parameter; compiled (by ``re``'s cache) with the patterns, on the first unknown path."""


def fallback_handler(routes: Iterable[tuple[str, str, ErrorRenderer]]) -> Callable[[Request], Awaitable[Response]]:
    """The handler of every path the route table (``(method, path template, error renderer)``) does not serve.

    An unknown path answers in the error shape of the routes that share its first segment (problem+json
    where none does).
    """
    served = list(routes)
    table: list[tuple[str, re.Pattern[str]]] = []  # compiled on the first unknown path, not at every cold start
    shapes: dict[str, ErrorRenderer] = {}
    for _, path, render in served:
        shapes.setdefault(_first_segment(path), render)

    async def unknown_route(req: Request) -> Response:
        path = str(req.path_params.get("path") or "").strip("/")
        base = _base(req.url.path, path)
        if not path and req.method == "GET":
            return json_response(index_json(base))
        if not table:
            table.extend((method.upper(), _pattern(template)) for method, template, _ in served)
        allowed = sorted(
            {method for method, pattern in table if pattern.fullmatch(path)} | ({"GET"} if not path else set())
        )
        render = shapes.get(_first_segment(path), problem_response) if path else problem_response
        where = f"{base}/{path}" if path else f"{base}/"
        guide = f"{base}/openapi.json describes every route; {base}/chat is the chat page."
        if allowed:
            listed = ", ".join(allowed)
            response = render(
                MethodNotAllowedError(f"{req.method} is not allowed on {where} (allowed: {listed}). {guide}")
            )
            response.headers["Allow"] = listed
        else:
            response = render(RouteNotFoundError(f"No route answers {req.method} {where}. {guide}"))
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    return unknown_route


def index_json(base: str) -> dict[str, object]:
    """``GET /api/``: where a person or a client goes next."""
    return {
        "name": "cosmos-history",
        "links": {
            "chat": f"{base}/chat",
            "openapi": f"{base}/openapi.json",
            "agents": f"{base}/agents",
            "sessions": f"{base}/sessions",
            "health": f"{base}/health",
        },
    }


def _first_segment(path: str) -> str:
    return path.strip("/").split("/")[0]


def _pattern(template: str) -> re.Pattern[str]:
    parts = re.split(_PARAMETER, template.strip("/"))
    return re.compile("[^/]+".join(re.escape(part) for part in parts))


def _base(url_path: str, path: str) -> str:
    """The route prefix the request came under (``/api``), from its URL and the catch-all's value."""
    trimmed = url_path.rstrip("/")
    if path and trimmed.endswith("/" + path):
        trimmed = trimmed[: -len(path) - 1]
    return trimmed
