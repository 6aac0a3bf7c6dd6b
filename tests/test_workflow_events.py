"""The events of workflow runs: typed events stored in the run's partition with ids that only grow across its jobs,
streamed by ``GET /api/workflows/runs/{id}/events`` (replayed from a ``Last-Event-ID``, then followed from any
instance until the run ends or waits), and outputs kept with each checkpoint so a worker's death loses none.

The first tests run the domain over the memory adapters (the test hands each job to the worker); the others run
local hosts over real sockets on the local Cosmos DB and storage emulator, with the offline model."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from agent_framework import AgentResponseUpdate, Content, WorkflowEvent

from cosmos_history.adapters.memory_workflows import MemoryRunEvents, MemoryWorkflowRuns
from cosmos_history.domain.errors import StoreUnavailableError
from cosmos_history.domain.turn_records import EventBatch, StoredEvent
from cosmos_history.domain.workflow_events import RUN_EVENTS, RunEventsGoneError, RunJournal
from cosmos_history.domain.workflow_runs import WorkflowRun
from cosmos_history.domain.workflows import WorkflowRunNotFoundError, WorkflowRuns
from cosmos_history.workflows.discovery import workflow_modules
from devtools.devhost import running_host

from .conftest import ARTIFACTS
from .test_durable_turns_e2e import Event, sse
from .test_workflows import ALICE, BOB, CancelledMidRun, FailingOnce, ListQueue, offline_agents, run_in

# --- the domain, over the memory adapters ----------------------------------------------------------------------


def runs_of(package: str, store: MemoryWorkflowRuns, queue: ListQueue, events: MemoryRunEvents) -> WorkflowRuns:
    modules = workflow_modules(offline_agents(), package)
    return WorkflowRuns({n: m.build for n, m in modules.items()}, {}, store, queue, events, flush_seconds=60)


async def stored(runs: WorkflowRuns, run_id: str, after: int = 0) -> list[StoredEvent]:
    return [event async for event in await runs.follow(run_id, caller="alice", after=after)]


async def test_a_runs_events_are_typed_and_their_ids_grow_by_one_across_its_jobs():
    store, queue, events = MemoryWorkflowRuns(), ListQueue(), MemoryRunEvents()
    runs = runs_of("workflows", store, queue, events)
    run = await runs.start("support", "/handoff_to_specialist", caller="alice")
    await runs.run(queue.jobs.pop())
    first_job = await stored(runs, run.id)
    [request] = (await runs.read(run.id, caller="alice")).pending
    await runs.respond(run.id, [(request.id, "my printer is on fire")], caller="alice")
    await runs.run(queue.jobs.pop())
    every = await stored(runs, run.id)
    statuses = [e.data for e in every if e.name == "run_status"]

    assert [e.seq for e in every] == list(range(1, len(every) + 1))
    assert every[: len(first_job)] == first_job and {e.name for e in every} <= set(RUN_EVENTS)
    assert statuses == [{"status": "in_progress", "resumed": False}, {"status": "awaiting_input"},
                        {"status": "in_progress", "resumed": True}, {"status": "completed"}]  # fmt: skip
    assert [e.data for e in first_job if e.name == "request"] == [{"id": request.id, "type": request.type,
                                                                   "data": request.data}]  # fmt: skip
    outputs = [e.data["output"] for e in every if e.name == "output"]
    assert tuple(outputs) == (await runs.read(run.id, caller="alice")).outputs
    assert any(e.name == "step_completed" and e.data["executor"] == "specialist" and e.data["text"] for e in every)


async def test_a_job_numbers_its_events_after_the_batches_a_killed_job_stored():
    store, queue, events = MemoryWorkflowRuns(), ListQueue(), MemoryRunEvents()
    runs = runs_of("workflows", store, queue, events)
    run = await runs.start("support", "/handoff_to_specialist", caller="alice")
    await runs.run(queue.jobs.pop())
    waiting = await runs.read(run.id, caller="alice")
    batches, last = waiting.events
    # A job that died after storing a batch its run's record never heard of:
    await events.append(run.id, "alice", EventBatch(batches + 1, (StoredEvent(last + 1, "step_started", {}),)))
    await runs.respond(run.id, [(waiting.pending[0].id, "hello")], caller="alice")
    await runs.run(queue.jobs.pop())
    after = await stored(runs, run.id, after=last + 1)

    assert after[0].seq == last + 2 and after[0].data == {"status": "in_progress", "resumed": True}
    assert [e.seq for e in after] == list(range(last + 2, last + 2 + len(after)))


async def test_a_batch_number_another_job_of_the_run_took_meanwhile_moves_the_journal_past_it():
    events = MemoryRunEvents()
    run = WorkflowRun(f"wfrun-{uuid.uuid4().hex}", "alice", "support", "in_progress")
    journal = RunJournal(events, run, outputs=(), position=(0, 0), flush_seconds=60)
    journal.add("step_started", {"executor": "mine"})
    theirs = (StoredEvent(1, "step_started", {"executor": "theirs"}), StoredEvent(2, "step_completed", {}))
    await events.append(run.id, "alice", EventBatch(1, theirs))  # written after this journal found the log's end

    assert await journal.flush()
    assert events.batches[("alice", run.id, 1)].events == theirs
    assert events.batches[("alice", run.id, 2)].events == (StoredEvent(3, "step_started", {"executor": "mine"}),)
    assert journal.position == (2, 3)


def update(author: str, text: str) -> AgentResponseUpdate:
    return AgentResponseUpdate(
        contents=[Content.from_text(text)], role="assistant", author_name=author, message_id=author
    )


async def test_an_agents_streamed_updates_are_one_output_and_an_intermediate_agents_are_its_steps_text_only():
    run, events = WorkflowRun(f"wfrun-{uuid.uuid4().hex}", "alice", "w", "in_progress"), MemoryRunEvents()
    journal = RunJournal(events, run, outputs=("earlier",), position=(0, 0), flush_seconds=60)
    for event in (
        WorkflowEvent("output", update("writer", "Hel"), executor_id="writer"),
        WorkflowEvent("intermediate", update("critic", "Too "), executor_id="critic"),
        WorkflowEvent("output", update("writer", "lo"), executor_id="writer"),
        WorkflowEvent("intermediate", update("critic", "short"), executor_id="critic"),
        WorkflowEvent.executor_completed("critic"),
        WorkflowEvent.executor_completed("writer"),
    ):
        journal.read(event)
    await journal.flush()

    assert journal.outputs == ["earlier", {"author": "writer", "text": "Hello"}]
    assert [(e.name, e.data) for e in events.batches[("alice", run.id, 1)].events] == [
        ("step_completed", {"executor": "critic", "text": "Too short"}),
        ("output", {"executor": "writer", "output": {"author": "writer", "text": "Hello"}}),
        ("step_completed", {"executor": "writer", "text": "Hello"}),
    ]


async def test_a_strangers_run_has_no_events_for_them():
    store, queue, events = MemoryWorkflowRuns(), ListQueue(), MemoryRunEvents()
    runs = runs_of("workflows", store, queue, events)
    run = await runs.start("support", "/handoff_to_specialist", caller="alice")

    with pytest.raises(WorkflowRunNotFoundError):
        await runs.follow(run.id, caller="bob", after=0)


async def test_events_past_their_retention_are_gone_before_a_stream_and_end_one_that_meets_the_gap():
    store, queue, events = MemoryWorkflowRuns(), ListQueue(), MemoryRunEvents()
    runs = runs_of("workflows", store, queue, events)
    run = await runs.start("support", "/handoff_to_specialist", caller="alice")
    await runs.run(queue.jobs.pop())
    assert (await runs.read(run.id, caller="alice")).events[0] >= 2
    del events.batches[("alice", run.id, 2)]  # expired: Cosmos DB's ttl removed it
    replayed = await stored(runs, run.id)
    del events.batches[("alice", run.id, 1)]

    assert replayed[-1].name == "error" and replayed[-1].data["slug"] == "events-gone"
    assert replayed[-1].seq == replayed[-2].seq  # the last id the client has: no new id
    assert [e.seq for e in replayed[:-1]] == list(range(1, len(replayed)))
    with pytest.raises(RunEventsGoneError):
        await runs.follow(run.id, caller="alice", after=0)


async def test_a_run_cancelled_before_its_job_ran_logs_its_cancel_as_its_last_event():
    store, queue, events = MemoryWorkflowRuns(), ListQueue(), MemoryRunEvents()
    runs = runs_of("workflows", store, queue, events)
    run = await runs.start("support", "/handoff_to_specialist", caller="alice")
    await runs.cancel(run.id, caller="alice")

    await runs.run(queue.jobs.pop())  # the job finds nothing to do, and logs nothing

    assert await stored(runs, run.id) == [StoredEvent(1, "run_status", {"status": "cancelled"})]


async def test_a_run_cancelled_while_its_job_runs_logs_one_cancel_after_the_jobs_events():
    store, queue, events = CancelledMidRun(), ListQueue(), MemoryRunEvents()
    runs = runs_of("workflows", store, queue, events)
    store.runs_service = runs
    run = await runs.start("support", "/handoff_to_specialist", caller="alice")

    await runs.run(queue.jobs.pop())
    every = await stored(runs, run.id)

    assert [e.seq for e in every] == list(range(1, len(every) + 1))
    assert [e.data["status"] for e in every if e.name == "run_status"] == ["in_progress", "cancelled"]
    assert every[-1] == StoredEvent(len(every), "run_status", {"status": "cancelled"})


class DiesAfterSecondSuperstep(FailingOnce):
    """The checkpoint after the second superstep cannot be saved once: the job stops there, as one whose
    worker died after the second superstep yielded its output and before any checkpoint held it."""

    def fails(self, checkpoint: Any) -> bool:
        return checkpoint.iteration_count == 2


async def test_outputs_of_supersteps_before_the_last_checkpoint_survive_a_job_that_dies_and_none_repeats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("LEDGER_DIR", str(tmp_path))
    store, queue, events = DiesAfterSecondSuperstep(), ListQueue(), MemoryRunEvents()
    runs = runs_of("tests.crash_workflows", store, queue, events)
    run = await runs.start("gated", "r1", caller="alice")
    job = queue.jobs.pop()

    with pytest.raises(StoreUnavailableError):
        await runs.run(job)
    await runs.run(job)  # the queue's retry: resumes from the first superstep's checkpoint
    done = await runs.read(run.id, caller="alice")

    assert done.status == "completed"
    assert done.outputs == ("one r1", "two r1", "done r1")


# --- over real sockets ------------------------------------------------------------------------------------------


@pytest.fixture
def env(cosmos_env, storage_env) -> dict[str, str]:
    return {**cosmos_env, **storage_env, "BACKGROUND_QUEUE": f"wfe-{uuid.uuid4().hex[:12]}", "EVENTS_FLUSH_MS": "100",
            "EVENTS_POLL_MS": "100"}  # fmt: skip


def events_url(base: str, run_id: str) -> str:
    return f"{base}/workflows/runs/{run_id}/events"


def read_events(base: str, run_id: str, headers: dict[str, str] = ALICE, **params: Any) -> list[Event]:
    with httpx.stream("GET", events_url(base, run_id), headers=headers, params=params, timeout=120) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        return list(sse(response.iter_lines()))


def start(base: str, workflow: str, given: str) -> str:
    started = httpx.post(f"{base}/workflows/{workflow}/runs", json={"input": given}, headers=ALICE, timeout=60)
    assert started.status_code == 202, started.text
    return started.json()["id"]


def until_event(events: Iterator[Event], name: str, data: Any) -> list[Event]:
    """Events read from a live stream up to and including the first ``name`` event with ``data``."""
    seen = []
    for event in events:
        seen.append(event)
        if event[1] == name and event[2] == data:
            return seen
    raise AssertionError(f"the stream ended before {name} {data}")


def armed_gate(env: dict[str, str], ledger: Path, name: str) -> tuple[str, dict[str, str]]:
    """A ref for a run of ``gated`` whose middle step will wait at its gate, and the hosts' settings for it."""
    ref = f"{name}-{uuid.uuid4().hex[:6]}"
    os.mkfifo(ledger / f"reached-{ref}")
    os.mkfifo(ledger / f"gate-{ref}")
    (ledger / f"armed-{ref}").touch()
    return ref, {**env, "WORKFLOWS_PACKAGE": "tests.crash_workflows", "LEDGER_DIR": str(ledger)}


def test_a_client_resuming_with_its_last_event_id_gets_exactly_the_events_it_missed(env):
    with running_host(env, log_path=ARTIFACTS / "apphost-wfevents-resume.log", queue_lease_seconds=3) as host:
        run_id = start(host.base, "support", "/handoff_to_specialist")
        run_in(host.base, run_id, "awaiting_input", "failed")
        every = read_events(host.base, run_id)
        middle = every[len(every) // 2][0]
        by_header = read_events(host.base, run_id, {**ALICE, "Last-Event-ID": middle})
        by_query = read_events(host.base, run_id, after=middle)

    assert [int(i) for i, _, _ in every] == list(range(1, len(every) + 1))
    assert every[-1][1:] == ("run_status", {"status": "awaiting_input"})
    assert by_header == every[len(every) // 2 + 1 :] and by_query == by_header


def test_a_reader_on_another_process_follows_a_run_started_on_the_first_until_it_ends(env, tmp_path: Path):
    ref, gated = armed_gate(env, tmp_path, "follow")
    reader_env = {**gated, "BACKGROUND_QUEUE": f"wfe-other-{uuid.uuid4().hex[:8]}"}  # runs none of the first's jobs
    logs = ARTIFACTS / "apphost-wfevents-follow.log"
    with (
        running_host(gated, log_path=logs, queue_lease_seconds=3) as first,
        running_host(reader_env, log_path=logs) as second,
    ):
        run_id = start(first.base, "gated", ref)
        with open(tmp_path / f"reached-{ref}", encoding="utf-8") as fifo:  # the second step waits at its gate
            assert fifo.read() == "reached\n"
        with httpx.stream("GET", events_url(second.base, run_id), headers=ALICE, timeout=120) as response:
            events = sse(response.iter_lines())
            before = until_event(events, "output", {"executor": "second", "output": f"two {ref}"})
            with open(tmp_path / f"gate-{ref}", "w", encoding="utf-8") as gate:  # the run goes on only now
                gate.write("go\n")
            after = list(events)
        done = httpx.get(f"{second.base}/workflows/runs/{run_id}", headers=ALICE, timeout=60).json()

    assert done["status"] == "completed" and done["outputs"] == [f"one {ref}", f"two {ref}", f"done {ref}"]
    ids = [int(i) for i, _, _ in before + after]
    assert ids == list(range(1, len(ids) + 1))
    assert ("output", {"executor": "third", "output": f"done {ref}"}) in [(n, d) for _, n, d in after]
    assert after[-1][1:] == ("run_status", {"status": "completed"})


def test_a_run_killed_mid_superstep_keeps_each_output_once_and_its_event_ids_keep_growing(env, tmp_path: Path):
    ref, gated = armed_gate(env, tmp_path, "kill")
    logs = ARTIFACTS / "apphost-wfevents-kill.log"
    with running_host(gated, log_path=logs, queue_lease_seconds=3) as first:
        run_id = start(first.base, "gated", ref)
        with open(tmp_path / f"reached-{ref}", encoding="utf-8") as fifo:
            assert fifo.read() == "reached\n"
        with httpx.stream("GET", events_url(first.base, run_id), headers=ALICE, timeout=120) as response:
            # the second superstep's output is stored (no checkpoint holds it yet): a reader has seen its id
            seen = until_event(sse(response.iter_lines()), "output", {"executor": "second", "output": f"two {ref}"})
        first.process.kill()  # kill -9 while the second step waits at its gate
        first.process.wait()
    with running_host(gated, log_path=logs, queue_lease_seconds=3) as second:  # the queue's retry resumes it
        done = run_in(second.base, run_id, "completed", "failed")
        rest = read_events(second.base, run_id, {**ALICE, "Last-Event-ID": seen[-1][0]})
        every = read_events(second.base, run_id)

    assert done["status"] == "completed" and done["outputs"] == [f"one {ref}", f"two {ref}", f"done {ref}"]
    ids = [int(i) for i, _, _ in every]
    assert ids == sorted(set(ids)) and every[: len(seen)] == seen
    assert rest == every[len(seen) :] and int(rest[0][0]) > int(seen[-1][0])
    assert ("run_status", {"status": "in_progress", "resumed": True}) in [(n, d) for _, n, d in rest]
    assert rest[-1][1:] == ("run_status", {"status": "completed"})


def test_a_strangers_request_for_a_runs_events_is_a_404(env):
    with running_host(env, log_path=ARTIFACTS / "apphost-wfevents-stranger.log") as host:
        run_id = start(host.base, "support", "/handoff_to_specialist")
        stranger = httpx.get(events_url(host.base, run_id), headers=BOB, timeout=60)
        unknown = httpx.get(events_url(host.base, f"wfrun-{'0' * 32}"), headers=ALICE, timeout=60)

    assert stranger.status_code == 404 and stranger.headers["content-type"] == "application/problem+json"
    assert unknown.status_code == 404


def test_a_bad_last_event_id_or_after_is_a_400_problem(env):
    bad = [{"Last-Event-ID": value} for value in ("abc", "3:4", "-1", "1.5", "99999999999")]
    with running_host(env, log_path=ARTIFACTS / "apphost-wfevents-bad.log") as host:
        run_id = start(host.base, "support", "/handoff_to_specialist")
        answers = [httpx.get(events_url(host.base, run_id), headers={**ALICE, **h}, timeout=60) for h in bad]
        answers.append(httpx.get(events_url(host.base, run_id), params={"after": "x"}, headers=ALICE, timeout=60))

    assert [a.status_code for a in answers] == [400] * len(answers)
    assert {a.headers["content-type"] for a in answers} == {"application/problem+json"}
    assert all("Last-Event-ID" in a.json()["detail"] or "after" in a.json()["detail"] for a in answers)
