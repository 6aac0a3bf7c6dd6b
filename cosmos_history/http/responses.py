"""Every JSON body the HTTP API sends, built in one place (the shapes ``openapi.json`` documents)."""

from __future__ import annotations

import json
from typing import Any

from agent_framework import Message
from azurefunctions.extensions.http.fastapi import Response

from cosmos_history.agents.catalog import Agents
from cosmos_history.domain.approvals import pending_approvals
from cosmos_history.domain.archive import EntryPage, history_messages
from cosmos_history.domain.compaction import summary_of
from cosmos_history.domain.delegation import children_of
from cosmos_history.domain.entries import message_entries
from cosmos_history.domain.errors import ErrorKind, ProblemError
from cosmos_history.domain.records import SessionPage, SessionRecord
from cosmos_history.domain.turn import TurnResult

PROBLEM_TYPE_BASE = "urn:cosmos-history:problem:"

HTTP_STATUS: dict[ErrorKind, int] = {
    ErrorKind.INVALID: 400,
    ErrorKind.UNAUTHENTICATED: 401,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.NOT_SUPPORTED: 405,
    ErrorKind.CONFLICT: 409,
    ErrorKind.GONE: 410,
    ErrorKind.TOO_LARGE: 413,
    ErrorKind.UNSUPPORTED_MEDIA: 415,
    ErrorKind.UNPROCESSABLE: 422,
    ErrorKind.INTERNAL: 500,
    ErrorKind.UPSTREAM_FAILED: 502,
    ErrorKind.UNAVAILABLE: 503,
}
"""The HTTP status of each kind of error: the one place the domain's errors become HTTP."""


def http_status(error: ProblemError) -> int:
    return HTTP_STATUS[error.kind]


def session_json(record: SessionRecord, *, with_messages: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": record.id,
        "mode": record.mode,
        "agent": record.agent,
        "title": record.title,
        "createdAt": record.created_at,
        "updatedAt": record.updated_at,
        "turns": record.turns,
    }
    if with_messages:
        body["archivedMessages"] = record.archive.count
        body["messages"] = [entry for m in recent_messages(record) for entry in message_entries(m)]
        body["pendingApprovals"] = [approval.to_json() for approval in pending_approvals(record.session)]
        body["children"] = children_of(record.session)
        body["summary"] = summary_of(record)
    return body


def recent_messages(record: SessionRecord) -> list[Message]:
    """The recent messages kept in a local-mode session document (a service-mode session keeps none)."""
    return [m for m in history_messages(record.session.state) if m.role in ("user", "assistant", "tool")]


def session_page_json(page: SessionPage) -> dict[str, Any]:
    return {
        "sessions": [summary.to_json() for summary in page.sessions],
        "continuationToken": page.continuation_token,
    }


def history_page_json(page: EntryPage) -> dict[str, Any]:
    return {
        "messages": [{"index": i, **entry} for i, entry in page.entries],
        "total": page.total,
        "before": page.next_before,
    }


def turn_json(result: TurnResult) -> dict[str, Any]:
    """A turn's answer; waiting for a person to approve tool calls is a normal answer, not an error."""
    return {**result.to_json(), "status": result.status}


def agents_json(agents: Agents) -> dict[str, Any]:
    return {
        "agents": [
            {
                "name": agent.name,
                "description": agent.description,
                "tools": [
                    {
                        "name": t.name,
                        "description": t.description,
                        "approvalRequired": t.approval_required,
                        "parameters": t.parameters,
                    }
                    for t in agent.tools()
                ],
            }
            for agent in (agents[name] for name in sorted(agents))
        ],
        "default": agents.default,
    }


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json_bytes(body), status_code=status, media_type="application/json", headers=headers)


def json_bytes(value: Any) -> bytes:
    """``value`` as UTF-8 JSON. Text stored before input was checked may hold a lone surrogate, which UTF-8
    cannot carry: such a document is sent with JSON's ``\\u`` escapes instead of failing the response."""
    try:
        return json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value).encode("ascii")


def problem_body(error: ProblemError) -> dict[str, Any]:
    """The problem+json document for ``error``: also the data of a stream's ``error`` event."""
    return {
        **error.extensions,
        "type": PROBLEM_TYPE_BASE + error.slug,
        "title": error.title,
        "status": http_status(error),
        "detail": error.detail,
    }


def stored_problem(fields: dict[str, Any]) -> dict[str, Any]:
    """The problem document of an error as a turn stored it (see
    :func:`~cosmos_history.domain.turn_records.error_fields`)."""
    return {
        **fields.get("extensions", {}),
        "type": PROBLEM_TYPE_BASE + fields["slug"],
        "title": fields["title"],
        "status": HTTP_STATUS.get(ErrorKind(fields["kind"]), 500),
        "detail": fields["detail"],
    }


def problem_response(error: ProblemError) -> Response:
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
    return Response(
        json_bytes(problem_body(error)),
        status_code=http_status(error),
        media_type="application/problem+json",
        headers=headers,
    )
