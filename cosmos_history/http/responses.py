"""Every JSON body the HTTP API sends, built in one place (the shapes ``openapi.json`` documents)."""

from __future__ import annotations

import json
from typing import Any

from agent_framework import Message
from azurefunctions.extensions.http.fastapi import Response

from cosmos_history.domain.archive import HistoryPage, history_messages
from cosmos_history.domain.errors import ProblemError
from cosmos_history.domain.records import SessionPage, SessionRecord
from cosmos_history.domain.turn import TurnResult

PROBLEM_TYPE_BASE = "urn:cosmos-history:problem:"


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
        body["messages"] = [{"role": m.role, "text": m.text} for m in recent_messages(record)]
    return body


def recent_messages(record: SessionRecord) -> list[Message]:
    """The recent messages kept in a local-mode session document (a service-mode session keeps none)."""
    return [m for m in history_messages(record.session.state) if m.role in ("user", "assistant")]


def session_page_json(page: SessionPage) -> dict[str, Any]:
    return {
        "sessions": [
            {"id": s.id, "title": s.title, "mode": s.mode, "updatedAt": s.updated_at, "turns": s.turns}
            for s in page.sessions
        ],
        "continuationToken": page.continuation_token,
    }


def history_page_json(page: HistoryPage) -> dict[str, Any]:
    return {
        "messages": [{"index": i, "role": m.role, "text": m.text} for i, m in page.messages],
        "total": page.total,
        "before": page.next_before,
    }


def turn_json(result: TurnResult) -> dict[str, Any]:
    """A turn's answer; waiting for a person to approve tool calls is a normal answer, not an error."""
    body: dict[str, Any] = {
        "sessionId": result.session_id,
        "reply": result.reply,
        "turn": result.turn,
        "mode": result.mode,
        "agent": result.agent,
        "status": result.status,
        "toolCalls": [call.to_json() for call in result.tool_calls],
    }
    if result.approvals:
        body["approvals"] = [approval.to_json() for approval in result.approvals]
    return body


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
        "type": PROBLEM_TYPE_BASE + error.slug,
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
    }


def problem_response(error: ProblemError) -> Response:
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
    return Response(
        json_bytes(problem_body(error)),
        status_code=error.status,
        media_type="application/problem+json",
        headers=headers,
    )
