"""How a turn's result is stored for replays: a versioned format of its own, apart from any API's body.

An idempotent retry is answered from this stored form, possibly by a newer version of the app. So the stored
form names its version (``v``) and never follows the HTTP answer's field names: renaming a field of an API
changes how results are shown, never whether a stored one can be read back. Version 1 was the HTTP answer
itself (camelCase, no ``v``); results stored by that version decode still.
"""

from __future__ import annotations

from typing import Any

from cosmos_history.domain.approvals import PendingApproval, ToolCall
from cosmos_history.domain.client_tools import ClientCall
from cosmos_history.domain.results import TurnResult

VERSION = 2


class UnknownResultVersionError(ValueError):
    """A stored result of a version this app does not know (written by a newer app)."""


def encode(result: TurnResult) -> dict[str, Any]:
    """``result`` as it is stored (its usage is not: a replay made no model call)."""
    return {
        "v": VERSION,
        "session": result.session_id,
        "reply": result.reply,
        "turn": result.turn,
        "mode": result.mode,
        "agent": result.agent,
        "tools": [[c.id, c.name, c.arguments, c.result, c.status] for c in result.tool_calls],
        # A child session's approval (a delegation's) carries that session's id as a fourth item.
        "approvals": [[a.id, a.name, a.arguments, *([a.session_id] if a.session_id else [])] for a in result.approvals],
        "clientCalls": [[c.call_id, c.name, c.arguments] for c in result.client_calls],
    }


def decode(stored: dict[str, Any], *, replayed: bool = True) -> TurnResult:
    """The result ``stored`` holds, whichever version wrote it.

    Raises:
        UnknownResultVersionError: a version newer than this app's.
    """
    version = stored.get("v", 1)
    if version == 1:
        return _decode_v1(stored, replayed)
    if version != VERSION:
        raise UnknownResultVersionError(f"stored result version {version!r}; this app reads up to {VERSION}")
    return TurnResult(
        stored["session"],
        stored["reply"],
        stored["turn"],
        stored["mode"],
        agent=stored.get("agent"),
        tool_calls=tuple(ToolCall(*call) for call in stored["tools"]),
        approvals=tuple(PendingApproval(*approval) for approval in stored["approvals"]),
        client_calls=tuple(ClientCall(*call) for call in stored["clientCalls"]),
        replayed=replayed,
    )


def _decode_v1(value: dict[str, Any], replayed: bool) -> TurnResult:
    """Version 1: the HTTP answer's body, as the app stored it until the format was versioned."""
    return TurnResult(
        value["sessionId"],
        value["reply"],
        value["turn"],
        value["mode"],
        agent=value.get("agent"),
        tool_calls=tuple(ToolCall(**call) for call in value.get("toolCalls", [])),
        approvals=tuple(PendingApproval(**approval) for approval in value.get("approvals", [])),
        client_calls=tuple(ClientCall(c["callId"], c["name"], c["arguments"]) for c in value.get("clientCalls", [])),
        replayed=replayed,
    )
