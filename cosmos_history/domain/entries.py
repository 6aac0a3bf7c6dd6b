"""A stored message as the history entries the API shows: its text, and each tool call, tool result,
approval request and approval answer as an entry of its own. History pages count these entries."""

from __future__ import annotations

from typing import Any

from agent_framework import Content, Message

from cosmos_history.domain.approvals import json_arguments, json_result
from cosmos_history.domain.tool_journal import outcome_of


def message_entries(message: Message) -> list[dict[str, Any]]:
    """``message`` as history entries: its text as ``{role, text}``, then one entry per tool content."""
    entries: list[dict[str, Any]] = [{"role": message.role, "text": message.text}] if message.text else []
    for content in message.contents:
        entry = _tool_entry(content)
        if entry is not None:
            entries.append({"role": message.role, **entry})
    return entries


def entry_count(message: Message) -> int:
    return len(message_entries(message))


def _tool_entry(content: Content) -> dict[str, Any] | None:
    call = content.function_call
    if content.type == "function_call":
        return {
            "type": "tool_call",
            "callId": content.call_id,
            "name": content.name,
            "arguments": json_arguments(content.arguments),
        }
    if content.type == "function_result":
        return {
            "type": "tool_result",
            "callId": content.call_id,
            "result": json_result(content),
            "status": outcome_of(content),
        }
    if content.type == "function_approval_request" and call is not None:
        return {
            "type": "approval_request",
            "id": content.id,
            "callId": call.call_id,
            "name": call.name,
            "arguments": json_arguments(call.arguments),
        }
    if content.type == "function_approval_response" and call is not None:
        return {
            "type": "approval_response",
            "id": content.id,
            "callId": call.call_id,
            "name": call.name,
            "approved": bool(content.approved),
        }
    return None
