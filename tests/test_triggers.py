"""Triggers beyond HTTP: a queue function registered by the app factory is indexed as the worker indexes it,
runs turns only through the runtime's turn service, and follows what a retry of its message can achieve.

The queue function here is defined by the test (background turns are a later change): it shows the seam,
not a shipped feature."""

from __future__ import annotations

import json
import uuid

import azure.functions as func
import pytest

from cosmos_history import create_app
from cosmos_history.domain.errors import BadRequestError, StoreUnavailableError
from cosmos_history.domain.results import TurnRequest
from cosmos_history.triggers import Job, QueueTrigger

pytestmark = pytest.mark.integration

seen: list[Job] = []


async def background_turn(job: Job) -> None:
    """One turn for the user and session the message names."""
    seen.append(job)
    body = job.body
    await job.turns.run(TurnRequest(body["sessionId"], body["message"]), caller=body["userId"])


def queue_functions(runtime, handler=background_turn) -> dict[str, func.FunctionBuilder]:
    trigger = QueueTrigger("background_turn", "turns", handler)
    # A new app: the worker indexes an app once.
    return {f.get_function_name(): f for f in create_app([], triggers=[trigger], runtime=runtime).get_functions()}


def message(body: object) -> func.QueueMessage:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return func.QueueMessage(id=str(uuid.uuid4()), body=raw)


def test_a_registered_queue_function_is_indexed_with_its_queue_and_connection(runtime):
    function = queue_functions(runtime)["background_turn"]

    trigger = function.get_trigger()
    bindings = json.loads(function.get_function_json())["bindings"]

    assert trigger.get_binding_name() == "queueTrigger" and trigger.queue_name == "turns"
    assert bindings == [
        {"direction": "IN", "type": "queueTrigger", "name": "message", "queueName": "turns",
         "connection": "AzureWebJobsStorage"}
    ]  # fmt: skip


async def test_a_queue_message_runs_one_turn_through_the_turn_service(runtime, model, session_id):
    run = queue_functions(runtime)["background_turn"].get_user_function()
    user = f"queued-{session_id}"

    await run(message({"userId": user, "sessionId": session_id, "message": "later, please"}))

    record = await runtime.store.for_user(user).load(session_id)
    assert record is not None and record.turns == 1 and record.user_id == user
    assert model.texts(-1) == [("user", "later, please")]
    assert seen[-1].turns is runtime.turns


async def test_a_message_no_retry_can_fix_is_dropped_not_retried(runtime):
    async def refuses(job: Job) -> None:
        raise BadRequestError("the message names no session")

    run = queue_functions(runtime, refuses)["background_turn"].get_user_function()

    assert await run(message({"userId": "u"})) is None
    assert await run(message(b"not json")) is None


async def test_a_message_that_failed_for_a_passing_reason_is_raised_so_the_host_retries_it(runtime):
    async def store_down(job: Job) -> None:
        raise StoreUnavailableError("the store is down")

    run = queue_functions(runtime, store_down)["background_turn"].get_user_function()

    with pytest.raises(StoreUnavailableError):
        await run(message({"userId": "u"}))
