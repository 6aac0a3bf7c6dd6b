"""The OpenAI-compatible create route in process, with the recording model: what reaches the model, what is
stored, and how failures look (OpenAI's error body, ``response.failed``), with the session left as it was."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from cosmos_history import build_agents, load_settings
from cosmos_history.http.openai.ids import parse_response_id

from .apphost import registered_functions
from .fakes import RecordingChatClient
from .http_calls import call, request, stored_document
from .test_agents import agent_package

pytestmark = pytest.mark.integration


async def create(functions, body: dict[str, Any], **kwargs: Any) -> tuple[int, Any, Any]:
    return await call(functions, "create_response_route", request("POST", "/api/v1/responses", body=body, **kwargs))


async def test_instructions_and_sampling_options_reach_the_model_for_that_request_only(functions, model, runtime):
    body = {"model": "assistant", "input": "bonjour", "conversation": "resp-options"}
    extra = {"instructions": "Answer in French.", "temperature": 0.25, "max_output_tokens": 50}
    status, first, _ = await create(functions, {**body, **extra})
    await create(functions, {**body, "input": "encore"})

    assert status == 200 and first["instructions"] == "Answer in French."
    assert "Answer in French." in model.options[0]["instructions"]
    assert (model.options[0]["temperature"], model.options[0]["max_tokens"]) == (0.25, 50)
    assert "Answer in French." not in (model.options[1].get("instructions") or "")
    assert "temperature" not in model.options[1]
    assert "Answer in French." not in json.dumps(await stored_document(runtime, "resp-options"))


async def test_the_models_token_usage_is_the_responses_usage(functions, model):
    model.usage = {"input_token_count": 12, "output_token_count": 3, "total_token_count": 15}

    _, response, _ = await create(functions, {"model": "assistant", "input": "count me"})

    assert response["usage"] == {
        "input_tokens": 12,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 3,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 15,
    }


async def test_a_failing_model_is_a_502_in_the_openai_shape_and_leaves_the_session_as_it_was(functions, model, runtime):
    body = {"model": "assistant", "input": "first", "conversation": "resp-failing"}
    await create(functions, body)
    before = await stored_document(runtime, "resp-failing")
    model.fail_with = RuntimeError("upstream exploded with secret detail")

    status, error, _ = await create(functions, {**body, "input": "second"})

    assert status == 502 and error["error"]["type"] == "server_error" and error["error"]["code"] == "model_error"
    assert "secret detail" not in error["error"]["message"]
    assert await stored_document(runtime, "resp-failing") == before


async def test_a_model_failing_mid_stream_ends_the_stream_with_response_failed(functions, model, runtime):
    body = {"model": "assistant", "input": "first", "conversation": "resp-midstream"}
    await create(functions, body)
    before = await stored_document(runtime, "resp-midstream")
    model.fail_with, model.fail_after = RuntimeError("broke halfway"), 1

    body = {**body, "input": "second", "stream": True}
    response = await functions["create_response_route"](request("POST", "/api/v1/responses", body=body))
    events = [json.loads(line[6:]) async for line in lines(response) if line.startswith("data: ")]

    assert response.status_code == 200
    assert [e["type"] for e in events][:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    failed = events[-1]
    assert failed["type"] == "response.failed" and failed["response"]["status"] == "failed"
    assert (
        failed["response"]["error"]["code"] == "server_error" and "broke" not in failed["response"]["error"]["message"]
    )
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert await stored_document(runtime, "resp-midstream") == before


async def test_an_anonymous_level_app_refuses_a_caller_without_the_easy_auth_principal(cosmos_env, runtime):
    settings = load_settings({**cosmos_env, "HTTP_AUTH_LEVEL": "anonymous"})
    functions = registered_functions(dataclasses.replace(runtime, settings=settings))

    status, error, _ = await create(functions, {"model": "assistant", "input": "hi"})

    assert status == 401 and error["error"]["type"] == "authentication_error"


async def lines(response: Any):
    buffer = ""
    async for chunk in response.body_iterator:
        buffer += chunk if isinstance(chunk, str) else chunk.decode()
        while "\n" in buffer:
            line, buffer = buffer.split("\n", 1)
            yield line


async def test_a_retry_of_a_keyed_start_whose_key_expired_is_told_so_and_starts_no_second_turn(
    functions, model, runtime
):
    headers = {"idempotency-key": "turns-expiring-key"}
    body = {"model": "assistant", "input": "start under a key"}
    status, first, _ = await create(functions, body, headers=headers)
    session_id = parse_response_id(first["id"]).session_id
    document = await stored_document(runtime, session_id)
    document["recentKeys"] = []  # as the key's expiry leaves it
    await runtime.store.container.replace_item(document["id"], document)
    calls = len(model.calls)

    status, error, response = await create(functions, body, headers=headers)

    assert (status, error["error"]["code"]) == (409, "idempotent_result_gone")
    assert response.headers["x-should-retry"] == "false"
    assert len(model.calls) == calls and (await stored_document(runtime, session_id))["turns"] == 1


TUNED_AGENT = """
from agent_framework import Agent


def create_agent(client):
    return Agent(client=client, name="assistant", default_options={"temperature": 0.3, "top_p": 0.8})
"""


async def test_a_response_reports_the_sampling_in_effect_the_agents_own_unless_the_request_sets_it(
    runtime, tmp_path, monkeypatch
):
    package = agent_package(tmp_path, monkeypatch, TUNED_AGENT, module="assistant")
    agents = build_agents(load_settings({"AGENTS_PACKAGE": package}), RecordingChatClient())
    functions = registered_functions(dataclasses.replace(runtime, agents=agents))

    _, own, _ = await create(functions, {"model": "assistant", "input": "tuned"})
    _, chosen, _ = await create(functions, {"model": "assistant", "input": "tuned", "temperature": 1.5})

    assert (own["temperature"], own["top_p"]) == (0.3, 0.8)
    assert (chosen["temperature"], chosen["top_p"]) == (1.5, 0.8)
