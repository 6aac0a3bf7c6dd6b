"""The framework's OpenAI clients, handing the conversation to the SDK as the JSON it already is.

Before sending a request the ``openai`` SDK walks every parameter against its typed-dict declarations
(``openai._utils._transform``). For the Responses API's ``input`` and Chat Completions' ``messages`` that
walk tries every item against every member of a union of some thirty item types, recursively: about
50 ms for a window of 20 messages on this machine, paid on every turn before the request leaves, so in
local mode (where the history travels with each request) it was most of what the backend added to the
first token (docs/performance.md). For these parameters the declarations rename nothing and format
nothing (they carry only ``discriminator`` metadata), so the walk returns its input unchanged: the
clients here pass them (and the tool declarations, as costly and as plain) as ``extra_body``, which the
SDK merges into the same JSON body with its own encoder. Every other option still goes through the
SDK's checks. ``tests/test_openai_json.py`` proves the bodies sent are the stock clients'.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agent_framework import Message
from agent_framework_openai import OpenAIChatClient, OpenAIChatCompletionClient


def as_extra_body(
    run_options: dict[str, Any], *names: str, placeholders: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Move ``run_options[name]`` for each of ``names`` into ``extra_body`` (leaving a placeholder for a key the
    SDK requires)."""
    moved = {name: run_options.pop(name) for name in names if name in run_options}
    if moved:
        run_options.update({k: v for k, v in (placeholders or {}).items() if k in moved})
        run_options["extra_body"] = {**(run_options.get("extra_body") or {}), **moved}
    return run_options


class ResponsesClient(OpenAIChatClient):  # type: ignore[misc]
    """``OpenAIChatClient`` (Responses API) sending ``input`` without the SDK's per-item type walk (except
    for structured output, which the framework streams through the SDK's ``responses.stream`` helper)."""

    async def _prepare_options(self, messages: Sequence[Message], options: Mapping[str, Any]) -> dict[str, Any]:
        run_options = await super()._prepare_options(messages, options)
        return run_options if "text_format" in run_options else as_extra_body(run_options, "input", "tools")


class ChatCompletionsClient(OpenAIChatCompletionClient):  # type: ignore[misc]
    """``OpenAIChatCompletionClient`` sending ``messages`` without the SDK's per-item type walk (the SDK
    requires the parameter, so an empty list stands in for it and the body's ``messages`` replaces it)."""

    def _prepare_options(self, messages: Sequence[Message], options: Mapping[str, Any]) -> dict[str, Any]:
        run_options = super()._prepare_options(messages, options)
        return as_extra_body(run_options, "messages", "tools", placeholders={"messages": []})
