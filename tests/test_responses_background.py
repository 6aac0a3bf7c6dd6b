"""Background responses through the official ``openai`` SDK, against a local host that runs the queue worker
(the local storage emulator's queue, the local Cosmos DB, the fake model held at its gate): create one and poll
it, stream one and resume its stream by ``sequence_number``, cancel one; every object and event valid against
the vendored schemas."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest

from devtools.devhost import running_host

from .conftest import ARTIFACTS
from .fake_openai import FakeOpenAI
from .schemas import event_errors, response_errors

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def base(cosmos_env, storage_env, fake_model: FakeOpenAI) -> Iterator[str]:
    env = {
        **cosmos_env,
        **storage_env,
        **fake_model.app_settings(),
        "BACKGROUND_QUEUE": f"bgr-{uuid.uuid4().hex[:12]}",
        "EVENTS_FLUSH_MS": "100",
        "EVENTS_POLL_MS": "100",
    }
    with running_host(env, log_path=ARTIFACTS / "apphost-responses-background.log", queue_lease_seconds=3) as host:
        yield host.base


def client(base: str, **options: Any) -> openai.OpenAI:
    headers = {"x-user-id": f"bg-{uuid.uuid4().hex[:8]}"}
    return openai.OpenAI(base_url=f"{base}/v1", api_key="unused", default_headers=headers, max_retries=0, **options)


def until(condition: Callable[[], Any], timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, "the awaited state was not reached in time"
        time.sleep(0.1)
    return value


def valid(response: Any) -> None:
    assert response_errors(response.model_dump(mode="json", exclude_unset=True)) == []


def test_a_background_response_is_queued_at_once_and_polled_to_completion(base, gate):
    api = client(base, timeout=5)
    created = api.responses.create(model="assistant", input="think about it", background=True)

    assert created.status == "queued" and created.background is True and created.output == []
    until(lambda: api.responses.retrieve(created.id).status == "in_progress")  # the model holds it
    gate.set()
    done = until(lambda: (r := api.responses.retrieve(created.id)).status == "completed" and r)

    assert done.id == created.id and done.output_text.startswith("answer ")
    valid(created)
    valid(done)
    assert api.responses.retrieve(created.id).output_text == done.output_text, "the same answer on every read"


def test_a_streamed_background_response_resumes_after_a_sequence_number(base, gate):
    api = client(base)
    gate.set()
    stream = api.responses.create(model="assistant", input="stream it", background=True, stream=True)
    events = list(stream)
    response_id = events[0].response.id
    cut = events[2].sequence_number

    resumed = list(api.responses.retrieve(response_id, stream=True, starting_after=cut))

    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert [e.model_dump(mode="json") for e in resumed] == [e.model_dump(mode="json") for e in events[cut + 1 :]]
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == events[-1].response.output_text == api.responses.retrieve(response_id).output_text
    assert [error for e in events for error in event_errors(e.model_dump(mode="json", exclude_unset=True))] == []


def test_cancelling_a_background_response_ends_it_cancelled_and_the_conversation_takes_the_next(base, gate):
    api = client(base)
    created = api.responses.create(model="assistant", input="never mind", background=True)
    until(lambda: api.responses.retrieve(created.id).status == "in_progress")

    cancelled = api.responses.cancel(created.id)
    gate.set()
    after = api.responses.create(model="assistant", input="something else", previous_response_id=created.id)

    assert cancelled.status == "cancelled" and api.responses.retrieve(created.id).status == "cancelled"
    assert after.status == "completed" and after.output_text.startswith("answer ")
    valid(cancelled)
    with pytest.raises(openai.APIStatusError) as finished:
        api.responses.cancel(created.id)
    assert finished.value.status_code == 409


def test_a_background_response_that_cannot_be_kept_is_refused_before_anything_runs(base):
    api = client(base)
    with pytest.raises(openai.BadRequestError) as refused:
        api.responses.create(model="assistant", input="x", background=True, store=False)
    assert refused.value.body["param"] == "background"
