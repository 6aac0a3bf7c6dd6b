"""Every response object and streaming event the OpenAI-compatible endpoint sends is valid against the published
schemas vendored in tests/schemas/ (Open Responses, and OpenAI's reference as its SDK models it): text, server
tools, approvals, client function calls, retrieved and replayed responses, and a failed stream."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .http_calls import request
from .schemas import event_errors, response_errors
from .test_responses_api import REMINDER, WEATHER_TOOL, host
from .test_responses_turns import lines

pytestmark = pytest.mark.integration

EMITTED_EVENTS = {
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.output_item.done",
    "response.content_part.added",
    "response.content_part.done",
    "response.output_text.delta",
    "response.output_text.done",
    "response.completed",
}
EMITTED_ITEMS = {"message", "mcp_call", "mcp_approval_request", "function_call"}


@pytest.fixture(scope="module")
def base(cosmos_env: dict[str, str]) -> Iterator[str]:
    with host(cosmos_env) as url:
        yield url


class Exchange:
    """One caller's requests to the endpoint, keeping every response object and event it got back."""

    def __init__(self, base: str) -> None:
        self.base, self.headers = base, {"x-user-id": f"schema-{uuid.uuid4().hex[:8]}"}
        self.responses: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []

    def create(self, **body: Any) -> dict[str, Any]:
        answer = httpx.post(f"{self.base}/v1/responses", json=body, headers=self.headers, timeout=60)
        assert answer.status_code == 200, answer.text
        self.responses.append(answer.json())
        return dict(answer.json())

    def stream(self, **body: Any) -> dict[str, Any]:
        events = []
        with httpx.stream(
            "POST", f"{self.base}/v1/responses", json={**body, "stream": True}, headers=self.headers, timeout=60
        ) as answer:
            assert answer.status_code == 200
            name = None
            for line in answer.iter_lines():
                if line.startswith("event: "):
                    name = line[len("event: ") :]
                elif line.startswith("data: "):
                    event = json.loads(line[len("data: ") :])
                    assert event["type"] == name
                    events.append(event)
        self.events += events
        self.responses += [e["response"] for e in events if "response" in e]
        return dict(events[-1]["response"])

    def retrieve(self, response_id: str) -> dict[str, Any]:
        answer = httpx.get(f"{self.base}/v1/responses/{response_id}", headers=self.headers)
        assert answer.status_code == 200
        self.responses.append(answer.json())
        return dict(answer.json())


def approval_of(response: dict[str, Any]) -> dict[str, Any]:
    request = next(item for item in response["output"] if item["type"] == "mcp_approval_request")
    return {"type": "mcp_approval_response", "approval_request_id": request["id"], "approve": True}


def test_every_response_object_and_event_of_every_kind_of_turn_is_valid_open_responses_and_openai(base):
    api = Exchange(base)
    for send in (api.create, api.stream):
        text = send(model="assistant", input="Hello", metadata={"k": "v"}, tools=[WEATHER_TOOL])
        api.retrieve(text["id"])
        send(model="assistant", input="Hi", previous_response_id=text["id"], temperature=0.5, top_p=0.9)
        send(model="assistant", input='/current_time {"timezone": "UTC"}')
        asked = send(model="assistant", input=REMINDER)
        send(model="assistant", input=[approval_of(asked)], previous_response_id=asked["id"])
        called = send(model="assistant", input='/get_weather {"city": "Oslo"}', tools=[WEATHER_TOOL])
        call_id = next(item["call_id"] for item in called["output"] if item["type"] == "function_call")
        output = {"type": "function_call_output", "call_id": call_id, "output": "sunny"}
        send(model="assistant", input=[output], previous_response_id=called["id"], tools=[WEATHER_TOOL])
        send(model="assistant", input="named", conversation={"id": f"schema-{uuid.uuid4().hex[:8]}"})
        send(model="assistant", input="not kept", store=False, max_output_tokens=64, tool_choice="none")
    api.headers["Idempotency-Key"] = f"schema-{uuid.uuid4().hex}"
    api.create(model="assistant", input="replay me")
    api.create(model="assistant", input="replay me")
    api.stream(model="assistant", input="replay me")

    assert {e["type"] for e in api.events} >= EMITTED_EVENTS
    assert {item["type"] for r in api.responses for item in r["output"]} >= EMITTED_ITEMS
    problems = [(r["id"], e) for r in api.responses for e in response_errors(r)]
    problems += [(e["type"], p) for e in api.events for p in event_errors(e)]
    assert problems == []


def test_a_plain_response_reports_the_sampling_in_effect_and_its_tools_with_every_field(base):
    response = Exchange(base).create(model="assistant", input="defaults", tools=[WEATHER_TOOL])

    assert (response["temperature"], response["top_p"]) == (1.0, 1.0)
    assert response["tools"] == [{**WEATHER_TOOL, "strict": None}]


async def test_a_failed_stream_ends_with_a_valid_response_failed_event(functions, model):
    model.fail_with, model.fail_after = RuntimeError("broke halfway"), 1
    body = {"model": "assistant", "input": "fail me", "stream": True}

    response = await functions["create_response_route"](request("POST", "/api/v1/responses", body=body))
    events = [json.loads(line[6:]) async for line in lines(response) if line.startswith("data: ")]

    assert events[-1]["type"] == "response.failed"
    assert [p for e in events for p in event_errors(e)] == []
