"""Background turns over real sockets: ``"background": true`` answers 202 at once and the turn runs in the
queue-triggered function of a local host (the local storage emulator's queue, the local Cosmos DB); it is
polled and streamed from its turn; a process killed mid-turn leaves a turn that the queue's retry completes
with no tool run twice; a turn that keeps failing ends ``failed`` from the poison queue; ``multitask`` decides
what a second message does while a turn runs (reject, enqueue, interrupt).

Turns are held in flight without sleeps: the ledger agent's tool waits (after its effect) once armed, saying so
on a FIFO, and the fake model waits on a gate; the tests wait for states (bounded polls), never for time."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from devtools.chat import read_events
from devtools.devhost import RunningHost, running_host

from .conftest import ARTIFACTS
from .crash_agents.ledger import lines
from .fake_openai import FakeOpenAI

pytestmark = pytest.mark.integration

USER = {"x-user-id": "background-tester"}
TERMINAL = ("completed", "awaiting_approval", "failed", "cancelled")


def until(condition: Callable[[], Any], timeout: float = 120.0) -> Any:
    """Poll ``condition`` (a turn's status, a file) until it is truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, "the awaited state was not reached in time"
        time.sleep(0.1)
    return value


class Rig:
    """A ledger directory and an environment for local hosts that run background turns."""

    def __init__(self, env: dict[str, str], directory: Path) -> None:
        self.directory = directory
        self.env = {
            **env,
            "LEDGER_DIR": str(directory),
            "AGENTS_PACKAGE": "tests.crash_agents",
            "DEFAULT_AGENT": "ledger",
            "TURN_LEASE_SECONDS": "3",
            "EVENTS_FLUSH_MS": "100",
            "EVENTS_POLL_MS": "100",
            "BACKGROUND_QUEUE": f"bg-{uuid.uuid4().hex[:12]}",
        }

    @contextlib.contextmanager
    def host(self, name: str, **env: str) -> Iterator[RunningHost]:
        log = ARTIFACTS / f"apphost-background-{name}.log"
        with running_host({**self.env, **env}, log_path=log, queue_lease_seconds=3) as host:
            yield host

    def arm(self, ref: str) -> Callable[[], None]:
        """Make the tool call ``ref`` wait after its effect; returns a wait for it to get there."""
        os.mkfifo(self.directory / f"reached-{ref}")
        (self.directory / f"armed-{ref}").touch()

        def reached() -> None:
            with open(self.directory / f"reached-{ref}", encoding="utf-8") as fifo:  # blocks until the tool writes
                assert fifo.read() == "effect recorded\n"

        return reached

    def notifications(self, ref: str) -> list[dict[str, Any]]:
        return [entry for entry in lines("notifications.jsonl", self.directory) if entry["ref"] == ref]


def notify(ref: str) -> str:
    return f'/notify {{"text": "hello", "ref": "{ref}"}}'


def post(base: str, path: str, body: dict[str, Any], timeout: float = 60) -> httpx.Response:
    return httpx.post(f"{base}{path}", json=body, headers=USER, timeout=timeout)


def turn(base: str, session: str, number: int) -> dict[str, Any]:
    answer = httpx.get(f"{base}/sessions/{session}/turns/{number}", headers=USER, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()


def ended(base: str, session: str, number: int) -> dict[str, Any]:
    """The turn once it ended (polled)."""
    return until(lambda: (body := turn(base, session, number))["status"] in TERMINAL and body)


def history(base: str, session: str) -> list[tuple[str, str]]:
    body = httpx.get(f"{base}/sessions/{session}", headers=USER, timeout=60).json()
    return [(m["role"], m["text"]) for m in body["messages"]]


@pytest.fixture
def rig(cosmos_env, storage_env, tmp_path: Path) -> Rig:
    return Rig({**cosmos_env, **storage_env}, tmp_path)


@pytest.fixture(scope="module")
def model_host(cosmos_env, storage_env, fake_model: FakeOpenAI) -> Iterator[str]:
    """A host whose agents call the fake model (which the tests can hold at its gate)."""
    env = {
        **cosmos_env,
        **storage_env,
        **fake_model.app_settings(),
        "BACKGROUND_QUEUE": f"bg-{uuid.uuid4().hex[:12]}",
        "EVENTS_FLUSH_MS": "100",
        "EVENTS_POLL_MS": "100",
    }
    log = ARTIFACTS / "apphost-background-model.log"
    with running_host(env, log_path=log, queue_lease_seconds=3) as host:
        yield host.base


def new_session() -> str:
    return f"bg-{uuid.uuid4().hex[:12]}"


# --- background: true ------------------------------------------------------------------------------------


def test_a_background_turn_on_a_model_slower_than_the_client_timeout_answers_202_and_completes(
    model_host, fake_model, gate
):
    session = new_session()
    asked = post(model_host, f"/sessions/{session}/messages", {"message": "later", "background": True}, timeout=5)
    body = asked.json()

    assert asked.status_code == 202, asked.text
    assert asked.headers["Location"] == f"/api/sessions/{session}/turns/1"
    assert body["status"] == "queued" and body["turn"] == 1 and body["sessionId"] == session
    until(lambda: turn(model_host, session, 1)["status"] == "in_progress")  # the model holds it
    with pytest.raises(httpx.ReadTimeout):  # the same turn in the foreground outlasts this client's patience
        post(model_host, f"/sessions/{new_session()}/messages", {"message": "now"}, timeout=1)

    gate.set()
    done = ended(model_host, session, 1)

    assert done["status"] == "completed" and done["reply"].startswith("answer ")
    assert history(model_host, session) == [("user", "later"), ("assistant", done["reply"])]


def test_a_background_turn_is_read_by_a_resumed_stream_of_its_events(model_host, fake_model, gate):
    session = new_session()
    fake_model.chunk_delay = 0.0
    post(model_host, f"/sessions/{session}/messages", {"message": "stream it later", "background": True})
    until(lambda: turn(model_host, session, 1)["status"] == "in_progress")
    gate.set()

    url = f"{model_host}/sessions/{session}/turns/1/events"
    with httpx.stream("GET", url, headers={**USER, "Last-Event-ID": "1:0"}, timeout=60) as stream:
        events = list(read_events(stream.iter_lines()))

    done = ended(model_host, session, 1)
    assert events[-1][0] == "done" and events[-1][1]["reply"] == done["reply"]
    assert "".join(data["text"] for name, data in events if name == "delta") == done["reply"]


def test_a_second_background_message_while_one_is_queued_is_409_by_default(model_host, gate):
    session = new_session()
    first = post(model_host, f"/sessions/{session}/messages", {"message": "one", "background": True})
    second = post(model_host, f"/sessions/{session}/messages", {"message": "two", "background": True})

    assert first.status_code == 202
    assert second.status_code == 409 and second.json()["type"].endswith("turn-in-progress")
    assert second.headers.get("Retry-After")
    gate.set()
    assert ended(model_host, session, 1)["status"] == "completed"


def test_a_turn_that_keeps_failing_ends_failed_from_the_poison_queue_and_the_session_takes_the_next_message(
    model_host, fake_model
):
    session = new_session()
    fake_model.fail_next = 10_000  # every delivery the queue makes (maxDequeueCount, 5) meets a failing model
    post(model_host, f"/sessions/{session}/messages", {"message": "doomed", "background": True})

    failed = ended(model_host, session, 1)
    fake_model.fail_next = 0
    after = post(model_host, f"/sessions/{session}/messages", {"message": "next"})

    assert failed["status"] == "failed" and failed["reason"]
    assert after.status_code == 200 and after.json()["turn"] == 1
    assert history(model_host, session)[0] == ("user", "next")


def test_a_message_enqueued_behind_a_plain_turn_becomes_the_turn_after_it(model_host, fake_model, gate):
    session = new_session()
    asked = len(fake_model.requests)
    with ThreadPoolExecutor(1) as pool:
        plain = pool.submit(post, model_host, f"/sessions/{session}/messages", {"message": "first"})
        until(lambda: len(fake_model.requests) > asked)  # the plain turn holds the lease, its model call waits
        queued = post(model_host, f"/sessions/{session}/messages", {"message": "second", "multitask": "enqueue"})
        gate.set()
        first = plain.result()

    assert queued.status_code == 202 and queued.json()["turn"] == 2, queued.text
    assert first.status_code == 200 and first.json()["turn"] == 1
    assert ended(model_host, session, 2)["status"] == "completed"
    assert [text for role, text in history(model_host, session) if role == "user"] == ["first", "second"]


# --- kill -9 ---------------------------------------------------------------------------------------------


def test_a_background_turn_whose_process_is_killed_completes_on_retry_with_no_tool_run_twice(rig):
    session, ref = new_session(), f"kill-{uuid.uuid4().hex[:6]}"
    reached = rig.arm(ref)
    with rig.host("killed") as first:
        asked = post(first.base, f"/sessions/{session}/messages", {"message": notify(ref), "background": True})
        assert asked.status_code == 202, asked.text
        reached()  # the tool's effect happened; the turn waits in it
        first.process.kill()
        first.process.wait()
    with rig.host("retry") as second:
        done = ended(second.base, session, 1)
        after = post(second.base, f"/sessions/{session}/messages", {"message": "thanks"})

        assert done["status"] in ("completed", "failed"), done
        assert len(rig.notifications(ref)) == 1, "the tool ran exactly once"
        assert after.status_code == 200 and after.json()["turn"] == (2 if done["status"] == "completed" else 1)


# --- multitask -------------------------------------------------------------------------------------------


def test_five_messages_enqueued_while_a_turn_runs_all_become_turns_in_the_order_sent(rig):
    session, ref = new_session(), f"hold-{uuid.uuid4().hex[:6]}"
    reached = rig.arm(ref)
    with rig.host("enqueue") as host:
        post(host.base, f"/sessions/{session}/messages", {"message": notify(ref), "background": True})
        reached()
        queued = [
            post(host.base, f"/sessions/{session}/messages", {"message": f"message {n}", "multitask": "enqueue"})
            for n in range(1, 6)
        ]
        assert [(a.status_code, a.json()["status"], a.json()["turn"]) for a in queued] == [
            (202, "queued", n) for n in range(2, 7)
        ]
        cancelled = httpx.post(f"{host.base}/sessions/{session}/turns/1/cancel", headers=USER, timeout=60)
        finished = [ended(host.base, session, n) for n in range(2, 7)]

        assert cancelled.status_code in (200, 202) and ended(host.base, session, 1)["status"] == "cancelled"
        assert [t["status"] for t in finished] == ["completed"] * 5
        assert [text for role, text in history(host.base, session) if role == "user"] == [
            f"message {n}" for n in range(1, 6)
        ]


def test_interrupt_cancels_the_running_turn_and_runs_the_new_message(rig):
    session, ref = new_session(), f"int-{uuid.uuid4().hex[:6]}"
    reached = rig.arm(ref)
    with rig.host("interrupt") as host:
        post(host.base, f"/sessions/{session}/messages", {"message": notify(ref), "background": True})
        reached()
        interrupting = post(host.base, f"/sessions/{session}/messages", {"message": "stop", "multitask": "interrupt"})

        assert interrupting.status_code == 200, interrupting.text
        assert interrupting.json()["turn"] == 2 and interrupting.json()["status"] == "completed"
        assert ended(host.base, session, 1)["status"] == "cancelled"
        assert [text for role, text in history(host.base, session) if role == "user"] == ["stop"]
