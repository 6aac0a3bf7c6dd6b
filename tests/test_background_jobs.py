"""Background turns in process, as the Functions worker calls the app: the request's answer and validation, the
job message the host's queue trigger decodes, the queue functions indexed with their bindings, and the retry of
a job whose turn was saved before its process died (no second model call).

The queue is the local storage emulator's, the store the local Cosmos DB; only the model is a fake."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import azure.functions as func
import pytest
from azure.functions.queue import QueueMessage, QueueMessageInConverter
from azure.storage.queue import QueueClient

import function_app
from cosmos_history import Runtime, build_agents, build_runtime, create_app, load_settings
from cosmos_history.background_jobs import background_triggers

from .fakes import RecordingChatClient
from .http_calls import assert_problem, call, request

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def queued_runtime(cosmos_env, storage_env) -> AsyncIterator[Runtime]:
    """A runtime whose background turns go to a queue of its own on the local storage emulator."""
    settings = load_settings({**cosmos_env, **storage_env, "BACKGROUND_QUEUE": f"jobs-{uuid.uuid4().hex[:12]}"})
    built = await build_runtime(settings, agents=build_agents(settings, RecordingChatClient()))
    yield built
    await built.close()


@pytest.fixture(scope="module")
def app_functions(queued_runtime: Runtime) -> dict[str, Any]:
    app = create_app(function_app.ROUTES, triggers=background_triggers(queued_runtime.settings), runtime=queued_runtime)
    return {f.get_function_name(): f.get_user_function() for f in app.get_functions()}


@pytest.fixture
def recording(queued_runtime: Runtime) -> RecordingChatClient:
    client = queued_runtime.agents["assistant"].by_mode["local"].client
    assert isinstance(client, RecordingChatClient)
    client.reset()
    return client


def take_job(runtime: Runtime) -> QueueMessage:
    """The next message of the runtime's queue as the Functions host hands it to the worker (base64-decoded)."""
    settings = runtime.settings.queue
    client = QueueClient.from_connection_string(settings.connection_string or "", settings.name)
    try:
        message = next(iter(client.receive_messages(max_messages=1, visibility_timeout=30)))
        client.delete_message(message)
    finally:
        client.close()
    body = base64.b64decode(message.content, validate=True)
    return QueueMessage(id=message.id, body=body, dequeue_count=message.dequeue_count, pop_receipt=message.pop_receipt)


def background_message(session: str, body: dict[str, Any], user: str = "alice") -> Any:
    return request("POST", f"/api/sessions/{session}/messages", body=body, route={"id": session}, user=user)


async def turn_answer(functions, session: str, number: int) -> dict[str, Any]:
    route = {"id": session, "turn": str(number)}
    status, body, _ = await call(functions, "get_turn_route", request("GET", "/api/x", route=route))
    assert status == 200, body
    return body


async def test_a_background_message_is_queued_as_a_base64_json_job_and_the_queue_function_runs_it(
    app_functions, queued_runtime, recording, session_id
):
    status, body, response = await call(
        app_functions, "post_message_route", background_message(session_id, {"message": "later", "background": True})
    )
    job = take_job(queued_runtime)

    assert status == 202 and body["status"] == "queued" and body["turn"] == 1
    assert response.headers["Location"] == f"/api/sessions/{session_id}/turns/1"
    assert recording.calls == [], "nothing ran before the queue function"
    assert {k: v for k, v in json.loads(job.get_body()).items() if k != "trace"} == {
        "userId": "alice",
        "sessionId": session_id,
        "turn": 1,
        "attempt": (await queued_runtime.turn_log.find(session_id, "alice", 1)).attempt,
    }

    await app_functions["background_turn"](job)

    done = await turn_answer(app_functions, session_id, 1)
    assert done["status"] == "completed" and done["reply"] == "reply 1" and len(recording.calls) == 1


async def test_a_retried_job_whose_turn_was_saved_answers_from_the_session_without_a_second_model_call(
    app_functions, queued_runtime, recording, session_id
):
    await call(
        app_functions, "post_message_route", background_message(session_id, {"message": "once", "background": True})
    )
    job = take_job(queued_runtime)
    await app_functions["background_turn"](job)
    log = queued_runtime.turn_log
    saved = await log.find(session_id, "alice", 1)
    # The process died after the session's save and before the record said so: the queue delivers the job again.
    await log.put(saved.ended("in_progress", result=None))

    await app_functions["background_turn"](job)

    done = await turn_answer(app_functions, session_id, 1)
    assert done["status"] == "completed" and done["reply"] == "reply 1"
    assert len(recording.calls) == 1, "the retry replayed the saved turn"


async def test_a_job_the_queue_gave_up_on_ends_its_turn_failed_with_a_reason(
    app_functions, queued_runtime, recording, session_id
):
    await call(
        app_functions, "post_message_route", background_message(session_id, {"message": "no", "background": True})
    )
    job = take_job(queued_runtime)

    await app_functions["background_turn_poison"](job)

    failed = await turn_answer(app_functions, session_id, 1)
    assert failed["status"] == "failed" and "every attempt" in failed["reason"] and recording.calls == []


async def test_messages_enqueued_at_the_same_time_each_get_a_turn_of_their_own(
    app_functions, queued_runtime, session_id
):
    bodies = [{"message": f"m{n}", "background": True, "multitask": "enqueue"} for n in range(5)]
    answers = await asyncio.gather(
        *(call(app_functions, "post_message_route", background_message(session_id, body)) for body in bodies)
    )
    log = queued_runtime.turn_log
    records = [await log.find(session_id, "alice", n) for n in range(1, 6)]
    for _ in range(5):
        take_job(queued_runtime)  # the test's queue is left empty

    assert sorted(body["turn"] for _, body, _ in answers) == [1, 2, 3, 4, 5]
    assert sorted(r.request["message"] for r in records if r is not None) == [f"m{n}" for n in range(5)]


@pytest.mark.parametrize(
    "body",
    [
        {"message": "x", "background": "yes"},
        {"message": "x", "multitask": "later"},
        {"message": "x", "background": True, "stream": True},
    ],
)
async def test_a_malformed_background_or_multitask_is_422_and_queues_nothing(app_functions, session_id, body):
    status, _, response = await call(app_functions, "post_message_route", background_message(session_id, body))
    assert_problem(status, response, 422)


async def test_a_background_turn_without_a_queue_is_503_without_retry_after(functions, session_id):
    status, _, response = await call(
        functions, "post_message_route", background_message(session_id, {"message": "x", "background": True})
    )
    problem = assert_problem(status, response, 503)
    assert "AzureWebJobsStorage" in problem["detail"] and "Retry-After" not in response.headers


def test_the_app_indexes_the_background_queue_functions_with_the_bindings_the_host_reads():
    # A new app: the worker indexes an app once.
    app = create_app(function_app.ROUTES, triggers=background_triggers(load_settings({"BACKGROUND_QUEUE": "turns"})))
    indexed = {f.get_function_name(): f for f in app.get_functions()}

    for name, queue in (("background_turn", "turns"), ("background_turn_poison", "turns-poison")):
        bindings = json.loads(indexed[name].get_function_json())["bindings"]
        assert bindings == [
            {"direction": "IN", "type": "queueTrigger", "name": "message", "queueName": queue,
             "connection": "AzureWebJobsStorage"}
        ]  # fmt: skip
        annotation = indexed[name].get_user_function().__annotations__["message"]
        assert QueueMessageInConverter.check_input_type_annotation(
            func.QueueMessage if annotation == "func.QueueMessage" else annotation
        )
