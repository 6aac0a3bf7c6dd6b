"""A small OpenAI-compatible server for tests: Responses API (with stored threads) and Chat Completions.

The real ``openai`` SDK and the framework's real clients talk to it over HTTP. It
records every request body so tests can prove what the model was sent; replies
are deterministic ("answer N to: <last user text>"). Responses created with
``store=true`` are kept by id, so ``previous_response_id`` continues a thread,
and an unknown id answers 404 as the real service does for an expired thread (``expired_status``
makes it 400, as some deployments answer). Streams can pause before their first text delta
(``first_token_delay``, a model's time to first token) and between deltas (``chunk_delay``), and fail after
their first delta (``fail_mid_stream``); ``streams_finished`` counts completed streams. A chat completion can be
held in flight (``hold_at``) until the test releases it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .threaded_server import serve


@dataclass
class FakeOpenAI:
    """State of the fake service; ``requests`` holds every JSON body received, in order."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    threads: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    chunk_delay: float = 0.0
    first_token_delay: float = 0.0
    """Seconds a stream waits before its first text delta (the benchmark's fixed time to first token)."""
    response_delay: float = 0.0
    """Seconds a non-streamed answer takes, to hold racing turns in flight."""
    fail_next: int = 0
    fail_mid_stream: int = 0
    expired_status: int = 404
    streams_finished: int = 0
    pause_after: int | None = None
    """When set, a streamed reply stops after this many pieces until ``released`` is set (at most a minute)."""
    released: threading.Event = field(default_factory=threading.Event)
    hold_at: int | None = None
    """When set, the request of this number (1 for the first) waits, once ``held`` is set, until ``released`` is
    set (at most a minute): a model call in flight for as long as a test needs (to kill its caller)."""
    held: threading.Event = field(default_factory=threading.Event)
    gate: threading.Event | None = None
    """While set to an unset event, every answer waits for it (a model slower than any client's timeout)."""
    base_url: str = ""
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def app_settings(self) -> dict[str, str]:
        """The settings of an app whose agents call this service."""
        return {
            "MODEL_PROVIDER": "openai",
            "OPENAI_BASE_URL": self.base_url,
            "OPENAI_API_KEY": "test-key",
            "OPENAI_MODEL": "fake-model",
        }

    def reset(self) -> None:
        """A model that answers at once and never fails, as the next test expects (the fixtures call this before
        and after each test): every knob a test turns back to its default, and a reply still held let go.
        ``requests`` and ``threads`` stay: they are the service's history, which tests read by their own ids."""
        if self.gate is not None:
            self.gate.set()
        self.gate = None
        self.released.set()
        self.released = threading.Event()
        self.pause_after = None
        self.hold_at = None
        self.held = threading.Event()
        self.chunk_delay = 0.0
        self.fail_next = 0
        self.fail_mid_stream = 0
        self.expired_status = 404

    def forget_threads(self) -> None:
        """Simulate the service expiring every stored response."""
        self.threads.clear()

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/responses", self._responses, methods=["POST"]),
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
            ]
        )

    async def _responses(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        if self.gate is not None:
            await asyncio.to_thread(self.gate.wait, 300)
        if self.fail_next:
            self.fail_next -= 1
            return JSONResponse({"error": {"message": "injected failure", "type": "server_error"}}, status_code=500)
        history: list[dict[str, Any]] = []
        previous = body.get("previous_response_id")
        if previous:
            if previous not in self.threads:
                return JSONResponse(
                    {
                        "error": {
                            "message": f"Previous response with id '{previous}' not found.",
                            "type": "invalid_request_error",
                            "param": "previous_response_id",
                            "code": "previous_response_not_found",
                        }
                    },
                    status_code=self.expired_status,
                )
            history = list(self.threads[previous])
        items = _input_items(body.get("input"))
        conversation = history + items
        response_id = f"resp_{len(self.requests):04d}"
        call = requested_call(_last_user_text(conversation) if _ends_with_user(conversation) else "", body)
        if call is not None:
            name, arguments = call
            item = {
                "type": "function_call",
                "id": f"fc_{response_id}",
                "call_id": f"call_{response_id}",
                "name": name,
                "arguments": arguments,
                "status": "completed",
            }
            if body.get("store", True):
                self.threads[response_id] = [*conversation, item]
            if not body.get("stream"):
                return JSONResponse(_response_object(response_id, body, [item], "completed"))
            return StreamingResponse(
                self._function_call_events(response_id, body, item), media_type="text/event-stream"
            )
        text = self._answer(conversation)
        message = {
            "type": "message",
            "id": f"msg_{response_id}",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }
        if body.get("store", True):
            self.threads[response_id] = [*conversation, {"role": "assistant", "content": text}]
        full = _response_object(response_id, body, [message], "completed")
        if not body.get("stream"):
            await asyncio.sleep(self.response_delay)
            return JSONResponse(full)
        return StreamingResponse(
            self._response_events(response_id, body, message, text), media_type="text/event-stream"
        )

    def _answer(self, conversation: list[dict[str, Any]]) -> str:
        """``answer N to: <user text>``, or ``answer N after tool: <output>`` when a tool's result came last."""
        output = _tool_output(conversation[-1]) if conversation else None
        if output is not None:
            return f"answer {next(self._ids)} after tool: {output}"
        return f"answer {next(self._ids)} to: {_last_user_text(conversation)}"

    async def _function_call_events(
        self, response_id: str, body: dict[str, Any], item: dict[str, Any]
    ) -> AsyncIterator[str]:
        seq = itertools.count()
        where = {"item_id": item["id"], "output_index": 0}
        yield _sse("response.created", {"response": _response_object(response_id, body, [], "in_progress")}, seq)
        started = {**item, "arguments": "", "status": "in_progress"}
        yield _sse("response.output_item.added", {"output_index": 0, "item": started}, seq)
        for piece in _halves(item["arguments"]):
            yield _sse("response.function_call_arguments.delta", {**where, "delta": piece}, seq)
        yield _sse("response.function_call_arguments.done", {**where, "arguments": item["arguments"]}, seq)
        yield _sse("response.output_item.done", {"output_index": 0, "item": item}, seq)
        yield _sse("response.completed", {"response": _response_object(response_id, body, [item], "completed")}, seq)
        self.streams_finished += 1

    async def _response_events(
        self, response_id: str, body: dict[str, Any], message: dict[str, Any], text: str
    ) -> AsyncIterator[str]:
        seq = itertools.count()
        item_id = message["id"]
        pending = {**message, "status": "in_progress", "content": []}
        yield _sse("response.created", {"response": _response_object(response_id, body, [], "in_progress")}, seq)
        yield _sse("response.output_item.added", {"output_index": 0, "item": pending}, seq)
        part = {"type": "output_text", "text": "", "annotations": []}
        yield _sse(
            "response.content_part.added",
            {"item_id": item_id, "output_index": 0, "content_index": 0, "part": part},
            seq,
        )
        for index, piece in enumerate(_pieces(text)):
            if index == self.pause_after:
                await self._wait_for_release()
            await self._pause(index)
            if index == 1 and self._take_mid_stream_failure():
                yield _STREAM_ERROR
                return
            delta = {"item_id": item_id, "output_index": 0, "content_index": 0, "delta": piece, "logprobs": []}
            yield _sse("response.output_text.delta", delta, seq)
        done = {"item_id": item_id, "output_index": 0, "content_index": 0, "text": text, "logprobs": []}
        yield _sse("response.output_text.done", done, seq)
        yield _sse(
            "response.content_part.done",
            {"item_id": item_id, "output_index": 0, "content_index": 0, "part": message["content"][0]},
            seq,
        )
        yield _sse("response.output_item.done", {"output_index": 0, "item": message}, seq)
        yield _sse("response.completed", {"response": _response_object(response_id, body, [message], "completed")}, seq)
        self.streams_finished += 1

    async def _wait_for_release(self) -> None:
        for _ in range(6000):  # bounded: a test that never releases ends the reply after a minute
            if self.released.is_set():
                return
            await asyncio.sleep(0.01)

    async def _pause(self, index: int) -> None:
        """Before text delta ``index``: the time to first token before the first, ``chunk_delay`` before each."""
        delay = self.chunk_delay + (self.first_token_delay if index == 0 else 0.0)
        if delay:
            await asyncio.sleep(delay)

    def _take_mid_stream_failure(self) -> bool:
        if self.fail_mid_stream:
            self.fail_mid_stream -= 1
            return True
        return False

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        if self.hold_at == len(self.requests):
            self.held.set()
            await self._wait_for_release()
        if self.fail_next:
            self.fail_next -= 1
            return JSONResponse({"error": {"message": "injected failure", "type": "server_error"}}, status_code=500)
        messages = body.get("messages", [])
        completion_id = f"chatcmpl_{len(self.requests):04d}"
        call = requested_call(_last_user_text(messages) if _ends_with_user(messages) else "", body)
        if call is not None:
            return self._chat_tool_call(completion_id, body, *call)
        text = self._answer(messages)
        if not body.get("stream"):
            return JSONResponse(
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.get("model", "fake"),
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                    ],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
                }
            )

        async def chunks() -> AsyncIterator[str]:
            for index, piece in enumerate(_pieces(text)):
                await self._pause(index)
                if index == 1 and self._take_mid_stream_failure():
                    yield _STREAM_ERROR
                    return
                chunk = {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": int(time.time()),
                    "model": body.get("model", "fake"),
                    "choices": [{"index": 0, "delta": {"role": "assistant", "content": piece}, "finish_reason": None}],
                }
                yield f"data: {json.dumps(chunk)}\n\n"
            final = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": body.get("model", "fake"),
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            }
            yield f"data: {json.dumps(final)}\n\n"
            yield "data: [DONE]\n\n"
            self.streams_finished += 1

        return StreamingResponse(chunks(), media_type="text/event-stream")

    def _chat_tool_call(self, completion_id: str, body: dict[str, Any], name: str, arguments: str) -> Response:
        call_id = f"call_{completion_id}"
        head = {"id": completion_id, "created": int(time.time()), "model": body.get("model", "fake")}
        if not body.get("stream"):
            call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
            choice = {"index": 0, "message": message, "finish_reason": "tool_calls"}
            usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
            return JSONResponse({**head, "object": "chat.completion", "choices": [choice], "usage": usage})
        first = {"index": 0, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
        deltas = [{"role": "assistant", "tool_calls": [first]}] + [
            {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]} for piece in _halves(arguments)
        ]
        chunks = [{"index": 0, "delta": delta, "finish_reason": None} for delta in deltas]
        chunks.append({"index": 0, "delta": {}, "finish_reason": "tool_calls"})

        async def events() -> AsyncIterator[str]:
            for choice in chunks:
                yield f"data: {json.dumps({**head, 'object': 'chat.completion.chunk', 'choices': [choice]})}\n\n"
            yield "data: [DONE]\n\n"
            self.streams_finished += 1

        return StreamingResponse(events(), media_type="text/event-stream")


def requested_call(text: str, body: dict[str, Any]) -> tuple[str, str] | None:
    """The tool call a ``/<tool> {json}`` user message asks for, when the request offers that tool."""
    match = re.fullmatch(r"/([A-Za-z0-9_-]+)\s*(\{.*\})?", text.strip(), re.DOTALL)
    offered = {tool.get("name") or tool.get("function", {}).get("name") for tool in body.get("tools") or []}
    if match is None or match.group(1) not in offered:
        return None
    return match.group(1), match.group(2) or "{}"


def _tool_output(item: dict[str, Any]) -> str | None:
    """A tool's output, when ``item`` carries one (a Responses ``function_call_output`` or a chat ``tool`` message)."""
    if item.get("type") == "function_call_output":
        return _text_of(item.get("output"))
    if item.get("role") == "tool":
        return _text_of(item.get("content"))
    return None


def _ends_with_user(items: list[dict[str, Any]]) -> bool:
    return bool(items) and items[-1].get("role") == "user"


def _halves(text: str) -> list[str]:
    """``text`` in two pieces, as services stream a call's arguments."""
    return [text[: len(text) // 2], text[len(text) // 2 :]]


def _response_object(
    response_id: str, body: dict[str, Any], output: list[dict[str, Any]], status: str
) -> dict[str, Any]:
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "model": body.get("model", "fake"),
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "store": body.get("store", True),
        "previous_response_id": body.get("previous_response_id"),
        "usage": {
            "input_tokens": 10,
            "output_tokens": 5,
            "total_tokens": 15,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        },
    }


_STREAM_ERROR = 'event: error\ndata: {"error": {"message": "injected mid-stream failure", "type": "server_error"}}\n\n'
"""What the service sends when it fails mid-stream; the openai SDK raises ``APIError`` on it."""


def _sse(event: str, payload: dict[str, Any], seq: Iterator[int]) -> str:
    return f"event: {event}\ndata: {json.dumps({'type': event, 'sequence_number': next(seq), **payload})}\n\n"


def _pieces(text: str) -> list[str]:
    words = text.split(" ")
    return [word + (" " if i < len(words) - 1 else "") for i, word in enumerate(words)]


def _input_items(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    return [item for item in value or [] if isinstance(item, dict)]


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def _last_user_text(items: list[dict[str, Any]]) -> str:
    for item in reversed(items):
        if item.get("role") == "user":
            return _text_of(item.get("content"))
    return ""


def request_texts(body: dict[str, Any]) -> list[str]:
    """Every text a request carried (input items or chat messages), for assertions."""
    items = _input_items(body.get("input")) if "input" in body else body.get("messages", [])
    return [_text_of(item.get("content")) for item in items]


@contextmanager
def fake_openai_server() -> Iterator[FakeOpenAI]:
    """Run the fake on 127.0.0.1 in a background thread for the duration of the block."""
    fake = FakeOpenAI()
    with serve(fake.app(), lifespan="off") as port:
        fake.base_url = f"http://127.0.0.1:{port}/v1"
        yield fake
