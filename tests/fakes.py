"""Test doubles for what cannot run here: the language model."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from typing import Any

from agent_framework import (
    BaseChatClient,
    ChatResponse,
    ChatResponseUpdate,
    Content,
    FunctionInvocationLayer,
    Message,
    ResponseStream,
    UsageDetails,
)


class RecordingChatClient(FunctionInvocationLayer[Any], BaseChatClient[Any]):
    """A real ``BaseChatClient`` that records every request, so tests can prove what the model saw.

    Replies are ``reply_prefix`` + the call number; ``fail_with`` makes the next calls raise;
    ``usage`` is reported as the response's token usage, as real services do.
    """

    def __init__(self, *, reply_prefix: str = "reply", fail_with: Exception | None = None, delay: float = 0.0) -> None:
        super().__init__()
        self.calls: list[list[Message]] = []
        self.options: list[dict[str, Any]] = []
        self.reply_prefix = self._first_prefix = reply_prefix
        self.reply_template: str | None = None
        """When set (even to ""), the exact reply text instead of ``reply_prefix`` + call number."""
        self.fail_with = fail_with
        self.fail_after = 0
        """How many words a streamed reply sends before ``fail_with`` is raised (a failure mid-stream)."""
        self.delay = delay
        self.usage: UsageDetails | None = None
        self.gate: asyncio.Event | None = None
        """When set, each call waits for it: a test decides exactly when the model answers."""
        self.entered = asyncio.Event()
        """Set when a call has started (and is waiting at the gate, if there is one)."""
        self.tool_call: tuple[str, dict[str, Any]] | None = None
        """When set, a request ending with the user's message is answered with this call of the agent's tool."""
        self.tool_call_always = False
        """With ``tool_call``: answer every request with the call, tool results included (a runaway model)."""
        self.pause_after: int | None = None
        """When set, a streamed reply stops after this many words until ``resume`` is set (a slow model mid-reply)."""
        self.paused = asyncio.Event()
        """Set when a streamed reply has paused at ``pause_after``."""
        self.resume = asyncio.Event()

    def reset(self) -> None:
        """Forget every call and every setting a test made: the next test starts with a model that answers
        at once and never fails (fixtures call it before and after each test)."""
        self.calls.clear()
        self.options.clear()
        self.reply_prefix = self._first_prefix
        self.reply_template = None
        self.fail_with = None
        self.fail_after = 0
        self.delay = 0.0
        self.usage = None
        self.gate = None
        self.entered = asyncio.Event()
        self.tool_call = None
        self.tool_call_always = False
        self.pause_after = None
        self.paused = asyncio.Event()
        self.resume = asyncio.Event()

    def texts(self, call: int = -1) -> list[tuple[str, str]]:
        return [(m.role, m.text) for m in self.calls[call]]

    def _inner_get_response(
        self, *, messages: Sequence[Message], stream: bool, options: Mapping[str, Any], **kwargs: Any
    ) -> Awaitable[ChatResponse] | ResponseStream[ChatResponseUpdate, ChatResponse]:
        self.calls.append(list(messages))
        self.options.append(dict(options))
        text = self.reply_template if self.reply_template is not None else f"{self.reply_prefix} {len(self.calls)}"
        if self.tool_call is not None and messages and (self.tool_call_always or messages[-1].role == "user"):
            name, arguments = self.tool_call
            call = Content.from_function_call(f"call-{len(self.calls)}", name, arguments=dict(arguments))
            return self._build_response_stream(self._call(call)) if stream else self._respond(call)
        if stream:
            return self._build_response_stream(self._stream(text))
        return self._respond(text)

    async def _call(self, call: Content) -> AsyncIterator[ChatResponseUpdate]:
        yield ChatResponseUpdate(role="assistant", contents=[call], model="recording")

    async def _wait_at_gate(self) -> None:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()

    async def _respond(self, reply: str | Content) -> ChatResponse:
        await self._wait_at_gate()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_with is not None:
            raise self.fail_with
        return ChatResponse(
            messages=[Message(role="assistant", contents=[reply])], model="recording", usage_details=self.usage
        )

    async def _stream(self, text: str) -> AsyncIterator[ChatResponseUpdate]:
        await self._wait_at_gate()
        words = text.split(" ")
        for index, word in enumerate(words):
            if index == self.pause_after:
                self.paused.set()
                await self.resume.wait()
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.fail_with is not None and index >= self.fail_after:
                raise self.fail_with
            piece = word if index == len(words) - 1 else word + " "  # streamed text equals the whole reply
            yield ChatResponseUpdate(role="assistant", contents=[Content.from_text(piece)], model="recording")
