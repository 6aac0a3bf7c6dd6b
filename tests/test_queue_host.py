"""The local host runs queue functions as the Functions host does: a message is run and deleted, a failing one
is retried with a growing ``dequeue_count`` and moved to ``<queue>-poison`` after ``maxDequeueCount`` (5) runs,
and a message whose process was killed mid-run is run again by another host once its lease runs out.

Real processes (the local host as `make run` runs it), the local storage emulator, bounded waits on what the
function wrote down (files outside the process)."""

from __future__ import annotations

import base64
import contextlib
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient

from devtools.devhost import running_host

from .conftest import ARTIFACTS
from .queue_app import runs

pytestmark = pytest.mark.integration


def wait_until(condition: Callable[[], bool], timeout: float = 90.0) -> None:
    """Poll ``condition`` (what the function wrote, what the queue holds) until it holds; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        time.sleep(0.1)


@pytest.fixture
def queue_env(storage_env, cosmos_env, tmp_path: Path) -> dict[str, str]:
    return {
        **cosmos_env,
        **storage_env,
        "TEST_QUEUE": f"q-{uuid.uuid4().hex[:12]}",
        "LEDGER_DIR": str(tmp_path),
        "AGENTS_PACKAGE": "tests.sample_agents",
    }


def send(env: dict[str, str], queue: str, body: dict[str, object]) -> None:
    client = QueueClient.from_connection_string(env["AzureWebJobsStorage"], queue)
    with contextlib.suppress(ResourceExistsError):  # the host made it first
        client.create_queue()
    client.send_message(base64.b64encode(json.dumps(body).encode()).decode())
    client.close()


def waiting(env: dict[str, str], queue: str) -> list[dict[str, object]]:
    """The messages visible on ``queue`` (peeked: left in place), decoded as the host decodes them."""
    client = QueueClient.from_connection_string(env["AzureWebJobsStorage"], queue)
    try:
        return [json.loads(base64.b64decode(m.content)) for m in client.peek_messages(max_messages=32)]
    except Exception:
        return []
    finally:
        client.close()


def host(env: dict[str, str], name: str, **options: object):
    return running_host(
        env, app="tests.queue_app", log_path=ARTIFACTS / f"queue-host-{name}.log", ready=lambda s: s == 404, **options
    )


def test_a_message_runs_once_and_is_deleted(queue_env, tmp_path):
    queue, ref = queue_env["TEST_QUEUE"], "once"
    with host(queue_env, "once"):
        send(queue_env, queue, {"ref": ref})
        wait_until(lambda: len(runs(ref, tmp_path)) == 1)
        wait_until(lambda: waiting(queue_env, queue) == [])

    assert [run["dequeueCount"] for run in runs(ref, tmp_path)] == [1]


def test_a_failing_message_is_retried_then_succeeds(queue_env, tmp_path):
    queue, ref = queue_env["TEST_QUEUE"], "flaky"
    with host(queue_env, "flaky"):
        send(queue_env, queue, {"ref": ref, "fail": 2})
        wait_until(lambda: len(runs(ref, tmp_path)) == 3)
        wait_until(lambda: waiting(queue_env, queue) == [])

    assert [run["dequeueCount"] for run in runs(ref, tmp_path)] == [1, 2, 3]
    assert waiting(queue_env, f"{queue}-poison") == []


def test_a_message_failing_five_times_moves_to_the_poison_queue(queue_env, tmp_path):
    queue, ref = queue_env["TEST_QUEUE"], "poison"
    with host(queue_env, "poison"):
        send(queue_env, queue, {"ref": ref, "fail": 99})
        wait_until(lambda: waiting(queue_env, f"{queue}-poison") != [])

        assert [run["dequeueCount"] for run in runs(ref, tmp_path)] == [1, 2, 3, 4, 5]
        assert waiting(queue_env, f"{queue}-poison") == [{"ref": ref, "fail": 99}]
        assert waiting(queue_env, queue) == []


def test_a_message_whose_process_was_killed_runs_again_in_another_host_after_its_lease(queue_env, tmp_path):
    queue, ref = queue_env["TEST_QUEUE"], "killed"
    with host(queue_env, "killed-1", queue_lease_seconds=3) as first:
        send(queue_env, queue, {"ref": ref, "hang": True})
        wait_until(lambda: len(runs(ref, tmp_path)) == 1)
        first.process.kill()
        first.process.wait()
    with host(queue_env, "killed-2", queue_lease_seconds=3):
        wait_until(lambda: len(runs(ref, tmp_path)) == 2)
        wait_until(lambda: waiting(queue_env, queue) == [])

    first_run, second_run = runs(ref, tmp_path)
    assert first_run["message"] == second_run["message"]
    assert [first_run["dequeueCount"], second_run["dequeueCount"]] == [1, 2]
