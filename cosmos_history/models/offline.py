"""A deterministic chat client so the app runs with no model account (`MODEL_PROVIDER=offline`).

It is a real ``BaseChatClient``: the agent, history providers and session
serialization all run exactly as they do with a real model. Its replies say
plainly that they come from the offline demo model and show what it received,
so a developer can see that history survives between turns.
"""

from __future__ import annotations

import re
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

_THREAD_ID = re.compile(r"^offline-thread-(\d+)$")


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
        text, conversation_id = self._reply(messages, options)
        if stream:
            return self._build_response_stream(self._stream(text, conversation_id))
        return self._respond(text, conversation_id)

    async def _respond(self, text: str, conversation_id: str | None) -> ChatResponse:
        return ChatResponse(
            messages=[Message(role="assistant", contents=[text])],
            conversation_id=conversation_id,
            model="offline-demo",
        )

    async def _stream(self, text: str, conversation_id: str | None) -> AsyncIterator[ChatResponseUpdate]:
        for piece in re.findall(r"\S+\s*", text):
            yield ChatResponseUpdate(
                role="assistant",
                contents=[Content.from_text(piece)],
                conversation_id=conversation_id,
                model="offline-demo",
            )

    @staticmethod
    def _reply(messages: Sequence[Message], options: Mapping[str, Any]) -> tuple[str, str | None]:
        conversation = [m for m in messages if m.role in ("user", "assistant")]
        said = next((m.text for m in reversed(conversation) if m.role == "user"), "")
        if options.get("store"):
            match = _THREAD_ID.match(str(options.get("conversation_id") or ""))
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
