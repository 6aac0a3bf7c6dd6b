"""The framework's OpenAI clients, handing the request body to the SDK as the JSON it already is.

Before sending a request the ``openai`` SDK walks every parameter against its typed-dict declarations
(``openai._utils._transform``). For the Responses API's ``input`` and Chat Completions' ``messages`` that
walk tries every item against every member of a union of some thirty item types, recursively: about
50 ms for a window of 20 messages on this machine, paid on every turn before the request leaves, so in
local mode (where the history travels with each request) it was most of what the backend added to the
first token (docs/performance.md). The other options cost less but not nothing: the walk hashes the typing
objects of each declaration to look them up in its caches, and the Responses API's ``model`` (a union with a
literal of every model name) alone took about 0.1 ms, the whole walk about 0.3 ms of every turn's time to
first token.

The walk renames nothing and formats nothing in these requests: no declaration of the Responses or Chat
Completions create parameters, at any depth, carries an alias or a format (``tests/test_openai_json.py``
checks the SDK's declarations). What it does do is turn pydantic models into dicts and other iterables into
lists; so every option whose value is plain JSON (dicts, lists, strings, numbers, booleans, ``None``) goes to
the SDK as ``extra_body``, which it merges into the same JSON body with its own encoder, and anything else
still goes through the walk. Options that are not body fields (``extra_headers``, ``timeout``...) stay, and
so does Chat Completions' ``model``, which the Azure client reads to build the deployment's URL. The body
sent is the stock clients' (``tests/test_openai_json.py``).

Both clients also say when a request has gone out whole (:func:`~cosmos_history.domain.events.model_request_sent`,
from a request hook of the SDK's HTTP client that watches the body's stream end): a streamed turn writes its
record then, so that the write's CPU does not delay the model request (:mod:`cosmos_history.domain.event_log`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import httpx2
from agent_framework import Message
from agent_framework_openai import OpenAIChatClient, OpenAIChatCompletionClient

from cosmos_history.domain.events import SIGNALS_REQUEST_SENT, model_request_sent

REQUEST_OPTIONS = frozenset({"extra_headers", "extra_query", "extra_body", "timeout", "stream"})
"""Arguments of the SDK's ``create`` that are not fields of the request body."""
_SCALARS = (str, int, float, bool, type(None))


def plain_json(value: Any) -> bool:
    """Whether ``value`` is made of JSON's own types only (what the SDK's walk would return unchanged)."""
    kind = type(value)
    if kind in _SCALARS:
        return True
    if kind is list:
        return all(plain_json(item) for item in value)
    if kind is dict:
        return all(type(key) is str and plain_json(item) for key, item in value.items())
    return False


def as_extra_body(
    run_options: dict[str, Any],
    *always: str,
    keep: frozenset[str] = frozenset(),
    placeholders: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Move the body fields of ``run_options`` into ``extra_body``: those named in ``always`` whatever their
    values (their declarations are only unions of typed dicts: see the module docstring), the others when
    their values are plain JSON. ``keep`` stays where it is; ``placeholders`` stand in for moved fields the
    SDK requires. A field the caller also put in ``extra_body`` keeps the caller's value, as the SDK would."""
    moved = {
        name: value
        for name, value in run_options.items()
        if name not in REQUEST_OPTIONS and name not in keep and (name in always or plain_json(value))
    }
    if moved:
        for name in moved:
            del run_options[name]
        run_options.update({k: v for k, v in (placeholders or {}).items() if k in moved})
        run_options["extra_body"] = {**moved, **(run_options.get("extra_body") or {})}
    return run_options


class _SignalledBody(httpx2.AsyncByteStream):
    """A request's body stream that calls :func:`model_request_sent` once the transport has taken all of it."""

    def __init__(self, stream: httpx2.AsyncByteStream) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk
        model_request_sent()

    async def aclose(self) -> None:
        await self._stream.aclose()


async def _signal_when_sent(request: httpx2.Request) -> None:
    if isinstance(request.stream, httpx2.AsyncByteStream):
        request.stream = _SignalledBody(request.stream)
    else:  # a body this hook cannot watch: say so now, before it is sent, as turns did before the signal
        model_request_sent()


def signal_requests_sent(client: Any) -> None:
    """Install the request hook on ``client``'s SDK HTTP client, and say so (see the module docstring); an SDK
    whose HTTP client cannot take it leaves the client as it was (its turns write their records as they start)."""
    http = getattr(getattr(client, "client", None), "_client", None)
    hooks = http.event_hooks if isinstance(http, httpx2.AsyncClient) else None
    if isinstance(hooks, dict) and isinstance(hooks.get("request"), list):
        hooks["request"].append(_signal_when_sent)
        setattr(client, SIGNALS_REQUEST_SENT, True)


class ResponsesClient(OpenAIChatClient):  # type: ignore[misc]
    """``OpenAIChatClient`` (Responses API) sending its body without the SDK's type walk (except for structured
    output, which the framework streams through the SDK's ``responses.stream`` helper)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        signal_requests_sent(self)

    async def _prepare_options(self, messages: Sequence[Message], options: Mapping[str, Any]) -> dict[str, Any]:
        run_options = await super()._prepare_options(messages, options)
        return run_options if "text_format" in run_options else as_extra_body(run_options, "input", "tools")


class ChatCompletionsClient(OpenAIChatCompletionClient):  # type: ignore[misc]
    """``OpenAIChatCompletionClient`` sending its body without the SDK's type walk (the SDK requires
    ``messages``, so an empty list stands in for it and the body's ``messages`` replaces it; ``model`` stays,
    for the Azure client's deployment URL)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        signal_requests_sent(self)

    def _prepare_options(self, messages: Sequence[Message], options: Mapping[str, Any]) -> dict[str, Any]:
        run_options = super()._prepare_options(messages, options)
        return as_extra_body(run_options, "messages", "tools", keep=frozenset({"model"}), placeholders={"messages": []})
