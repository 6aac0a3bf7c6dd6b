"""The app's OpenAI clients send exactly the request bodies the framework's stock clients send (they only skip
the SDK's type walk over the conversation and tools), over HTTP to the fake OpenAI service."""

from __future__ import annotations

from typing import Any

import pytest
from agent_framework import Agent, Content, Message, tool
from agent_framework_openai import OpenAIChatClient, OpenAIChatCompletionClient

from cosmos_history.agents.catalog import build_chat_client
from cosmos_history.models.openai_json import ChatCompletionsClient, ResponsesClient, as_extra_body
from cosmos_history.settings import load_settings

from .fake_openai import FakeOpenAI


@tool(approval_mode="never_require")
def forecast(city: str, days: int = 1) -> str:
    """The weather in ``city`` for the next ``days`` days."""
    return f"sunny in {city} for {days} days"


def conversation() -> list[Message]:
    """A history with text, a tool call and its result, and non-ASCII text: what a local-mode turn sends."""
    return [
        Message(role="user", contents=["Quel temps fera-t-il à Lisbonne ? 天気"]),
        Message(
            role="assistant",
            contents=[Content.from_function_call(call_id="call_1", name="forecast", arguments='{"city": "Lisbon"}')],
        ),
        Message(role="tool", contents=[Content.from_function_result(call_id="call_1", result="sunny")]),
        Message(role="assistant", contents=["Sunny, with a light breeze."]),
        Message(role="user", contents=['And tomorrow? Say "yes" or "no".\nThanks']),
    ]


async def sent_body(fake: FakeOpenAI, client: Any, *, stream: bool) -> dict[str, Any]:
    """The JSON body ``client`` sends for one agent run on :func:`conversation` with a tool."""
    agent = Agent(client=client, instructions="Be brief.", tools=[forecast], default_options={"store": False})
    before = len(fake.requests)
    if stream:
        async for _ in agent.run(conversation(), stream=True):
            pass
    else:
        await agent.run(conversation())
    assert len(fake.requests) == before + 1
    return fake.requests[-1]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_the_responses_client_sends_the_stock_clients_body(fake_model: FakeOpenAI, stream: bool):
    options = {"model": "m", "api_key": "unused", "base_url": fake_model.base_url}

    stock = await sent_body(fake_model, OpenAIChatClient(**options), stream=stream)
    ours = await sent_body(fake_model, ResponsesClient(**options), stream=stream)

    assert ours == stock
    assert ours["input"] and ours["tools"]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_the_chat_completions_client_sends_the_stock_clients_body(fake_model: FakeOpenAI, stream: bool):
    options = {"model": "m", "api_key": "unused", "base_url": fake_model.base_url}

    stock = await sent_body(fake_model, OpenAIChatCompletionClient(**options), stream=stream)
    ours = await sent_body(fake_model, ChatCompletionsClient(**options), stream=stream)

    assert ours == stock
    assert len(ours["messages"]) == len(conversation()) + 1 and ours["tools"]


@pytest.mark.parametrize(("api", "client_type"), [("responses", ResponsesClient), ("chat", ChatCompletionsClient)])
def test_the_app_builds_these_clients_for_an_openai_model(api: str, client_type: type):
    settings = load_settings(
        {"MODEL_PROVIDER": "openai", "MODEL_API": api, "OPENAI_MODEL": "m", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
    )

    assert type(build_chat_client(settings.model)) is client_type


def _renamed_or_formatted(declaration: Any, seen: set[str]) -> list[str]:
    """The aliases and formats the SDK's walk would apply anywhere under ``declaration``."""
    import typing

    from openai._utils._transform import PropertyInfo

    if repr(declaration) in seen:
        return []
    seen.add(repr(declaration))
    if typing.get_origin(declaration) is typing.Annotated:
        base, *metadata = typing.get_args(declaration)
        found = [repr(m) for m in metadata if isinstance(m, PropertyInfo) and (m.alias or m.format)]
        return found + _renamed_or_formatted(base, seen)
    if typing.is_typeddict(declaration):
        hints = typing.get_type_hints(declaration, include_extras=True).values()
        return [found for hint in hints for found in _renamed_or_formatted(hint, seen)]
    return [found for arg in typing.get_args(declaration) for found in _renamed_or_formatted(arg, seen)]


def test_the_sdk_renames_and_formats_nothing_in_these_requests():
    """What lets the clients skip the SDK's walk: no declaration of these bodies carries an alias or a format."""
    from openai.types.chat import completion_create_params as chat
    from openai.types.responses import response_create_params as responses

    for params in (
        responses.ResponseCreateParamsStreaming,
        responses.ResponseCreateParamsNonStreaming,
        chat.CompletionCreateParamsStreaming,
        chat.CompletionCreateParamsNonStreaming,
    ):
        assert _renamed_or_formatted(params, set()) == [], params.__name__


def test_only_plain_json_skips_the_walk_and_the_callers_extra_body_wins():
    options = {
        "model": "m",
        "store": False,
        "include": ("reasoning.encrypted_content",),  # not JSON's own list: the SDK's walk makes it one
        "metadata": {"a": "b"},
        "input": [{"role": "user", "content": "hi"}],
        "extra_headers": {"x-h": "1"},
        "extra_body": {"store": True},
    }

    sent = as_extra_body(options, "input")

    assert sent == {
        "include": ("reasoning.encrypted_content",),
        "extra_headers": {"x-h": "1"},
        "extra_body": {
            "model": "m",
            "store": True,
            "metadata": {"a": "b"},
            "input": [{"role": "user", "content": "hi"}],
        },
    }


async def test_the_clients_say_when_each_request_has_gone_out_whole(fake_model: FakeOpenAI):
    """What a streamed turn waits for before writing its record (cosmos_history.domain.event_log)."""
    from cosmos_history.domain.events import SIGNALS_REQUEST_SENT, when_model_request_sent

    options = {"model": "m", "api_key": "unused", "base_url": fake_model.base_url}
    received: list[int] = []
    when_model_request_sent(lambda: received.append(len(fake_model.requests)))
    before = len(fake_model.requests)

    await sent_body(fake_model, ResponsesClient(**options), stream=True)
    await sent_body(fake_model, ChatCompletionsClient(**options), stream=False)

    assert len(received) == 2 and received[0] <= before + 1  # once per request, before the next one
    assert getattr(ResponsesClient(**options), SIGNALS_REQUEST_SENT) is True
    assert getattr(OpenAIChatClient(**options), SIGNALS_REQUEST_SENT, False) is False  # the stock client: no signal
