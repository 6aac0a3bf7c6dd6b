"""The OpenAI-compatible endpoint where outside testing found it lax (issue 20): approvals answered without
storing, idempotency keys, ranges, duplicate outputs, fingerprints, response ids, strict shapes and consistent
errors. Over real sockets with the official ``openai`` SDK, against the app in its local host process."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from openai.types.responses import Response

from cosmos_history.http.openai.ids import response_id

from .apphost import app_host
from .fake_openai import FakeOpenAI, fake_openai_server
from .http_calls import read_document
from .test_approvals_e2e import model_env
from .test_responses_api import REMINDER, WEATHER_TOOL, client, error_of, host

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def base(cosmos_env: dict[str, str]) -> Iterator[str]:
    with host(cosmos_env) as url:
        yield url


@pytest.fixture(scope="module")
def openai_path(cosmos_env: dict[str, str]) -> Iterator[tuple[str, FakeOpenAI]]:
    """The app with its agents on the OpenAI model path (a fake OpenAI service behind the real client library)."""
    with fake_openai_server() as fake, app_host({**cosmos_env, **model_env("openai-responses", fake)}) as url:
        yield url, fake


def user() -> str:
    return f"strict-{uuid.uuid4().hex[:10]}"


def key() -> dict[str, str]:
    return {"Idempotency-Key": f"strict-{uuid.uuid4().hex}"}


def approval_answer(asked: Response) -> dict[str, Any]:
    request = next(item for item in asked.output if item.type == "mcp_approval_request")
    return {"type": "mcp_approval_response", "approval_request_id": request.id, "approve": True}


def sessions_of(base: str, who: str) -> list[dict[str, Any]]:
    listed = httpx.get(f"{base}/sessions", params={"limit": 100}, headers={"x-user-id": who})
    return list(listed.json()["sessions"])


def post(base: str, body: Any, who: str = "strict-raw", **headers: str) -> httpx.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"x-user-id": who, "content-type": "application/json", **headers}
    return httpx.post(f"{base}/v1/responses", content=raw, headers=headers, timeout=60)


def assert_openai_error(answer: httpx.Response, status: int, param: str | None = None) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    if param is not None:
        assert error["param"] == param
    return dict(error)


# --- 1: an approval is answered once, whatever `store` says --------------------------------------------


def test_an_approval_answered_with_store_false_is_refused_and_the_tool_runs_once_when_answered(base, cosmos_env):
    who = user()
    api, session = client(base, user=who, max_retries=0), f"strict-approve-{uuid.uuid4().hex[:8]}"
    asked = api.responses.create(model="assistant", input=REMINDER, conversation=session)
    answer = approval_answer(asked)

    def answer_it(**options: Any) -> Response:
        return api.responses.create(model="assistant", input=[answer], conversation=session, **options)

    refused = [error_of(lambda: answer_it(store=False)) for _ in range(3)]
    done = answer_it()
    again = error_of(answer_it)

    for status, error in refused:
        assert (status, error["type"], error["param"]) == (400, "invalid_request_error", "store")
        assert "store" in error["message"]
    assert [item.type for item in done.output].count("mcp_call") == 1
    assert again[0] == 409
    assert len(read_document(cosmos_env, session, who)["session"]["state"]["reminders"]) == 1


# --- 2: a key replays a response that started a conversation -------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_a_retry_with_the_same_key_replays_the_response_that_started_a_conversation(base, stream):
    who, headers = user(), key()
    api = client(base, user=who)

    def start() -> Response:
        if not stream:
            return api.responses.create(model="assistant", input="start once", extra_headers=headers)
        with api.responses.stream(model="assistant", input="start once", extra_headers=headers) as events:
            return events.get_final_response()

    first, again = start(), start()

    assert again.id == first.id and again.output_text == first.output_text
    assert [s["turns"] for s in sessions_of(base, who)] == [1]
    later = api.responses.create(model="assistant", input="and then", previous_response_id=first.id)
    assert "received 2 earlier messages" in later.output_text


def test_a_key_with_the_same_start_but_another_body_is_refused(base):
    api, headers = client(base, user=user(), max_retries=0), key()
    api.responses.create(model="assistant", input="start once", extra_headers=headers)

    status, error = error_of(lambda: api.responses.create(model="assistant", input="other", extra_headers=headers))

    assert (status, error["code"]) == (400, "idempotency_key_reused")


def test_an_idempotency_key_with_store_false_is_refused_since_nothing_is_kept_to_replay(base):
    who = user()
    api = client(base, user=who, max_retries=0)

    status, error = error_of(
        lambda: api.responses.create(model="assistant", input="x", store=False, extra_headers=key())
    )

    assert (status, error["type"], error["param"]) == (400, "invalid_request_error", "store")
    assert sessions_of(base, who) == []


# --- 4 and 8: ranges and strict shapes, refused before any I/O -----------------------------------------

NAMED_TOOL = {"type": "function", "name": "ok_name", "parameters": {"type": "object", "properties": {}}}


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"temperature": 5}, "temperature"),
        ({"temperature": -1}, "temperature"),
        ({"top_p": 1e30}, "top_p"),
        ({"top_p": -0.5}, "top_p"),
        ({"max_output_tokens": 15}, "max_output_tokens"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"metadata": {"k" * 65: "v"}}, "metadata"),
        ({"metadata": {"k": "v" * 513}}, "metadata"),
        ({"conversation": {"x": 1}}, "conversation"),
        ({"conversation": {"id": "strict-c", "x": 1}}, "conversation"),
        ({"conversation": {"id": None}}, "conversation"),
        ({"conversation": {}}, "conversation"),
        ({"tools": [{**NAMED_TOOL, "name": "has space"}]}, "tools[0].name"),
        ({"tools": [{**NAMED_TOOL, "name": "dotted.name"}]}, "tools[0].name"),
    ],
)
def test_out_of_range_or_malformed_parameters_are_400s_naming_the_field_before_any_io(base, extra, param):
    who = user()

    answer = post(base, {"model": "assistant", "input": "x", **extra}, who)

    assert_openai_error(answer, 400, param)
    assert answer.headers["x-should-retry"] == "false"
    assert sessions_of(base, who) == []


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ('"temperature": 5', "temperature"),
        ('"top_p": 1e30', "top_p"),
        ('"tools": [{"type": "function", "name": "f", "parameters": {"type": "object", "maximum": NaN}}]', None),
    ],
    ids=["temperature", "top_p", "non-finite-schema"],
)
def test_on_the_openai_model_path_a_request_that_cannot_succeed_is_a_400_that_reaches_no_model(
    openai_path, extra, param
):
    url, fake = openai_path

    answer = post(url, f'{{"model": "assistant", "input": "x", {extra}}}'.encode())

    assert assert_openai_error(answer, 400, param)["param"] == param
    assert answer.headers["x-should-retry"] == "false"
    assert fake.requests == []


def test_the_limits_themselves_are_accepted(base):
    extremes = {
        "temperature": 2,
        "top_p": 0,
        "max_output_tokens": 16,
        "metadata": {f"{i:064d}": "v" * 512 for i in range(16)},
        "tools": [{**NAMED_TOOL, "name": "a" * 64}],
    }
    response = client(base, user=user()).responses.create(model="assistant", input="x", **extremes)

    assert response.status == "completed" and response.temperature == 2 and response.top_p == 0


# --- 5: one output per call --------------------------------------------------------------------------


def test_two_outputs_for_one_function_call_are_a_400_and_the_call_still_waits(base):
    api = client(base, user=user(), max_retries=0)
    asked = api.responses.create(model="assistant", input='/get_weather {"city": "Oslo"}', tools=[WEATHER_TOOL])
    call_id = next(item.call_id for item in asked.output if item.type == "function_call")
    output = {"type": "function_call_output", "call_id": call_id, "output": "sunny"}

    status, error = error_of(
        lambda: api.responses.create(
            model="assistant", input=[output, output], previous_response_id=asked.id, tools=[WEATHER_TOOL]
        )
    )
    done = api.responses.create(model="assistant", input=[output], previous_response_id=asked.id, tools=[WEATHER_TOOL])

    assert (status, error["param"]) == (400, "input[1].call_id")
    assert "get_weather returned sunny" in done.output_text


# --- 6: every option that changes the turn is part of the fingerprint -----------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"temperature": 0.5},
        {"top_p": 0.5},
        {"max_output_tokens": 100},
        {"tool_choice": "none"},
        {"tools": [{**WEATHER_TOOL, "description": "Another description."}]},
        {"tools": [{**WEATHER_TOOL, "parameters": {"type": "object", "properties": {}}}]},
    ],
)
def test_a_key_reused_with_another_option_is_refused_not_replayed(base, change):
    api, headers, session = client(base, user=user(), max_retries=0), key(), f"strict-fp-{uuid.uuid4().hex[:8]}"
    body = {"model": "assistant", "input": "same words", "conversation": session, "tools": [WEATHER_TOOL]}
    api.responses.create(**body, extra_headers=headers)

    status, error = error_of(lambda: api.responses.create(**{**body, **change}, extra_headers=headers))

    assert (status, error["code"]) == (400, "idempotency_key_reused")


def test_an_approval_answer_reusing_a_key_with_another_option_is_refused(base):
    api, headers, session = client(base, user=user(), max_retries=0), key(), f"strict-fpa-{uuid.uuid4().hex[:8]}"
    asked = api.responses.create(model="assistant", input=REMINDER, conversation=session)
    answer = approval_answer(asked)
    api.responses.create(model="assistant", input=[answer], conversation=session, extra_headers=headers)

    status, error = error_of(
        lambda: api.responses.create(
            model="assistant", input=[answer], conversation=session, temperature=0.1, extra_headers=headers
        )
    )

    assert (status, error["code"]) == (400, "idempotency_key_reused")


# --- 7: one response, one id ---------------------------------------------------------------------------


def respellings(value: str) -> list[str]:
    """Other base64 spellings of the same session and turn: padded, and with unused low bits set."""
    encoded = value.removeprefix("resp_")
    raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    spellings = [value + "=" * (-len(encoded) % 4 or 4)]
    if len(raw) % 3:
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        last = alphabet.index(encoded[-1])
        spellings.append("resp_" + encoded[:-1] + alphabet[last | 1 if not last & 1 else last & ~1])
    assert all(base64.urlsafe_b64decode(s[5:] + "=" * (-len(s[5:]) % 4)) == raw for s in spellings)
    return spellings


def test_only_the_issued_spelling_of_a_response_id_names_the_response(base):
    api = client(base, user=user(), max_retries=0)
    made = api.responses.create(model="assistant", input=[{"role": "user", "content": "only mine"}])

    for other in respellings(made.id):
        assert other != made.id
        assert error_of(lambda other=other: api.responses.retrieve(other))[0] == 404
        assert error_of(lambda other=other: api.responses.input_items.list(other))[0] == 404
        assert error_of(lambda other=other: api.responses.delete(other))[0] == 404
        status, error = error_of(
            lambda other=other: api.responses.create(model="assistant", input="x", previous_response_id=other)
        )
        assert (status, error["param"]) == (404, "previous_response_id")
    assert api.responses.retrieve(made.id).id == made.id


# --- 10: consistency -------------------------------------------------------------------------------------


def test_a_replay_over_v1_says_it_is_one(base):
    api, headers = client(base, user=user()), key()
    first = api.responses.with_raw_response.create(model="assistant", input="once", extra_headers=headers)
    again = api.responses.with_raw_response.create(model="assistant", input="once", extra_headers=headers)

    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    assert again.parse().id == first.parse().id


def test_a_streamed_replay_over_v1_says_it_is_one(base):
    body, headers = {"model": "assistant", "input": "once, streamed", "stream": True}, key()
    who = user()

    first = post(base, body, who, **headers)
    again = post(base, body, who, **headers)

    assert first.status_code == again.status_code == 200
    assert "idempotent-replayed" not in first.headers and again.headers["idempotent-replayed"] == "true"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/nothing", 404),
        ("POST", "/v1/chat/completions", 404),
        ("GET", "/v1/responses/resp_x/cancel/more", 404),
        ("PUT", "/v1/responses", 405),
        ("GET", "/v1/responses", 405),
        ("PATCH", "/v1/models/assistant", 405),
    ],
)
def test_unknown_routes_and_methods_under_v1_answer_in_the_openai_error_shape(base, method, path, status):
    answer = httpx.request(method, f"{base}{path}", headers={"x-user-id": "strict-raw"})

    assert answer.headers["content-type"].startswith("application/json")
    assert_openai_error(answer, status)


def test_a_response_id_naming_a_turn_the_conversation_has_not_reached_says_so(base):
    api, session = client(base, user=user(), max_retries=0), f"strict-ahead-{uuid.uuid4().hex[:8]}"
    api.responses.create(model="assistant", input="one", conversation=session)
    ahead = response_id(session, 5)

    status, error = error_of(lambda: api.responses.create(model="assistant", input="x", previous_response_id=ahead))

    assert (status, error["param"]) == (404, "previous_response_id")
    assert "1 turn" in error["message"] and "moved on" not in error["message"]


def test_every_previous_response_id_that_resolves_to_none_of_the_callers_responses_gets_one_wording(base):
    owner, who = client(base, user=user()), user()
    api = client(base, user=who, max_retries=0)
    theirs = owner.responses.create(model="assistant", input="not yours")
    gone_session = f"strict-gone-{uuid.uuid4().hex[:8]}"
    gone = api.responses.create(model="assistant", input="soon gone", conversation=gone_session)
    httpx.delete(f"{base}/sessions/{gone_session}", headers={"x-user-id": who})
    unstored = api.responses.create(model="assistant", input="unstored", store=False)
    ids = [theirs.id, gone.id, unstored.id, "resp_x", "resp_bm90LWEtdHVybg", "not-an-id", respellings(theirs.id)[0]]

    wordings = set()
    for value in ids:
        status, error = error_of(
            lambda value=value: api.responses.create(model="assistant", input="x", previous_response_id=value)
        )
        assert (status, error["param"], error["code"]) == (404, "previous_response_id", "response_not_found")
        wordings.add(error["message"].replace(repr(value), "<id>"))
    assert wordings == {"No response with id <id> was found."}


# --- 3: numbers JSON cannot carry --------------------------------------------------------------------


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
@pytest.mark.parametrize(
    "template",
    [
        '{"model": "assistant", "input": "x", "conversation": "SESSION", "temperature": LITERAL}',
        '{"model": "assistant", "input": "x", "conversation": "SESSION", "reasoning": {"n": [LITERAL]}}',
        '{"model": "assistant", "input": "x", "conversation": "SESSION", "tools": [{"type": "function", "name": "f",'
        ' "parameters": {"type": "object", "properties": {"a": {"type": "number", "maximum": LITERAL}}}}]}',
    ],
    ids=["parameter", "nested", "tool-schema"],
)
def test_a_non_finite_number_anywhere_in_a_request_is_a_400_and_nothing_is_stored(base, template, literal):
    who, session = user(), f"strict-nan-{uuid.uuid4().hex[:8]}"
    raw = template.replace("SESSION", session).replace("LITERAL", literal).encode()

    answer = post(base, raw, who)

    error = assert_openai_error(answer, 400)
    assert error["type"] == "invalid_request_error" and "NaN" in error["message"]
    assert answer.headers["x-should-retry"] == "false"
    assert httpx.get(f"{base}/sessions/{session}", headers={"x-user-id": who}).status_code == 404
