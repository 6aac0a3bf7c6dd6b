"""Tool approvals inside workflows: an agent's tool that needs approval pauses the run with a pending request
naming the tool and its arguments; ``{"approved": true|false}`` answers it (anything else is a 400 that changes
nothing); the run resumes from its checkpoint and an approved tool runs exactly once, even when the worker dies
between the tool's run and the next checkpoint; a rejected one never runs.

The workflow is ``tests/crash_workflows/approve.py``: its tool ``charge`` adds a line to ``charges.jsonl`` in a
folder the test owns. The first tests run the domain over the memory adapter (the test hands each job to the
worker); the last ones run local hosts over real sockets, the local Cosmos DB and storage emulator's queue."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from cosmos_history.adapters.memory_workflows import MemoryWorkflowRuns
from cosmos_history.domain.errors import BadRequestError, StoreUnavailableError
from cosmos_history.domain.tool_journal import UNKNOWN_RESULT
from cosmos_history.domain.workflow_requests import TOOL_APPROVAL
from cosmos_history.domain.workflows import WorkflowRuns
from cosmos_history.workflows.discovery import workflow_modules
from devtools.devhost import running_host

from .conftest import ARTIFACTS
from .crash_agents.ledger import lines
from .test_workflows import ALICE, ListQueue, offline_agents, run_in

ENV_PACKAGE = "tests.crash_workflows"


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LEDGER_DIR", str(tmp_path))
    return tmp_path


def charges(ledger: Path) -> list[dict[str, Any]]:
    return lines("charges.jsonl", ledger)


def service(store: MemoryWorkflowRuns, queue: ListQueue) -> WorkflowRuns:
    modules = workflow_modules(offline_agents(), ENV_PACKAGE)
    return WorkflowRuns({n: m.build for n, m in modules.items()}, {}, store, queue)


async def waiting_run(runs: WorkflowRuns, queue: ListQueue, ref: str) -> Any:
    run = await runs.start("approve", f'/charge {{"amount": 5, "ref": "{ref}"}}', caller="alice")
    await runs.run(queue.jobs.pop())
    return await runs.read(run.id, caller="alice")


async def test_a_tool_that_needs_approval_pauses_the_run_with_its_name_and_arguments(ledger: Path):
    store, queue = MemoryWorkflowRuns(), ListQueue()

    waiting = await waiting_run(service(store, queue), queue, "r1")

    assert waiting.status == "awaiting_input"
    [request] = waiting.public_json()["pendingRequests"]
    assert request["type"] == TOOL_APPROVAL
    assert request["data"] == {"name": "charge", "arguments": {"amount": 5, "ref": "r1"}}
    assert charges(ledger) == []


async def test_an_approved_tool_runs_once_and_the_run_completes_with_its_result(ledger: Path):
    store, queue = MemoryWorkflowRuns(), ListQueue()
    runs = service(store, queue)
    waiting = await waiting_run(runs, queue, "r2")

    await runs.respond(waiting.id, [(waiting.pending[0].id, {"approved": True})], caller="alice")
    await runs.run(queue.jobs.pop())
    done = await runs.read(waiting.id, caller="alice")

    assert done.status == "completed" and done.pending == () and done.tool_journal == ()
    assert done.outputs[-1]["text"].endswith("charge returned Charged 5.")
    assert charges(ledger) == [{"ref": "r2", "amount": 5}]


async def test_a_rejected_tool_never_runs_and_the_agent_hears_it_was_rejected(ledger: Path):
    store, queue = MemoryWorkflowRuns(), ListQueue()
    runs = service(store, queue)
    waiting = await waiting_run(runs, queue, "r3")

    await runs.respond(waiting.id, [(waiting.pending[0].id, {"approved": False})], caller="alice")
    await runs.run(queue.jobs.pop())
    done = await runs.read(waiting.id, caller="alice")

    assert done.status == "completed"
    assert "rejected" in done.outputs[-1]["text"]
    assert charges(ledger) == []


NOT_APPROVALS = ["yes", True, None, {}, {"approved": "yes"}, {"approved": 1}, {"approved": True, "x": 1}]


@pytest.mark.parametrize("data", NOT_APPROVALS)
async def test_an_approval_answered_with_anything_but_approved_true_or_false_is_refused_and_changes_nothing(
    ledger: Path, data: Any
):
    store, queue = MemoryWorkflowRuns(), ListQueue()
    runs = service(store, queue)
    waiting = await waiting_run(runs, queue, "r4")

    with pytest.raises(BadRequestError):
        await runs.respond(waiting.id, [(waiting.pending[0].id, data)], caller="alice")

    assert await runs.read(waiting.id, caller="alice") == waiting
    assert queue.jobs == []


async def test_the_shipped_example_asks_approval_for_a_refund_the_person_asks_for_and_completes_with_it():
    store, queue = MemoryWorkflowRuns(), ListQueue()
    modules = workflow_modules(offline_agents())
    runs = WorkflowRuns({n: m.build for n, m in modules.items()}, {}, store, queue)
    run = await runs.start("support", "/handoff_to_specialist", caller="alice")
    await runs.run(queue.jobs.pop())
    [reply] = (await runs.read(run.id, caller="alice")).pending

    await runs.respond(run.id, [(reply.id, '/refund {"amount": 20}')], caller="alice")
    await runs.run(queue.jobs.pop())
    [approval] = (await runs.read(run.id, caller="alice")).pending
    await runs.respond(run.id, [(approval.id, {"approved": True})], caller="alice")
    await runs.run(queue.jobs.pop())
    done = await runs.read(run.id, caller="alice")

    assert (approval.type, approval.data) == (TOOL_APPROVAL, {"name": "refund", "arguments": {"amount": 20}})
    assert done.status == "completed"
    assert done.outputs[-1]["author"] == "specialist"
    assert done.outputs[-1]["text"].endswith("refund returned Refund of 20 EUR issued.")


class CheckpointLostOnce(MemoryWorkflowRuns):
    """The store fails the checkpoint after the approved tool ran (the save that ends the resumed superstep),
    as a worker that dies between the tool's run and that checkpoint leaves the run."""

    def __init__(self, ledger: Path) -> None:
        super().__init__()
        self.ledger = ledger
        self.failed = 0

    def checkpoints(self, run_id: str, user_id: str) -> Any:
        storage = super().checkpoints(run_id, user_id)
        save = storage.save

        async def failing(checkpoint: Any) -> str:
            if charges(self.ledger) and not self.failed:
                self.failed += 1
                raise StoreUnavailableError("Cosmos DB is unavailable", retry_after=1)
            return await save(checkpoint)

        storage.save = failing  # type: ignore[method-assign]
        return storage


async def test_an_approved_tool_whose_next_checkpoint_is_lost_is_not_run_again_by_the_retry(ledger: Path):
    store, queue = CheckpointLostOnce(ledger), ListQueue()
    runs = service(store, queue)
    waiting = await waiting_run(runs, queue, "r5")
    await runs.respond(waiting.id, [(waiting.pending[0].id, {"approved": True})], caller="alice")
    job = queue.jobs.pop()

    with pytest.raises(StoreUnavailableError):
        await runs.run(job)
    noted = await runs.read(waiting.id, caller="alice")
    await runs.run(job)  # the queue's retry: from the checkpoint before the tool ran, the approval delivered again
    done = await runs.read(waiting.id, caller="alice")

    assert store.failed == 1
    assert [(n.name, n.done) for n in noted.tool_journal] == [("charge", True)]
    assert done.status == "completed" and done.tool_journal == ()
    assert done.outputs[-1]["text"].endswith("charge returned Charged 5.")  # the noted result, not a new run
    assert charges(ledger) == [{"ref": "r5", "amount": 5}]


class CancelledAsTheToolIsNoted(MemoryWorkflowRuns):
    """A cancel lands just as the approved tool's start is being noted (the note's write then finds a newer run)."""

    def __init__(self) -> None:
        super().__init__()
        self.runs_service: WorkflowRuns | None = None

    async def replace(self, run: Any) -> Any:
        if self.runs_service is not None and run.tool_journal and not run.tool_journal[-1].done:
            runs, self.runs_service = self.runs_service, None
            await runs.cancel(run.id, caller=run.user_id)
        return await super().replace(run)


async def test_a_run_cancelled_as_its_approved_tool_is_about_to_run_never_runs_it(ledger: Path):
    store, queue = CancelledAsTheToolIsNoted(), ListQueue()
    runs = service(store, queue)
    waiting = await waiting_run(runs, queue, "r6")
    await runs.respond(waiting.id, [(waiting.pending[0].id, {"approved": True})], caller="alice")
    store.runs_service = runs

    await runs.run(queue.jobs.pop())

    assert store.runs_service is None, "the cancel landed"
    assert (await runs.read(waiting.id, caller="alice")).status == "cancelled"
    assert charges(ledger) == []


# --- over real sockets: local hosts running the queue, the local Cosmos DB and storage emulator ------------------


@pytest.fixture
def env(cosmos_env, storage_env, ledger: Path) -> dict[str, str]:
    return {
        **cosmos_env,
        **storage_env,
        "BACKGROUND_QUEUE": f"wfa-{uuid.uuid4().hex[:12]}",
        "WORKFLOWS_PACKAGE": ENV_PACKAGE,
        "LEDGER_DIR": str(ledger),
    }


def start(base: str, ref: str) -> dict[str, Any]:
    body = {"input": f'/charge {{"amount": 5, "ref": "{ref}"}}'}
    started = httpx.post(f"{base}/workflows/approve/runs", json=body, headers=ALICE, timeout=60)
    assert started.status_code == 202, started.text
    return run_in(base, started.json()["id"], "awaiting_input", "failed", "completed")


def answer(base: str, run_id: str, request_id: str, data: Any) -> httpx.Response:
    body = {"responses": [{"id": request_id, "data": data}]}
    return httpx.post(f"{base}/workflows/runs/{run_id}/responses", json=body, headers=ALICE, timeout=60)


def test_an_approval_over_http_is_validated_rejected_once_and_the_tool_never_runs(env, ledger: Path):
    with running_host(env, log_path=ARTIFACTS / "apphost-workflow-approvals.log", queue_lease_seconds=3) as host:
        waiting = start(host.base, "h1")
        [request] = waiting["pendingRequests"]
        refused = [answer(host.base, waiting["id"], request["id"], data) for data in ("no", {"approved": "no"})]
        unchanged = httpx.get(f"{host.base}/workflows/runs/{waiting['id']}", headers=ALICE, timeout=60).json()
        rejected = answer(host.base, waiting["id"], request["id"], {"approved": False})
        again = answer(host.base, waiting["id"], request["id"], {"approved": True})
        unknown = answer(host.base, waiting["id"], "af-call-unknown", {"approved": True})
        done = run_in(host.base, waiting["id"], "completed", "failed")

    assert waiting["status"] == "awaiting_input" and request["type"] == TOOL_APPROVAL
    assert request["data"] == {"name": "charge", "arguments": {"amount": 5, "ref": "h1"}}
    assert [r.status_code for r in refused] == [400, 400]
    assert all(r.headers["content-type"] == "application/problem+json" for r in refused)
    assert unchanged == waiting
    assert rejected.status_code == 202 and again.status_code == 409 and unknown.status_code == 409
    assert done["status"] == "completed" and "rejected" in done["outputs"][-1]["text"]
    assert charges(ledger) == []


@pytest.mark.parametrize(
    ("point", "result"),
    [
        ("model", "charge returned Charged 5."),  # killed after the tool returned: its noted result is kept
        ("tool", UNKNOWN_RESULT),  # killed inside the tool, after its effect: not run again, outcome unknown
    ],
)
def test_an_approved_tool_runs_exactly_once_when_the_worker_is_killed_before_the_next_checkpoint(
    env, ledger: Path, point: str, result: str
):
    ref = f"k{uuid.uuid4().hex[:6]}"
    log = ARTIFACTS / "apphost-workflow-approvals-kill.log"
    os.mkfifo(ledger / f"reached-{point}-{ref}")
    with running_host(env, log_path=log, queue_lease_seconds=3) as first:
        waiting = start(first.base, ref)
        [request] = waiting["pendingRequests"]
        (ledger / f"armed-{point}-{ref}").touch()
        approved = answer(first.base, waiting["id"], request["id"], {"approved": True})
        with open(ledger / f"reached-{point}-{ref}", encoding="utf-8") as fifo:  # the resumed job stopped: kill it
            assert fifo.read() == "effect recorded\n"
        charged_before_the_kill = charges(ledger)
        first.process.kill()
        first.process.wait()
    with running_host(env, log_path=log, queue_lease_seconds=3) as second:  # the queue's retry takes the job up
        done = run_in(second.base, waiting["id"], "completed", "failed")

    assert approved.status_code == 202
    assert charged_before_the_kill == [{"ref": ref, "amount": 5}]
    assert done["status"] == "completed", done
    assert result in done["outputs"][-1]["text"]
    assert charges(ledger) == [{"ref": ref, "amount": 5}]
