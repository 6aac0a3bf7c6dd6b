"""Workflows: discovered from the ``workflows`` package, run on the queue with a checkpoint after every superstep,
paused for people and resumed from their checkpoint when a person answers (exactly once), each run its caller's.

The first tests run the domain over the memory adapter with a list as the queue (the worker is called by the
test); the last ones run the shipped example over real sockets: local hosts polling the local storage emulator's
queue, the local Cosmos DB, the offline model."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from agent_framework import Agent

from cosmos_history.adapters.memory_workflows import MemoryWorkflowRuns
from cosmos_history.domain.errors import StoreUnavailableError
from cosmos_history.domain.workflow_runs import PendingRequest, WorkflowRun
from cosmos_history.domain.workflows import (
    WorkflowRequestConflictError,
    WorkflowRunFinishedError,
    WorkflowRunNotFoundError,
    WorkflowRuns,
)
from cosmos_history.models.offline import OfflineChatClient
from cosmos_history.runtime import LazyRuntime
from cosmos_history.settings import load_settings
from cosmos_history.workflows.discovery import WorkflowLoadError, workflow_modules
from devtools.devhost import running_host

from .apphost import registered_functions
from .conftest import ARTIFACTS
from .http_calls import assert_problem, call, post_message, request

ALICE = {"x-user-id": "workflow-alice"}
BOB = {"x-user-id": "workflow-bob"}


class ListQueue:
    """The job queue as a list: the test hands each job to the worker itself."""

    def __init__(self) -> None:
        self.jobs: list[dict[str, Any]] = []

    async def enqueue(self, job: dict[str, Any], *, delay_seconds: int = 0) -> None:
        self.jobs.append(job)


def offline_agents() -> dict[str, Agent]:
    return {"assistant": Agent(client=OfflineChatClient(), name="assistant")}


def service(store: MemoryWorkflowRuns, queue: ListQueue) -> WorkflowRuns:
    modules = workflow_modules(offline_agents())
    return WorkflowRuns({n: m.build for n, m in modules.items()}, {n: m.description for n, m in modules.items()},
                        store, queue)  # fmt: skip


async def test_the_example_waits_for_a_person_and_completes_with_the_answer_from_its_checkpoint():
    store, queue = MemoryWorkflowRuns(), ListQueue()
    runs = service(store, queue)

    run = await runs.start("support", "/handoff_to_specialist", caller="alice")
    await runs.run(queue.jobs.pop())
    waiting = await runs.read(run.id, caller="alice")
    [request] = waiting.pending
    checkpoints = len(store.saved[("alice", run.id)])

    await runs.respond(run.id, [(request.id, "my printer is on fire")], caller="alice")
    await runs.run(queue.jobs.pop())  # a new workflow instance: only the checkpoint carries the state
    done = await runs.read(run.id, caller="alice")

    assert waiting.status == "awaiting_input" and request.type == "HandoffAgentUserRequest"
    assert "handoff_to_specialist" in request.data["text"]
    assert checkpoints >= 2
    assert done.status == "completed" and done.pending == ()
    assert done.outputs[-1]["author"] == "specialist" and done.outputs[-1]["text"].endswith("my printer is on fire")


async def test_a_request_answered_once_is_a_conflict_the_second_time_and_an_unknown_id_too():
    store, queue = MemoryWorkflowRuns(), ListQueue()
    runs = service(store, queue)
    run = await runs.start("support", "/handoff_to_specialist", caller="alice")
    await runs.run(queue.jobs.pop())
    [request] = (await runs.read(run.id, caller="alice")).pending

    await runs.respond(run.id, [(request.id, "first")], caller="alice")
    with pytest.raises(WorkflowRequestConflictError):
        await runs.respond(run.id, [(request.id, "second")], caller="alice")
    with pytest.raises(WorkflowRequestConflictError):
        await runs.respond(run.id, [("no-such-request", "x")], caller="alice")

    assert len(queue.jobs) == 1  # the one answer's job, no other
    assert (await runs.read(run.id, caller="alice")).answers == {request.id: "first"}


async def test_another_callers_run_is_not_found():
    store, queue = MemoryWorkflowRuns(), ListQueue()
    runs = service(store, queue)
    run = await runs.start("support", "/handoff_to_specialist", caller="alice")

    with pytest.raises(WorkflowRunNotFoundError):
        await runs.read(run.id, caller="bob")
    with pytest.raises(WorkflowRunNotFoundError):
        await runs.respond(run.id, [("any", "x")], caller="bob")


async def test_two_requests_answered_one_at_a_time_keep_the_other_pending_until_it_is_answered():
    store, queue = MemoryWorkflowRuns(), ListQueue()
    modules = workflow_modules(offline_agents(), "tests.crash_workflows")
    runs = WorkflowRuns({n: m.build for n, m in modules.items()}, {}, store, queue)
    run = await runs.start("ask_two", "tea", caller="alice")
    await runs.run(queue.jobs.pop())
    first, second = (await runs.read(run.id, caller="alice")).pending

    await runs.respond(run.id, [(first.id, "yes")], caller="alice")
    await runs.run(queue.jobs.pop())
    halfway = await runs.read(run.id, caller="alice")
    await runs.respond(run.id, [(second.id, "no")], caller="alice")
    await runs.run(queue.jobs.pop())
    done = await runs.read(run.id, caller="alice")

    assert (first.data, second.data) == ("first about tea", "second about tea")
    assert halfway.status == "awaiting_input" and halfway.pending == (second,)
    assert done.status == "completed" and done.outputs == ("yes and no",)


async def test_answers_to_a_run_that_is_resuming_wait_until_it_pauses_again():
    store, queue = MemoryWorkflowRuns(), ListQueue()
    runs = service(store, queue)
    asked = (PendingRequest("r2", "Ask", None, "text"),)
    run = await store.create(WorkflowRun(f"wfrun-{uuid.uuid4().hex}", "alice", "support", "in_progress", pending=asked))

    with pytest.raises(WorkflowRequestConflictError) as raised:
        await runs.respond(run.id, [("r2", "later")], caller="alice")

    assert raised.value.retry_after is not None and queue.jobs == []
    assert (await runs.read(run.id, caller="alice")).pending == asked


class FailingOnce(MemoryWorkflowRuns):
    """Checkpoints whose first save (of those :meth:`fails` picks) fails as the store does when it is unavailable."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 1

    def fails(self, checkpoint: Any) -> bool:
        return True

    def checkpoints(self, run_id: str, user_id: str) -> Any:
        storage = super().checkpoints(run_id, user_id)
        save = storage.save

        async def failing(checkpoint: Any) -> str:
            if self.failures and self.fails(checkpoint):
                self.failures -= 1
                raise StoreUnavailableError("Cosmos DB is unavailable", retry_after=1)
            return await save(checkpoint)

        storage.save = failing  # type: ignore[method-assign]
        return storage


async def test_a_run_whose_checkpoint_cannot_be_saved_stops_for_the_queue_to_retry_and_the_retry_goes_on():
    store, queue = FailingOnce(), ListQueue()
    runs = service(store, queue)
    run = await runs.start("support", "/handoff_to_specialist", caller="alice")
    job = queue.jobs.pop()

    with pytest.raises(StoreUnavailableError):
        await runs.run(job)
    stopped = await runs.read(run.id, caller="alice")
    await runs.run(job)  # the queue's retry of the same message

    assert stopped.status == "in_progress" and stopped.error is None
    assert (await runs.read(run.id, caller="alice")).status == "awaiting_input"


async def test_a_waiting_run_cancelled_takes_no_answer_and_cannot_be_cancelled_again():
    store, queue = MemoryWorkflowRuns(), ListQueue()
    runs = service(store, queue)
    run = await runs.start("support", "/handoff_to_specialist", caller="alice")
    await runs.run(queue.jobs.pop())
    [request] = (await runs.read(run.id, caller="alice")).pending

    cancelled = await runs.cancel(run.id, caller="alice")

    assert cancelled.status == "cancelled" and cancelled.pending == ()
    with pytest.raises(WorkflowRequestConflictError):
        await runs.respond(run.id, [(request.id, "too late")], caller="alice")
    with pytest.raises(WorkflowRunFinishedError):
        await runs.cancel(run.id, caller="alice")
    assert queue.jobs == []


class CancelledMidRun(MemoryWorkflowRuns):
    """A cancel request arrives while the run's second checkpoint is being saved."""

    def __init__(self) -> None:
        super().__init__()
        self.runs_service: WorkflowRuns | None = None
        self.saves = 0

    def checkpoints(self, run_id: str, user_id: str) -> Any:
        storage = super().checkpoints(run_id, user_id)
        save = storage.save

        async def save_then_cancel(checkpoint: Any) -> str:
            saved = await save(checkpoint)
            self.saves += 1
            if self.saves == 2 and self.runs_service is not None:
                await self.runs_service.cancel(run_id, caller=user_id)
            return saved

        storage.save = save_then_cancel  # type: ignore[method-assign]
        return storage


async def test_a_running_run_cancelled_stops_at_its_next_checkpoint_and_stays_cancelled():
    store, queue = CancelledMidRun(), ListQueue()
    runs = service(store, queue)
    store.runs_service = runs
    run = await runs.start("support", "/handoff_to_specialist", caller="alice")

    await runs.run(queue.jobs.pop())

    assert store.saves == 2, "no superstep ran after the cancel"
    assert (await runs.read(run.id, caller="alice")).status == "cancelled"


@pytest.mark.parametrize(
    ("source", "cause"),
    [
        ("raise RuntimeError('broken')\n", "cannot be imported"),
        ("X = 1\n", "defines no create_workflow(agents)"),
        ("def create_workflow(agents):\n    return 42\n", "not an agent_framework.Workflow"),
    ],
)
def test_a_broken_workflow_module_is_a_start_up_error_naming_its_file(tmp_path: Path, source: str, cause: str):
    package = f"broken_workflows_{uuid.uuid4().hex[:8]}"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / "bad.py").write_text(textwrap.dedent(source))
    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(WorkflowLoadError) as raised:
            workflow_modules(offline_agents(), package)
    finally:
        sys.path.remove(str(tmp_path))

    assert "bad.py" in str(raised.value) and cause in str(raised.value)


async def test_a_broken_workflow_module_makes_every_workflow_request_a_503_naming_it_while_turns_still_run(
    tmp_path: Path, cosmos_env: dict[str, str]
):
    """The workflows are loaded at their first use, not at start-up (a cold start imports none of them): a broken
    module then fails what needs the workflows, naming its file, as a broken agent fails every request."""
    package = f"broken_workflows_{uuid.uuid4().hex[:8]}"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / "bad.py").write_text("X = 1\n")
    sys.path.insert(0, str(tmp_path))
    settings = load_settings({**cosmos_env, "MODEL_PROVIDER": "offline", "WORKFLOWS_PACKAGE": package})
    lazy = LazyRuntime(settings, telemetry=False)
    try:
        loaded = lazy.load_agents()
        functions = registered_functions(lazy)
        listing = await call(functions, "list_workflows_route", request("GET", "/api/workflows"))
        again = await call(functions, "list_workflows_route", request("GET", "/api/workflows"))
        turn = await post_message(functions, f"wf-broken-{uuid.uuid4().hex[:8]}", "hello")
    finally:
        sys.path.remove(str(tmp_path))
        await lazy.close()

    assert loaded is True
    for status, _, response in (listing, again):
        problem = assert_problem(status, response, 503)
        assert "bad.py" in problem["detail"] and "create_workflow" in problem["detail"]
    assert turn[0] == 200 and turn[1]["status"] == "completed"


# --- over real sockets: local hosts running the queue, the local Cosmos DB and storage emulator ------------------


def until(condition: Callable[[], Any], timeout: float = 120.0) -> Any:
    """Poll ``condition`` until it is truthy (bounded); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, "the awaited state was not reached in time"
        time.sleep(0.1)
    return value


def read_run(base: str, run_id: str, headers: dict[str, str] = ALICE) -> httpx.Response:
    return httpx.get(f"{base}/workflows/runs/{run_id}", headers=headers, timeout=60)


def run_in(base: str, run_id: str, *statuses: str) -> dict[str, Any]:
    return until(lambda: (body := read_run(base, run_id).json())["status"] in statuses and body)


@pytest.fixture
def env(cosmos_env, storage_env) -> dict[str, str]:
    return {**cosmos_env, **storage_env, "BACKGROUND_QUEUE": f"wf-{uuid.uuid4().hex[:12]}"}


def test_the_example_workflow_is_listed(env):
    with running_host(env, log_path=ARTIFACTS / "apphost-workflows-list.log") as host:
        listed = httpx.get(f"{host.base}/workflows", headers=ALICE, timeout=60)

    assert listed.status_code == 200
    assert [w["name"] for w in listed.json()["workflows"]] == ["support"]
    assert listed.json()["workflows"][0]["description"].startswith("A support desk")


def test_a_run_answered_from_another_process_after_a_restart_completes_and_belongs_to_its_caller(env):
    log = ARTIFACTS / "apphost-workflows-run.log"
    with running_host(env, log_path=log, queue_lease_seconds=3) as first:
        started = httpx.post(
            f"{first.base}/workflows/support/runs", json={"input": "/handoff_to_specialist"}, headers=ALICE, timeout=60
        )
        run_id = started.json()["id"]
        waiting = run_in(first.base, run_id, "awaiting_input", "failed", "completed")

    with running_host(env, log_path=log, queue_lease_seconds=3) as second:  # another process, after a restart
        [request] = waiting["pendingRequests"]
        strangers = read_run(second.base, run_id, BOB)
        answer = {"responses": [{"id": request["id"], "data": "the printer is on fire"}]}
        url = f"{second.base}/workflows/runs/{run_id}/responses"
        answered = httpx.post(url, json=answer, headers=ALICE, timeout=60)
        again = httpx.post(url, json=answer, headers=ALICE, timeout=60)
        stranger_answer = httpx.post(url, json=answer, headers=BOB, timeout=60)
        done = run_in(second.base, run_id, "completed", "failed")

    assert started.status_code == 202 and started.headers["Location"] == f"/api/workflows/runs/{run_id}"
    assert started.json()["status"] == "queued" and started.json()["workflow"] == "support"
    assert waiting["status"] == "awaiting_input" and request["type"] == "HandoffAgentUserRequest"
    assert strangers.status_code == 404 and strangers.headers["content-type"] == "application/problem+json"
    assert answered.status_code == 202 and answered.json()["pendingRequests"] == []
    assert again.status_code == 409 and stranger_answer.status_code == 404
    assert done["status"] == "completed" and done["pendingRequests"] == []
    assert done["outputs"][-1] == {"author": "specialist", "text": done["outputs"][-1]["text"]}
    assert done["outputs"][-1]["text"].endswith("the printer is on fire")


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/workflows/nope/runs", {"input": "x"}, 404),
        ("/workflows/support/runs", {"inpt": "x"}, 400),
        ("/workflows/runs/wfrun-0123/responses", {"responses": [{"id": "a", "data": "x"}]}, 404),
        (f"/workflows/runs/wfrun-{'0' * 32}/responses", {"responses": []}, 400),
        (f"/workflows/runs/wfrun-{'0' * 32}/responses", {"responses": [{"id": "a"}]}, 400),
        (f"/workflows/runs/wfrun-{'0' * 32}/responses", {"responses": [{"id": "a", "data": "x"}]}, 404),
        (f"/workflows/runs/wfrun-{'0' * 32}/cancel", {}, 404),
    ],
)
def test_bad_workflow_requests_are_problems_of_the_right_status(env, path: str, body: dict[str, Any], status: int):
    with running_host(env, log_path=ARTIFACTS / "apphost-workflows-bad.log") as host:
        answer = httpx.post(f"{host.base}{path}", json=body, headers=ALICE, timeout=60)

    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"


def test_a_waiting_run_is_cancelled_over_http_and_takes_no_answer_after(env):
    with running_host(env, log_path=ARTIFACTS / "apphost-workflows-cancel.log", queue_lease_seconds=3) as host:
        started = httpx.post(
            f"{host.base}/workflows/support/runs", json={"input": "/handoff_to_specialist"}, headers=ALICE, timeout=60
        )
        run_id = started.json()["id"]
        [request] = run_in(host.base, run_id, "awaiting_input", "failed", "completed")["pendingRequests"]
        by_stranger = httpx.post(f"{host.base}/workflows/runs/{run_id}/cancel", headers=BOB, timeout=60)
        cancelled = httpx.post(f"{host.base}/workflows/runs/{run_id}/cancel", headers=ALICE, timeout=60)
        again = httpx.post(f"{host.base}/workflows/runs/{run_id}/cancel", headers=ALICE, timeout=60)
        answer = {"responses": [{"id": request["id"], "data": "too late"}]}
        late = httpx.post(f"{host.base}/workflows/runs/{run_id}/responses", json=answer, headers=ALICE, timeout=60)

    assert by_stranger.status_code == 404
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert again.status_code == 409 and late.status_code == 409


def test_a_run_whose_process_is_killed_mid_superstep_resumes_from_its_checkpoint_without_repeating_one(
    env, tmp_path: Path
):
    ref = f"kill-{uuid.uuid4().hex[:6]}"
    crash = {**env, "WORKFLOWS_PACKAGE": "tests.crash_workflows", "LEDGER_DIR": str(tmp_path)}
    os.mkfifo(tmp_path / f"reached-{ref}")
    (tmp_path / f"armed-{ref}").touch()
    log = ARTIFACTS / "apphost-workflows-kill.log"
    with running_host(crash, log_path=log, queue_lease_seconds=3) as first:
        started = httpx.post(f"{first.base}/workflows/steps/runs", json={"input": ref}, headers=ALICE, timeout=60)
        with open(tmp_path / f"reached-{ref}", encoding="utf-8") as fifo:  # the second step started: kill it
            assert fifo.read() == "step started\n"
        first.process.kill()
        first.process.wait()
    with running_host(crash, log_path=log, queue_lease_seconds=3) as second:  # the queue's retry takes it up
        done = run_in(second.base, started.json()["id"], "completed", "failed")

    steps = [json.loads(line)["step"] for line in (tmp_path / "steps.jsonl").read_text().splitlines()]
    assert done["status"] == "completed" and done["outputs"] == [f"done {ref}"]
    assert steps == ["first", "second", "second", "third"]  # the first superstep ran once; the killed one again
