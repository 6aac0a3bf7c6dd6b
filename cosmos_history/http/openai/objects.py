"""Every JSON shape the OpenAI-compatible endpoint sends: response objects, output items, model lists and
OpenAI's error body. Field lists follow the OpenAI API reference and the Open Responses specification:
each object carries every field they list, with ``null`` where this app has no value.
"""

from __future__ import annotations

import json
import time
from typing import Any

from azurefunctions.extensions.http.fastapi import Response

from cosmos_history.agents.catalog import Agents
from cosmos_history.domain.approvals import PendingApproval
from cosmos_history.domain.client_tools import ClientCall
from cosmos_history.domain.errors import ErrorKind, ProblemError
from cosmos_history.http.openai.ids import item_id
from cosmos_history.http.responses import http_status, json_bytes

OWNER = "cosmos-history"
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error"}


def response_object(
    response_id: str,
    model: str,
    echo: dict[str, Any],
    *,
    status: str = "in_progress",
    created_at: float,
    previous_response_id: str | None = None,
    conversation: str | None = None,
    store: bool = True,
) -> dict[str, Any]:
    """A response as ``response.created`` announces it; :func:`complete` fills in the outcome."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(created_at),
        "completed_at": None,
        "status": status,
        "incomplete_details": None,
        "model": model,
        "previous_response_id": previous_response_id,
        "conversation": {"id": conversation} if conversation is not None else None,
        "output": [],
        "error": None,
        "usage": None,
        "store": store,
        "background": False,
        "service_tier": "default",
        "presence_penalty": 0,
        "frequency_penalty": 0,
        "top_logprobs": 0,
        **echo,
    }


def complete(response: dict[str, Any], output: list[dict[str, Any]], usage: dict[str, int] | None) -> dict[str, Any]:
    return {
        **response,
        "status": "completed",
        "completed_at": int(time.time()),
        "output": output,
        "usage": usage_object(usage),
    }


def failed(response: dict[str, Any], output: list[dict[str, Any]], error: ProblemError) -> dict[str, Any]:
    """A response that failed mid-way; its error's code is ``server_error`` (of the codes OpenAI's response object
    defines, the only one a turn that failed after it started can have), its message says what happened."""
    error_object = {"code": "server_error", "message": error.detail}
    return {**response, "status": "failed", "output": output, "error": error_object}


def usage_object(usage: dict[str, int] | None) -> dict[str, Any] | None:
    if not usage:
        return None
    read, wrote = usage.get("input", 0), usage.get("output", 0)
    return {
        "input_tokens": read,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": wrote,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.get("total", read + wrote),
    }


def message_item(message_id: str, text: str, *, done: bool) -> dict[str, Any]:
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "status": "completed" if done else "in_progress",
        "content": [text_part(text)] if done else [],
    }


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def tool_call_item(
    call_id: str, name: str, arguments: Any, result: Any, server: str, *, unknown: bool = False
) -> dict[str, Any]:
    """A tool that ran on the server (an agent's own or an MCP server's) as OpenAI's ``mcp_call`` item:
    a ``function_call`` would tell the client to run it. A call whose outcome is unknown (it had started when
    the service stopped, and was not run again) is ``incomplete``, with that said in ``error``."""
    text = result if isinstance(result, str) else _json_text(result)
    return {
        "id": item_id("mcp", call_id),
        "type": "mcp_call",
        "server_label": server,
        "name": name,
        "arguments": _json_text(arguments),
        "output": None if unknown else text,
        "error": text if unknown else None,
        "approval_request_id": None,
        "status": "incomplete" if unknown else "completed",
    }


def approval_item(approval: PendingApproval, server: str) -> dict[str, Any]:
    return {
        "id": approval.id,
        "type": "mcp_approval_request",
        "server_label": server,
        "name": approval.name,
        "arguments": _json_text(approval.arguments),
    }


def function_call_item(call: ClientCall) -> dict[str, Any]:
    return {
        "id": item_id("fc", call.call_id),
        "type": "function_call",
        "call_id": call.call_id,
        "name": call.name,
        "arguments": call.arguments,
        "status": "completed",
    }


def models_object(agents: Agents) -> dict[str, Any]:
    return {"object": "list", "data": [model_object(name) for name in sorted(agents)]}


def model_object(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": OWNER}


def items_page(items: list[dict[str, Any]], *, has_more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": items,
        "first_id": items[0]["id"] if items else None,
        "last_id": items[-1]["id"] if items else None,
        "has_more": has_more,
    }


def error_code(error: ProblemError) -> str:
    return error.slug.replace("-", "_")


def error_status(error: ProblemError) -> int:
    """OpenAI answers every invalid request with a 400, where the native API distinguishes a 422."""
    return 400 if error.kind is ErrorKind.UNPROCESSABLE else http_status(error)


def error_body(error: ProblemError) -> dict[str, Any]:
    """OpenAI's error body: what the ``openai`` SDKs parse into their exception types."""
    status = error_status(error)
    kind = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    param = request_field(error.param)
    return {"error": {"message": error.detail, "type": kind, "param": param, "code": error_code(error)}}


_REQUEST_FIELDS = {"expected_turn": "previous_response_id", "inputs": "input", "client_tools": "tools"}
"""The turn request's fields the domain names in its errors, as the fields of a Responses request."""


def request_field(field: str | None) -> str | None:
    """The Responses request's name of a turn request's ``field`` (``client_tools[0].name``: ``tools[0].name``)."""
    if field is None:
        return None
    head, sep, rest = field.partition("[")
    return _REQUEST_FIELDS.get(head, head) + sep + rest


def error_response(error: ProblemError) -> Response:
    """The error as the ``openai`` SDKs expect it; ``x-should-retry`` stops their automatic retries of
    client errors that no retry can fix (they retry every 409 otherwise)."""
    headers = {"x-should-retry": "false"} if error.kind.caller_fault else {}
    if error.retry_after is not None:
        headers = {"x-should-retry": "true", "Retry-After": str(error.retry_after)}
    body = json_bytes(error_body(error))
    return Response(body, status_code=error_status(error), media_type="application/json", headers=headers)


def _json_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
