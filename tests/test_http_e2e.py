"""End to end over real sockets: the local host process, the real OpenAI clients against a local
fake model service, and the local Cosmos DB."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import httpx
import pytest

from .apphost import app_host
from .conftest import ARTIFACTS
from .fake_openai import request_texts
from .http_calls import read_document

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def host_env(cosmos_env, fake_model) -> dict[str, str]:
    return {
        **cosmos_env,
        **fake_model.app_settings(),
        "MODEL_API": "responses",
    }


def host(env: dict[str, str]):
    return app_host(env, log_path=ARTIFACTS / "apphost.log")


def test_a_conversation_survives_a_restart_and_the_model_sees_turn_one_on_turn_two(host_env, fake_model):
    session = f"e2e-{uuid.uuid4().hex[:8]}"
    headers = {"X-User-Id": "e2e-user"}
    with host(host_env) as base:
        first = httpx.post(f"{base}/sessions/{session}/messages", json={"message": "My name is Ada."}, headers=headers)
    with host(host_env) as base:  # a new process: nothing survives in memory
        second = httpx.post(
            f"{base}/sessions/{session}/messages", json={"message": "What is my name?"}, headers=headers
        )
        history = httpx.get(f"{base}/sessions/{session}", headers=headers).json()

    assert first.status_code == 200 and second.status_code == 200
    assert second.json()["turn"] == 2
    turn_two = fake_model.requests[-1]
    assert request_texts(turn_two) == ["My name is Ada.", first.json()["reply"], "What is my name?"]
    assert turn_two["store"] is False
    assert [m["text"] for m in history["messages"]] == [
        "My name is Ada.",
        first.json()["reply"],
        "What is my name?",
        second.json()["reply"],
    ]


def test_service_mode_continues_the_thread_by_id_and_stores_no_text(host_env, fake_model, cosmos_env):
    session = f"svc-{uuid.uuid4().hex[:8]}"
    with host(host_env) as base:
        created = httpx.post(f"{base}/sessions", json={"id": session, "mode": "service"})
        first = httpx.post(f"{base}/sessions/{session}/messages", json={"message": "remember the word heliotrope"})
        turn_one_id = list(fake_model.threads)[-1]
        second = httpx.post(f"{base}/sessions/{session}/messages", json={"message": "which word?"})
        turn_two = fake_model.requests[-1]
        for n in range(3, 51):
            previous_id = list(fake_model.threads)[-1]  # the response the last turn created
            answer = httpx.post(f"{base}/sessions/{session}/messages", json={"message": f"secret number {n}"})
            assert answer.status_code == 200 and answer.json()["turn"] == n
            request = fake_model.requests[-1]
            assert request["previous_response_id"] == previous_id and request_texts(request) == [f"secret number {n}"]
        listed = httpx.get(f"{base}/sessions").json()

    assert created.status_code == 201 and first.status_code == 200 and second.status_code == 200
    assert turn_two["previous_response_id"] == turn_one_id
    assert "remember the word heliotrope" not in json.dumps(turn_two)
    assert any(s["id"] == session and s["title"] is None for s in listed["sessions"])
    document = read_document(cosmos_env, session)
    stored = json.dumps(document)
    assert document["turns"] == 50
    assert document["session"]["service_session_id"] == list(fake_model.threads)[-1]
    assert "heliotrope" not in stored and "which word" not in stored and "secret" not in stored
    assert "answer" not in stored
    assert len(stored.encode()) < 1024, "50 turns later the document is still only metadata and an id"


def test_bad_input_over_http_gets_problem_json(host_env):
    with host(host_env) as base:
        responses = {
            400: httpx.post(f"{base}/sessions/a%20b/messages", json={"message": "hi"}),
            404: httpx.get(f"{base}/sessions/does-not-exist-{uuid.uuid4().hex[:6]}"),
            415: httpx.post(f"{base}/sessions/x/messages", content=b"hi", headers={"Content-Type": "text/plain"}),
            422: httpx.post(f"{base}/sessions/x/messages", json={"message": ""}),
        }

    for status, response in responses.items():
        assert response.status_code == status
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["status"] == status


FIVE_MEGABYTES = b'{"message": "' + b"x" * (5 * 1024 * 1024) + b'"}'


def test_an_oversized_body_with_a_length_gets_the_413_problem_not_a_reset(host_env):
    import urllib.error
    import urllib.request

    with host(host_env) as base:
        request = urllib.request.Request(
            f"{base}/sessions/too-big/messages", data=FIVE_MEGABYTES, headers={"Content-Type": "application/json"}
        )
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(request, timeout=60)

    assert answer.value.code == 413
    assert answer.value.headers["Content-Type"] == "application/problem+json"
    assert json.loads(answer.value.read())["status"] == 413


def test_an_oversized_chunked_body_gets_the_413_problem_not_a_reset(host_env):
    def chunks() -> Iterator[bytes]:
        for start in range(0, len(FIVE_MEGABYTES), 65536):
            yield FIVE_MEGABYTES[start : start + 65536]

    with host(host_env) as base:
        response = httpx.post(
            f"{base}/sessions/too-big/messages",
            content=chunks(),
            headers={"Content-Type": "application/json"},
            timeout=60,
        )

    assert response.status_code == 413 and response.json()["status"] == 413


def test_unknown_paths_under_api_answer_problem_json_pointing_to_the_openapi_document(host_env):
    with host(host_env) as base:
        unknown = httpx.get(f"{base}/sesions")
        deep = httpx.post(f"{base}/no/such/route", json={})
        wrong_method = httpx.put(f"{base}/sessions/s1", json={})
        root = httpx.get(f"{base}/")
        bare = httpx.get(base)
        linked = {
            name: httpx.get(base.removesuffix("/api") + link).status_code for name, link in root.json()["links"].items()
        }

    for response, status in ((unknown, 404), (deep, 404), (wrong_method, 405)):
        assert response.status_code == status and response.headers["content-type"] == "application/problem+json"
        assert "/api/openapi.json" in response.json()["detail"], response.json()
    assert unknown.json()["type"].endswith(":route-not-found") and "GET /api/sesions" in unknown.json()["detail"]
    assert wrong_method.headers["Allow"] == "DELETE, GET"
    assert root.status_code == bare.status_code == 200 and root.json() == bare.json()
    assert root.json()["links"]["chat"] == "/api/chat" and root.json()["links"]["openapi"] == "/api/openapi.json"
    assert linked == {"chat": 200, "openapi": 200, "agents": 200, "sessions": 200, "health": 200}
