"""How workflow runs end when something goes wrong: the shipped example killed mid-run resumes from its checkpoint
without running a completed superstep again (over real sockets, the local Cosmos DB and storage emulator's
queue, a fake OpenAI model that holds one call in flight), a workflow's own failure ends its run ``failed``
naming only the exception's type, and a job the queue gave up on ends its run ``failed``."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from cosmos_history.adapters.memory_workflows import MemoryWorkflowRuns
from cosmos_history.domain.workflows import WorkflowRuns
from cosmos_history.workflows.discovery import workflow_modules
from devtools.devhost import running_host

from .conftest import ARTIFACTS
from .fake_openai import fake_openai_server, request_texts
from .test_workflows import ALICE, ListQueue, offline_agents, run_in

TRIAGE = "Read the case and hand it to the specialist"
SPECIALIST = "Answer the case, then ask the person"

BOOM = """
from agent_framework import Executor, WorkflowBuilder, WorkflowContext, handler


class Boom(Executor):
    @handler
    async def boom(self, text: str, ctx: WorkflowContext[str]) -> None:
        raise KeyError("the secret " + text)


def create_workflow(agents):
    return WorkflowBuilder(name="boom", start_executor=Boom(id="boom")).build()
"""


def runs_of(package: str, store: MemoryWorkflowRuns, queue: ListQueue) -> WorkflowRuns:
    modules = workflow_modules(offline_agents(), package)
    return WorkflowRuns({n: m.build for n, m in modules.items()}, {}, store, queue)


async def test_a_workflow_that_raises_ends_its_run_failed_naming_the_error_type_and_no_text(tmp_path: Path):
    package = f"boom_workflows_{uuid.uuid4().hex[:8]}"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / "boom.py").write_text(BOOM)
    sys.path.insert(0, str(tmp_path))
    try:
        store, queue = MemoryWorkflowRuns(), ListQueue()
        runs = runs_of(package, store, queue)
        run = await runs.start("boom", "case 42", caller="alice")
        await runs.run(queue.jobs.pop())
    finally:
        sys.path.remove(str(tmp_path))
    failed = await runs.read(run.id, caller="alice")

    assert failed.status == "failed" and failed.error is not None
    assert failed.error["type"] == "workflow-run-failed"
    assert "secret" not in json.dumps(failed.public_json())
    assert queue.jobs == []


async def test_a_run_whose_job_the_queue_gave_up_on_ends_failed_and_a_superseded_job_changes_nothing():
    store, queue = MemoryWorkflowRuns(), ListQueue()
    runs = runs_of("workflows", store, queue)
    given_up = await runs.start("support", "/handoff_to_specialist", caller="alice")
    await runs.give_up(queue.jobs.pop())
    waiting = await runs.start("support", "/handoff_to_specialist", caller="alice")
    job = queue.jobs.pop()
    await runs.run(job)
    await runs.give_up(job)  # a late poison message of a job the run is past

    ended = await runs.read(given_up.id, caller="alice")
    assert ended.status == "failed" and ended.error is not None and "every attempt" in ended.error["detail"]
    assert (await runs.read(waiting.id, caller="alice")).status == "awaiting_input"


@pytest.fixture
def env(cosmos_env, storage_env) -> dict[str, str]:
    return {**cosmos_env, **storage_env, "BACKGROUND_QUEUE": f"wfr-{uuid.uuid4().hex[:12]}", "MODEL_API": "chat"}


def calls_of(requests: list[dict[str, Any]], instructions: str) -> int:
    return sum(1 for body in requests if any(instructions in text for text in request_texts(body)))


def test_the_example_killed_mid_run_resumes_from_its_checkpoint_without_running_triage_again_and_completes(env):
    log = ARTIFACTS / "apphost-workflow-recovery.log"
    with fake_openai_server() as fake:
        fake.hold_at = 2  # the specialist's first call: triage's superstep is done and checkpointed by then
        model = {**env, **fake.app_settings()}
        try:
            with running_host(model, log_path=log, queue_lease_seconds=3) as first:
                body = {"input": "/handoff_to_specialist"}
                started = httpx.post(f"{first.base}/workflows/support/runs", json=body, headers=ALICE, timeout=60)
                assert fake.held.wait(120), "the specialist's call never came"
                first.process.kill()
                first.process.wait()
        finally:
            fake.released.set()
        run_id = started.json()["id"]
        with running_host(model, log_path=log, queue_lease_seconds=3) as second:  # the queue's retry, then an answer
            waiting = run_in(second.base, run_id, "awaiting_input", "failed", "completed")
            [request] = waiting["pendingRequests"]
            answer = {"responses": [{"id": request["id"], "data": "the printer is on fire"}]}
            answered = httpx.post(
                f"{second.base}/workflows/runs/{run_id}/responses", json=answer, headers=ALICE, timeout=60
            )
            done = run_in(second.base, run_id, "completed", "failed")
        requests = list(fake.requests)

    assert waiting["status"] == "awaiting_input" and answered.status_code == 202
    assert calls_of(requests, TRIAGE) == 1  # its superstep completed before the kill: not run again
    assert calls_of(requests, SPECIALIST) == 3  # the killed call, its retry, and the answer to the person
    assert done["status"] == "completed" and done["outputs"][-1]["author"] == "specialist"
    assert "the printer is on fire" in done["outputs"][-1]["text"]
