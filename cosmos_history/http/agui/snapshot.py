"""A stored session as AG-UI messages, for ``MESSAGES_SNAPSHOT``: what a client joining a thread is shown.

The session is read from the caller's own store (another user's thread of the same id is simply not
there). Message ids are the history's positions (``<threadId>:<index>``), so a snapshot names the same
message the same way every time; tool results get ``:<n>`` after their message's. Only the latest
``SNAPSHOT_MESSAGES`` messages are shown (the whole history pages through ``GET .../messages``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ag_ui.core import (
    AssistantMessage,
    FunctionCall,
    MessagesSnapshotEvent,
    SystemMessage,
    ToolCall,
    ToolMessage,
    UserMessage,
)
from agent_framework import Message

from cosmos_history.domain.approvals import json_arguments, json_result, pending_requests
from cosmos_history.domain.archive import read_page
from cosmos_history.domain.errors import AgentMismatchError
from cosmos_history.domain.ports import SessionRepository
from cosmos_history.http.agui.encoder import PendingCall

SNAPSHOT_MESSAGES = 200


@dataclass(frozen=True)
class Thread:
    """What a joining client learns of a stored session."""

    turns: int
    agent: str | None
    messages: list[Any]
    pending: list[PendingCall]


async def load_thread(store: SessionRepository, thread_id: str, *, agent: str, default_agent: str) -> Thread | None:
    """The caller's session ``thread_id`` as AG-UI messages and pending approvals; ``None`` when there is none.

    Raises:
        AgentMismatchError: the session belongs to another agent than the route's.
    """
    record = await store.load(thread_id)
    if record is None:
        return None
    own = record.agent or default_agent
    if own != agent:
        raise AgentMismatchError(f"This thread belongs to agent {own!r}; join it at /api/ag-ui/{own}.")
    page = await read_page(record, store.archive, before=None, limit=SNAPSHOT_MESSAGES)
    pending = [
        PendingCall(
            request.id or "",
            request.function_call.call_id or request.id or "",
            request.function_call.name or "",
            json_arguments(request.function_call.arguments),
        )
        for request in pending_requests(record.session)
        if request.function_call is not None
    ]
    return Thread(record.turns, record.agent, agui_messages(thread_id, page.messages), pending)


def snapshot(messages: Iterable[Any]) -> MessagesSnapshotEvent:
    return MessagesSnapshotEvent(messages=list(messages))


def agui_messages(thread_id: str, messages: Iterable[tuple[int, Message]]) -> list[Any]:
    """Stored messages as AG-UI messages: text, the assistant's tool calls, and tool results (approval requests
    and answers are not messages in AG-UI: a pending one is the run's interrupt)."""
    shown: list[Any] = []
    for index, message in messages:
        base, text = f"{thread_id}:{index}", message.text
        if message.role == "user" and text:
            shown.append(UserMessage(id=base, content=text))
        elif message.role == "system" and text:
            shown.append(SystemMessage(id=base, content=text))
        elif message.role == "assistant":
            calls = [
                ToolCall(id=c.call_id, function=FunctionCall(name=c.name or "", arguments=_arguments(c.arguments)))
                for c in message.contents
                if c.type == "function_call" and c.call_id
            ]
            if text or calls:
                shown.append(AssistantMessage(id=base, content=text or None, tool_calls=calls or None))
        results = [c for c in message.contents if c.type == "function_result" and c.call_id]
        shown += [
            ToolMessage(id=f"{base}:{n}", tool_call_id=r.call_id, content=_text(json_result(r)))
            for n, r in enumerate(results)
        ]
    return shown


def _arguments(arguments: Any) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments if arguments is not None else {})


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
