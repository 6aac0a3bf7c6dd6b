"""The app's OpenAI clients send exactly the request bodies the framework's stock clients send (they only skip
the SDK's type walk over the conversation and tools), over HTTP to the fake OpenAI service."""

from __future__ import annotations

from typing import Any

import pytest
from agent_framework import Agent, Content, Message, tool
from agent_framework_openai import OpenAIChatClient, OpenAIChatCompletionClient

from cosmos_history.agents.catalog import build_chat_client
from cosmos_history.models.openai_json import ChatCompletionsClient, ResponsesClient
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
