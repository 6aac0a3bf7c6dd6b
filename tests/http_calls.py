"""Calling the app's functions in process as the Functions worker does, and reading what they stored."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode, urlsplit

from fastapi import Request, Response

COMPLETED = {"agent": "assistant", "status": "completed", "toolCalls": [], "approvals": []}
"""The fields a completed turn of the default agent adds to its answer when it ran no tool."""


def request(
    method: str,
    url: str,
    *,
    body: Any = None,
    raw: bytes | None = None,
    route: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
    user: str | None = "alice",
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> Request:
    """A request as the worker hands it over: route values in ``path_params``, the body on ``receive``."""
    all_headers = {"content-type": content_type, **(headers or {})}
    if user is not None:
        all_headers["x-user-id"] = user
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": data, "more_body": False}

    scope = {
        "type": "http",
        "method": method,
        "path": urlsplit(url).path,
        "query_string": urlencode(params or {}).encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in all_headers.items()],
        "path_params": dict(route or {}),
    }
    return Request(scope, receive)


async def call(functions, name: str, req: Request) -> tuple[int, Any, Response]:
    response = await functions[name](req)
    body = response.body
    return response.status_code, (json.loads(body) if body else None), response


def assert_problem(status: int, response: Response, expected: int, *extensions: str) -> dict[str, Any]:
    """The problem document of ``response``, checked: its status, and exactly the standard members plus
    the ``extensions`` named."""
    assert status == expected, response.body
    assert response.headers["content-type"] == "application/problem+json"
    problem = json.loads(response.body)
    assert set(problem) == {"type", "title", "status", "detail", *extensions} and problem["status"] == expected
    assert "Traceback" not in problem["detail"]
    return problem


async def post_message(functions, session_id: str, message: Any, **kwargs) -> tuple[int, Any, Response]:
    req = request(
        "POST", f"/api/sessions/{session_id}/messages", body={"message": message}, route={"id": session_id}, **kwargs
    )
    return await call(functions, "post_message_route", req)


async def stored_document(runtime, session_id: str, user: str = "alice") -> dict[str, Any]:
    """The stored session document of ``user`` (``request``'s default caller unless told)."""
    return await runtime.store.container.read_item(session_id, partition_key=[user, session_id])


def read_document(env: dict[str, str], session_id: str, user: str = "anonymous") -> dict:
    """The stored session document of ``user`` (a caller sending no X-User-Id is "anonymous")."""
    from azure.cosmos import CosmosClient

    with CosmosClient(env["COSMOS_ENDPOINT"], env["COSMOS_KEY"], connection_verify=False) as client:
        container = client.get_database_client(env["COSMOS_DATABASE"]).get_container_client(env["COSMOS_CONTAINER"])
        return container.read_item(session_id, partition_key=[user, session_id])
