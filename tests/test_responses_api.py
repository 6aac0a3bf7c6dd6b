"""The OpenAI Responses-compatible endpoint, driven over real sockets by the official ``openai`` SDK, against
the app in its local host process and the local Cosmos DB, with the offline model behind the agents."""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import Response

from .apphost import app_host
from .conftest import ARTIFACTS

pytestmark = pytest.mark.integration

REMINDER = '/schedule_reminder {"text": "call Ada", "at": "2026-12-01T09:00"}'
WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city, looked up by the client.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@contextlib.contextmanager
def host(cosmos_env: dict[str, str]) -> Iterator[str]:
    with app_host(cosmos_env, log_path=ARTIFACTS / "apphost-responses.log") as base:
        yield base


@pytest.fixture(scope="module")
def base(cosmos_env: dict[str, str]) -> Iterator[str]:
    with host(cosmos_env) as url:
        yield url


def client(base: str, user: str = "responses-user", **options: Any) -> openai.OpenAI:
    """The SDK as a developer would point it at the app: base URL ``…/api/v1``, identity in a header."""
    return openai.OpenAI(base_url=f"{base}/v1", api_key="unused", default_headers={"x-user-id": user}, **options)


def text_of(response: Response) -> str:
    return response.output_text


# --- plain and streamed -----------------------------------------------------------------------------


def test_a_plain_response_has_every_field_of_the_response_object(base):
    response = client(base).responses.create(model="assistant", input="Hello there", temperature=0.5)

    raw = response.model_dump(mode="json")
    assert Response.model_validate(raw) == response
    assert (raw["object"], raw["status"], raw["model"]) == ("response", "completed", "assistant")
    assert "You said: Hello there" in response.output_text
    assert raw["completed_at"] >= raw["created_at"] > 0
    assert raw["temperature"] == 0.5 and raw["tool_choice"] == "auto" and raw["truncation"] == "disabled"
    assert raw["error"] is None and raw["tools"] == [] and raw["store"] is True
    message = raw["output"][0]
    assert (message["type"], message["role"], message["status"]) == ("message", "assistant", "completed")
    assert message["content"][0]["annotations"] == []


def test_a_streamed_response_sends_the_responses_events_in_order_with_sequence_numbers(base):
    with client(base).responses.stream(model="assistant", input="Stream this please") as stream:
        events = list(stream)
        final = stream.get_final_response()

    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    for expected in (
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ):
        assert expected in kinds
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == final.output_text and "You said: Stream this please" in deltas
    assert final.status == "completed" and final.id == events[0].response.id


# --- conversation state ---------------------------------------------------------------------------


def test_three_turns_through_previous_response_id_continue_one_session(base):
    api = client(base)
    first = api.responses.create(model="assistant", input="My name is Ada")
    second = api.responses.create(model="assistant", input="What is my name?", previous_response_id=first.id)
    third = api.responses.create(model="assistant", input="Thanks", previous_response_id=second.id)

    assert "received 0 earlier messages" in first.output_text
    assert "received 2 earlier messages" in second.output_text
    assert "received 4 earlier messages" in third.output_text
    assert third.previous_response_id == second.id
    assert len({first.id, second.id, third.id}) == 3


def test_a_conversation_id_names_a_native_session_directly(base):
    api, session = client(base), f"resp-conv-{uuid.uuid4().hex[:8]}"
    for said in ("one", "two", "three"):
        last = api.responses.create(model="assistant", input=said, conversation=session)

    native = httpx.get(f"{base}/sessions/{session}", headers={"x-user-id": "responses-user"}).json()
    assert native["turns"] == 3
    assert [m["text"] for m in native["messages"] if m["role"] == "user"] == ["one", "two", "three"]
    assert last.conversation is not None and last.conversation.id == session
    assert "received 4 earlier messages" in last.output_text


def test_a_response_can_be_retrieved_listed_and_deleted(base):
    api = client(base)
    made = api.responses.create(model="assistant", input=[{"role": "user", "content": "Keep me"}])

    assert api.responses.retrieve(made.id) == made
    items = api.responses.input_items.list(made.id)
    assert [(i.type, i.role, i.content[0].text) for i in items.data] == [("message", "user", "Keep me")]
    deleted = api.responses.delete(made.id)
    assert deleted is None
    with pytest.raises(openai.NotFoundError):
        api.responses.retrieve(made.id)


def test_store_false_runs_a_turn_and_saves_nothing(base):
    api, session = client(base), f"resp-nostore-{uuid.uuid4().hex[:8]}"
    api.responses.create(model="assistant", input="remember", conversation=session)
    unsaved = api.responses.create(model="assistant", input="forget me", conversation=session, store=False)

    assert "received 2 earlier messages" in unsaved.output_text
    native = httpx.get(f"{base}/sessions/{session}", headers={"x-user-id": "responses-user"}).json()
    assert native["turns"] == 1
    with pytest.raises(openai.NotFoundError):
        api.responses.retrieve(unsaved.id)


def test_models_are_the_apps_agents(base):
    models = client(base).models.list()

    assert "assistant" in [m.id for m in models.data]
    assert client(base).models.retrieve("assistant").id == "assistant"


# --- tools ------------------------------------------------------------------------------------------


def test_a_server_tool_runs_on_the_server_and_is_reported_as_an_mcp_call_item(base):
    response = client(base).responses.create(model="assistant", input='/current_time {"timezone": "UTC"}')

    calls = [item for item in response.output if item.type == "mcp_call"]
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("current_time", {"timezone": "UTC"})]
    assert calls[0].server_label == "assistant" and calls[0].output
    assert "current_time returned" in response.output_text


def test_an_approval_round_trip_survives_an_app_restart(cosmos_env):
    with host(cosmos_env) as first_base:
        asked = client(first_base).responses.create(model="assistant", input=REMINDER)
    requests = [item for item in asked.output if item.type == "mcp_approval_request"]
    assert [(r.name, json.loads(r.arguments)["text"]) for r in requests] == [("schedule_reminder", "call Ada")]

    with host(cosmos_env) as second_base:
        answer = {"type": "mcp_approval_response", "approval_request_id": requests[0].id, "approve": True}
        done = client(second_base).responses.create(model="assistant", input=[answer], previous_response_id=asked.id)
        again = client(second_base, max_retries=0)
        with pytest.raises(openai.APIStatusError) as replayed:
            again.responses.create(model="assistant", input=[answer], previous_response_id=asked.id)

    calls = [item for item in done.output if item.type == "mcp_call"]
    assert [c.name for c in calls] == ["schedule_reminder"] and "2026-12-01T09:00" in calls[0].output
    assert replayed.value.status_code == 409


def test_a_client_function_tool_is_returned_to_the_client_and_its_output_continues_the_turn(base):
    api = client(base)
    asked = api.responses.create(model="assistant", input='/get_weather {"city": "Oslo"}', tools=[WEATHER_TOOL])
    calls = [item for item in asked.output if item.type == "function_call"]
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("get_weather", {"city": "Oslo"})]

    output = {"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny, 21 C"}
    done = api.responses.create(model="assistant", input=[output], previous_response_id=asked.id, tools=[WEATHER_TOOL])

    assert "get_weather returned sunny, 21 C" in done.output_text


def test_a_streamed_approval_round_trip_survives_an_app_restart(cosmos_env):
    with (
        host(cosmos_env) as first_base,
        client(first_base).responses.stream(model="assistant", input=REMINDER) as asking,
    ):
        added = [e.item.type for e in asking if e.type == "response.output_item.added"]
        asked = asking.get_final_response()
    request = next(item for item in asked.output if item.type == "mcp_approval_request")
    assert "mcp_approval_request" in added

    answer = {"type": "mcp_approval_response", "approval_request_id": request.id, "approve": True}
    with host(cosmos_env) as second_base:
        api = client(second_base)
        with api.responses.stream(model="assistant", input=[answer], previous_response_id=asked.id) as answering:
            done_items = [e.item for e in answering if e.type == "response.output_item.done"]
            done = answering.get_final_response()

    assert [i.name for i in done_items if i.type == "mcp_call"] == ["schedule_reminder"]
    assert [i.type for i in done.output] == [i.type for i in done_items]


def test_a_streamed_turn_is_saved_and_stored_when_the_client_leaves_after_the_first_event(base):
    body = {"model": "assistant", "input": "I will hang up", "stream": True, "conversation": "resp-leaver"}
    headers = {"x-user-id": "leaver"}
    with httpx.stream("POST", f"{base}/v1/responses", json=body, headers=headers, timeout=60) as streamed:
        first = next(line for line in streamed.iter_lines() if line.startswith("data: "))
    response_id = json.loads(first[len("data: ") :])["response"]["id"]

    api = client(base, user="leaver", max_retries=0)
    stored = wait_for(lambda: api.responses.retrieve(response_id))
    assert stored.status == "completed" and "I will hang up" in stored.output_text
    assert httpx.get(f"{base}/sessions/resp-leaver", headers=headers).json()["turns"] == 1


def wait_for(read: Any, attempts: int = 300) -> Any:
    """The first successful read: the turn finishes in the app after the client left (bounded)."""
    for _ in range(attempts):
        try:
            return read()
        except openai.NotFoundError:
            threading.Event().wait(0.1)
    raise AssertionError("the response was never stored")


def test_a_retry_with_the_same_idempotency_key_replays_the_stored_response(base):
    api, key = client(base), {"Idempotency-Key": f"resp-{uuid.uuid4().hex}"}
    first = api.responses.create(model="assistant", input="only once", conversation="resp-idem", extra_headers=key)
    again = api.responses.create(model="assistant", input="only once", conversation="resp-idem", extra_headers=key)

    assert again == first
    native = httpx.get(f"{base}/sessions/resp-idem", headers={"x-user-id": "responses-user"}).json()
    assert native["turns"] == 1


# --- errors -------------------------------------------------------------------------------------------


def error_of(call: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(openai.APIStatusError) as raised:
        call()
    body = raised.value.response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return raised.value.status_code, body["error"]


def test_an_unknown_model_is_a_404_in_the_openai_error_shape(base):
    status, error = error_of(lambda: client(base).responses.create(model="gpt-4o", input="hi"))

    assert (status, error["code"], error["param"]) == (404, "model_not_found", "model")


def test_continuing_from_an_older_response_is_a_409_because_branching_is_not_supported(base):
    api = client(base, max_retries=0)
    first = api.responses.create(model="assistant", input="one")
    api.responses.create(model="assistant", input="two", previous_response_id=first.id)

    status, error = error_of(lambda: api.responses.create(model="assistant", input="x", previous_response_id=first.id))

    assert (status, error["code"], error["param"]) == (409, "not_latest_response", "previous_response_id")


def test_another_users_response_is_not_found(base):
    made = client(base, user="owner-a").responses.create(model="assistant", input="private")
    intruder = client(base, user="owner-b", max_retries=0)

    assert error_of(lambda: intruder.responses.retrieve(made.id))[0] == 404
    status, error = error_of(
        lambda: intruder.responses.create(model="assistant", input="x", previous_response_id=made.id)
    )
    assert (status, error["param"]) == (404, "previous_response_id")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "assistant", "input": ""}, "input"),
        ({"model": "assistant", "input": [{"role": "user", "content": [{"type": "input_image"}]}]}, "input[0].content"),
        ({"model": "assistant", "input": "x", "previous_response_id": "resp_x", "conversation": "c"}, "conversation"),
        ({"model": "assistant", "input": "x", "tools": [{"type": "web_search"}]}, "tools[0]"),
        ({"model": "assistant", "input": "x", "temperature": "hot"}, "temperature"),
        ({"input": "x"}, "model"),
        ({"model": "assistant", "input": "x", "tools": [WEATHER_TOOL, WEATHER_TOOL]}, "tools[1].name"),
        (
            {"model": "assistant", "input": "x", "tools": [{"type": "function", "name": "current_time"}]},
            "tools[0].name",
        ),
    ],
)
def test_bad_requests_are_400s_naming_the_parameter(base, body, param):
    response = httpx.post(f"{base}/v1/responses", json=body, headers={"x-user-id": "responses-user"})

    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert response.headers["x-should-retry"] == "false"


# --- agent behind agent ---------------------------------------------------------------------------


async def test_an_agent_framework_agent_holds_a_conversation_with_an_agent_served_here(base):
    from agent_framework import Agent
    from agent_framework.openai import OpenAIChatClient

    upstream = OpenAIChatClient(
        model="assistant", api_key="unused", base_url=f"{base}/v1", default_headers={"x-user-id": "front-agent"}
    )
    front = Agent(client=upstream, name="front", instructions="Relay the user's words.")
    session = front.create_session()

    first = await front.run("I am the front agent", session=session)
    second = await front.run("Do you remember me?", session=session)

    assert "You said: I am the front agent" in first.text
    assert "received 2 earlier messages" in second.text and "Do you remember me?" in second.text
    assert session.service_session_id is not None and session.service_session_id.startswith("resp_")


def test_a_message_while_an_approval_is_pending_is_a_409(base):
    api = client(base, max_retries=0)
    asked = api.responses.create(model="assistant", input=REMINDER)

    status, error = error_of(lambda: api.responses.create(model="assistant", input="hi", previous_response_id=asked.id))

    assert (status, error["code"]) == (409, "approval_pending")


def test_a_turn_without_the_output_of_a_pending_function_call_is_a_400(base):
    api = client(base, max_retries=0)
    asked = api.responses.create(model="assistant", input='/get_weather {"city": "Oslo"}', tools=[WEATHER_TOOL])
    wrong = {"type": "function_call_output", "call_id": "call_forged", "output": "x"}

    missing = error_of(lambda: api.responses.create(model="assistant", input="hi", previous_response_id=asked.id))
    forged = error_of(lambda: api.responses.create(model="assistant", input=[wrong], previous_response_id=asked.id))

    assert (missing[0], missing[1]["code"], missing[1]["param"]) == (400, "function_output_missing", "input")
    assert (forged[0], forged[1]["param"]) == (400, "input")


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/responses/resp_bm90LWEtdHVybg", 404),
        ("GET", "/v1/responses/resp_tmp_0123/input_items", 404),
        ("DELETE", "/v1/responses/not-an-id", 404),
        ("GET", "/v1/models/no-such-agent", 404),
    ],
)
def test_unknown_ids_are_404s_in_the_openai_error_shape(base, method, path, status):
    response = httpx.request(method, f"{base}{path}", headers={"x-user-id": "responses-user"})

    assert response.status_code == status
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_an_oversized_body_is_a_413_and_a_non_json_body_a_400_or_415(base):
    headers = {"x-user-id": "responses-user"}
    big = httpx.post(f"{base}/v1/responses", json={"model": "assistant", "input": "x" * 2_000_000}, headers=headers)
    text = httpx.post(
        f"{base}/v1/responses", content=b"model=assistant", headers={**headers, "content-type": "text/plain"}
    )
    broken = httpx.post(f"{base}/v1/responses", content=b"{", headers={**headers, "content-type": "application/json"})

    assert big.status_code == 413 and "error" in big.json()
    assert text.status_code == 415 and "error" in text.json()
    assert broken.status_code == 400 and "error" in broken.json()
