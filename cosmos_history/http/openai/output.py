"""A turn's events as Responses output items and streaming events, in the order they happen.

Text becomes a ``message`` item (a new one after each tool step), a tool that ran on the server an
``mcp_call`` item, a tool waiting for approval an ``mcp_approval_request`` item, and a call of one of
the client's own tools a ``function_call`` item. A plain response is built by the same code, from
events made of the turn's result (:func:`cosmos_history.http.openai.run.from_result`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from cosmos_history.domain.approvals import PendingApproval
from cosmos_history.domain.client_tools import ClientCall
from cosmos_history.domain.events import ApprovalRequired, TextDelta, ToolCalled, ToolResult, TurnEvent
from cosmos_history.domain.results import TurnResult
from cosmos_history.http.openai import objects
from cosmos_history.http.openai.ids import item_id

Event = dict[str, Any]


class OutputBuilder:
    """Output items built from a turn's typed events (the encoder subscribed to a streamed turn);
    :meth:`feed` and :meth:`close` return the streaming events they make."""

    def __init__(self, server_label: str, client_tools: set[str], ids: Callable[[str], str] = item_id) -> None:
        """``ids`` names new message items (a background response's replays must name them alike)."""
        self.output: list[dict[str, Any]] = []
        self._ids = ids
        self._server = server_label
        self._client_tools = client_tools
        self._calls: dict[str, tuple[str, Any]] = {}
        self._emitted: set[str] = set()
        self._text: tuple[int, str, str] | None = None
        """The open message item: its output index, id and text so far."""

    def feed(self, event: TurnEvent) -> list[Event]:
        """The streaming events one of the turn's typed events makes (none for how the turn ended)."""
        if isinstance(event, TextDelta):
            return self._delta(event.text)
        if not isinstance(event, ToolCalled | ToolResult | ApprovalRequired):
            return []
        events = self._close_text()
        if isinstance(event, ToolCalled) and event.name in self._client_tools:
            arguments = event.arguments
            text = arguments if isinstance(arguments, str) else json.dumps(arguments)
            events += self._whole(objects.function_call_item(ClientCall(event.id, event.name, text)), event.id)
        elif isinstance(event, ToolCalled):
            self._calls[event.id] = (event.name, event.arguments)
        elif isinstance(event, ToolResult):
            name, arguments = self._calls.get(event.id, ("", {}))
            unknown = event.status == "unknown"
            item = objects.tool_call_item(event.id, name, arguments, event.result, self._server, unknown=unknown)
            events += self._whole(item, event.id)
        else:
            approval = PendingApproval(event.id, event.name, event.arguments)
            events += self._whole(objects.approval_item(approval, self._server), event.id)
        return events

    def close(self, result: TurnResult) -> list[Event]:
        """The end of the turn: the open message is done, and what the turn ended with but the stream did
        not show (a replayed turn's calls, approvals) is added."""
        events = self._close_text()
        for approval in result.approvals:
            if approval.id not in self._emitted:
                events += self._whole(objects.approval_item(approval, self._server), approval.id)
        for call in result.client_calls:
            if call.call_id not in self._emitted:
                events += self._whole(objects.function_call_item(call), call.call_id)
        return events

    def _delta(self, text: str) -> list[Event]:
        events: list[Event] = []
        if self._text is None:
            index, message_id = len(self.output), self._ids("msg")
            self.output.append(objects.message_item(message_id, "", done=False))
            self._text = (index, message_id, "")
            events += [
                {"type": "response.output_item.added", "output_index": index, "item": self.output[index]},
                {**self._part_event("response.content_part.added"), "part": objects.text_part("")},
            ]
        index, message_id, sent = self._text
        self._text = (index, message_id, sent + text)
        return [*events, {**self._part_event("response.output_text.delta"), "delta": text, "logprobs": []}]

    def _close_text(self) -> list[Event]:
        if self._text is None:
            return []
        index, message_id, text = self._text
        events = [
            {**self._part_event("response.output_text.done"), "text": text, "logprobs": []},
            {**self._part_event("response.content_part.done"), "part": objects.text_part(text)},
        ]
        self._text = None
        self.output[index] = objects.message_item(message_id, text, done=True)
        return [*events, {"type": "response.output_item.done", "output_index": index, "item": self.output[index]}]

    def _part_event(self, kind: str) -> Event:
        assert self._text is not None
        index, message_id, _ = self._text
        return {"type": kind, "item_id": message_id, "output_index": index, "content_index": 0}

    def _whole(self, item: dict[str, Any], key: str) -> list[Event]:
        """An item that is complete when it appears (a tool's call with its result, an approval request)."""
        self._emitted.add(key)
        index = len(self.output)
        self.output.append(item)
        started = {**item, "status": "in_progress"} if "status" in item else item
        if item["type"] == "mcp_call":
            started = {**started, "output": None}
        return [
            {"type": "response.output_item.added", "output_index": index, "item": started},
            {"type": "response.output_item.done", "output_index": index, "item": item},
        ]
