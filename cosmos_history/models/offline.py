"""A deterministic chat client so the app runs with no model account (`MODEL_PROVIDER=offline`).

It is a real ``BaseChatClient``: the agent, history providers and session
serialization all run exactly as they do with a real model. Its replies say
plainly that they come from the offline demo model and show what it received,
so a developer can see that history survives between turns.

It summarises deterministically when the app asks it to (long conversations, ``HISTORY_COMPACTION``):
the previous summary's lines plus one line per user message, the oldest and newest kept.

It calls tools too, deterministically: a message ``/<tool> {"arg": "value"}`` (JSON arguments, optional)
makes it call that tool of the agent, and once the results are back it reports them. So ``make run``
shows tools and approvals with no model account.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from typing import Any, ClassVar

from agent_framework import (
    BaseChatClient,
    ChatMiddlewareLayer,
    ChatResponse,
    ChatResponseUpdate,
    Content,
    FunctionInvocationLayer,
    Message,
    ResponseStream,
)
from agent_framework.observability import ChatTelemetryLayer

from cosmos_history.domain.compaction import SUMMARY_HEADER

_THREAD_ID = r"^offline-thread-(\d+)$"
"""A service-mode thread id this model made (compiled on first use, by ``re``'s cache: a local-mode app never
needs it)."""
_SUMMARY_LINES = (4, 8)
"""How many of the oldest and of the newest lines an offline summary keeps."""
_TOOL_REQUEST = re.compile(r"^/([A-Za-z0-9_-]+)\s*(\{.*\})?\s*$", re.DOTALL)


class OfflineChatClient(
    FunctionInvocationLayer[Any], ChatMiddlewareLayer[Any], ChatTelemetryLayer[Any], BaseChatClient[Any]
):
    """Echoes the last user message and counts the earlier messages it was given.

    It is composed like the framework's public clients (tools, middleware, telemetry layers).

    With ``store=True`` it behaves like a service that keeps the thread: it returns a
    conversation id and, on the next call, counts the history behind that id instead
    of the messages sent. The id encodes only a message count, never text, so no
    server-side state is needed for the demo.
    """

    OTEL_PROVIDER_NAME: ClassVar[str] = "offline"

    def _inner_get_response(
        self,
        *,
        messages: Sequence[Message],
        stream: bool,
        options: Mapping[str, Any],
        **kwargs: Any,
    ) -> Awaitable[ChatResponse] | ResponseStream[ChatResponseUpdate, ChatResponse]:
        contents, conversation_id = self._answer(messages, options)
        if stream:
            return self._build_response_stream(self._stream(contents, conversation_id))
        return self._respond(contents, conversation_id)

    async def _respond(self, contents: list[Content], conversation_id: str | None) -> ChatResponse:
        return ChatResponse(
            messages=[Message(role="assistant", contents=contents)],
            conversation_id=conversation_id,
            model="offline-demo",
        )

    async def _stream(self, contents: list[Content], conversation_id: str | None) -> AsyncIterator[ChatResponseUpdate]:
        for item in contents:
            for piece in re.findall(r"\S+\s*", item.text or "") if item.type == "text" else [item]:
                yield ChatResponseUpdate(
                    role="assistant",
                    contents=[Content.from_text(piece) if isinstance(piece, str) else piece],
                    conversation_id=conversation_id,
                    model="offline-demo",
                )

    def _answer(self, messages: Sequence[Message], options: Mapping[str, Any]) -> tuple[list[Content], str | None]:
        """A tool call when the user asked for one, a report of the tools' results once they are back,
        and the echo otherwise."""
        last = messages[-1] if messages else None
        if last is not None and last.role == "user" and last.text.startswith(SUMMARY_HEADER):
            return [Content.from_text(offline_summary(last.text))], None
        text, conversation_id = self._reply(messages, options)
        results = [c for c in messages[-1].contents if c.type == "function_result"] if messages else []
        if results:
            return [Content.from_text(_report(results, messages))], conversation_id
        call = _requested_call(messages[-1] if messages else None, options)
        if call is not None:
            return [call], conversation_id
        return [Content.from_text(text)], conversation_id

    @staticmethod
    def _reply(messages: Sequence[Message], options: Mapping[str, Any]) -> tuple[str, str | None]:
        conversation = [m for m in messages if m.role in ("user", "assistant")]
        said = next((m.text for m in reversed(conversation) if m.role == "user"), "")
        if options.get("store"):
            match = re.match(_THREAD_ID, str(options.get("conversation_id") or ""))
            earlier = int(match.group(1)) if match else 0
            total = earlier + len(conversation)
            text = (
                f"[offline demo model] This service-managed thread holds {earlier} earlier messages "
                f"(none were sent to me this turn). You said: {said}"
            )
            return text, f"offline-thread-{total + 1}"
        earlier = len(conversation) - 1
        text = f"[offline demo model] I received {earlier} earlier messages with this one. You said: {said}"
        return text, None


def _requested_call(last: Message | None, options: Mapping[str, Any]) -> Content | None:
    """The tool call a ``/<tool> {json}`` user message asks for, when the agent has that tool."""
    if last is None or last.role != "user":
        return None
    match = _TOOL_REQUEST.match(last.text.strip())
    if match is None:
        return None
    names = {getattr(t, "name", None) for t in options.get("tools") or ()}
    if match.group(1) not in names:
        return None
    try:
        arguments = json.loads(match.group(2) or "{}")
    except ValueError:
        return None
    return Content.from_function_call(f"offline-{uuid.uuid4().hex[:12]}", match.group(1), arguments=arguments)


def _report(results: Sequence[Content], messages: Sequence[Message]) -> str:
    names = {c.call_id: c.name for m in messages for c in m.contents if c.type == "function_call"}
    said = "; ".join(
        f"{names.get(r.call_id) or 'the tool'} returned {r.result if r.exception is None else r.exception}"
        for r in results
    )
    return f"[offline demo model] {said}"


def offline_summary(request: str) -> str:
    """The previous summary's lines and one line per user message of the excerpt, oldest and newest kept."""
    previous, _, excerpt = request.partition("\n\nExcerpt:\n")
    old = previous.partition("Previous summary:\n")[2].strip()
    lines = [line for line in old.splitlines() if line.strip() and old != "(none)"]
    lines += [f"The user said: {line[6:206]}" for line in excerpt.splitlines() if line.startswith("user: ")]
    first, last = _SUMMARY_LINES
    if len(lines) > first + last:
        lines = lines[:first] + lines[-last:]
    return "\n".join(lines) or "Nothing to summarise yet."
