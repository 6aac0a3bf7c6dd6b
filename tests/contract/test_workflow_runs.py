"""The workflow-run store's contract on both adapters: conditional writes, the caller's runs only, and the
framework's checkpoint storage protocol for one run (Cosmos DB through the real SDK)."""

from __future__ import annotations

import uuid

import pytest
from agent_framework import WorkflowCheckpoint

from cosmos_history import Runtime
from cosmos_history.adapters.memory_workflows import MemoryWorkflowRuns
from cosmos_history.domain.workflow_runs import PendingRequest, ToolCallNote, WorkflowRun, WorkflowRunStore


@pytest.fixture(params=["memory", "cosmos"])
def runs(request: pytest.FixtureRequest) -> WorkflowRunStore:
    if request.param == "memory":
        return MemoryWorkflowRuns()
    runtime: Runtime = request.getfixturevalue("runtime")
    assert runtime.workflows is not None
    return runtime.workflows.store


def new_run(user: str) -> WorkflowRun:
    return WorkflowRun(f"wfrun-{uuid.uuid4().hex}", user, "support", "queued", {"text": "hi"})


async def test_a_run_reads_back_as_written_for_its_caller_only(runs: WorkflowRunStore):
    run = await runs.create(new_run("alice"))
    waiting = await runs.replace(
        run.but(status="awaiting_input", pending=(PendingRequest("r1", "Ask", {"q": 1}, "text"),))
    )

    found = await runs.find(run.id, "alice")

    assert waiting is not None and found is not None
    assert found.status == "awaiting_input" and found.input == {"text": "hi"}
    assert found.pending == (PendingRequest("r1", "Ask", {"q": 1}, "text"),)
    assert await runs.find(run.id, "bob") is None


async def test_a_runs_tool_notes_read_back_as_written_and_clear(runs: WorkflowRunStore):
    run = await runs.create(new_run("alice"))
    started = ToolCallNote("call-1", "charge", "digest", "key")
    done = ToolCallNote("call-2", "charge", "digest2", "key2", True, {"contents": [{"type": "text", "text": "ok"}]})
    noted = await runs.replace(run.but(status="in_progress", tool_journal=(started, done)))
    found = await runs.find(run.id, "alice")
    assert noted is not None and found is not None
    cleared = await runs.replace(found.but(tool_journal=()))

    assert found.tool_journal == (started, done)
    assert cleared is not None and (await runs.find(run.id, "alice")).tool_journal == ()  # type: ignore[union-attr]


async def test_a_write_from_a_stale_read_is_refused(runs: WorkflowRunStore):
    run = await runs.create(new_run("alice"))
    assert await runs.replace(run.but(status="in_progress")) is not None

    assert await runs.replace(run.but(status="completed")) is None
    assert (await runs.find(run.id, "alice")).status == "in_progress"  # type: ignore[union-attr]


async def test_checkpoints_round_trip_and_the_latest_is_the_newest_of_the_run_and_caller(runs: WorkflowRunStore):
    run = await runs.create(new_run("alice"))
    mine, theirs = runs.checkpoints(run.id, "alice"), runs.checkpoints(run.id, "bob")
    first = WorkflowCheckpoint("support", "hash", state={"n": 1}, iteration_count=1, timestamp="2026-12-03T10:00:00")
    second = WorkflowCheckpoint("support", "hash", previous_checkpoint_id=first.checkpoint_id, state={"n": 2},
                                iteration_count=2, timestamp="2026-12-03T10:00:01")  # fmt: skip
    await mine.save(first)
    await mine.save(second)

    latest = await mine.get_latest(workflow_name="support")

    assert latest is not None and latest.checkpoint_id == second.checkpoint_id and latest.state == {"n": 2}
    assert (await mine.load(first.checkpoint_id)).iteration_count == 1
    assert await mine.list_checkpoint_ids(workflow_name="support") == [first.checkpoint_id, second.checkpoint_id]
    assert await theirs.get_latest(workflow_name="support") is None
    assert await mine.get_latest(workflow_name="other") is None
    assert await mine.delete(first.checkpoint_id) is True and await mine.delete(first.checkpoint_id) is False
