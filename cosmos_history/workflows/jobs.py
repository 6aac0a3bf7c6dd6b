"""The queue functions of workflow runs: the worker that runs (or resumes) a run, and the one that ends a run
whose job the queue gave up on (its poison queue) ``failed``.

Registered at start-up, so this module imports nothing of the workflow subsystem: the runtime builds it at the
first job or request that uses it (:attr:`cosmos_history.runtime.Runtime.workflows`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cosmos_history.settings import Settings
from cosmos_history.triggers import Job, QueueTrigger

if TYPE_CHECKING:
    from cosmos_history.domain.workflows import WorkflowRuns


def queue_name(settings: Settings) -> str:
    """The queue of workflow jobs, beside the background turns' (its poison queue: ``<name>-poison``)."""
    return f"{settings.queue.name}-wf"


def _runs(job: Job) -> WorkflowRuns:
    runs = job.runtime.workflows if job.runtime is not None else None
    if runs is None:
        raise RuntimeError("a workflow job reached an app without workflows")
    return runs


async def run_workflow(job: Job) -> None:
    """Run the job's workflow run until it ends or waits for input (the queue retries it after a crash)."""
    await _runs(job).run(job.body if isinstance(job.body, dict) else {})


async def fail_workflow(job: Job) -> None:
    """End the run of a job the queue gave up on: ``failed``, saying so."""
    await _runs(job).give_up(job.body if isinstance(job.body, dict) else {})


def workflow_triggers(settings: Settings) -> list[QueueTrigger]:
    name = queue_name(settings)
    return [
        QueueTrigger("workflow_run", name, run_workflow),
        QueueTrigger("workflow_run_poison", f"{name}-poison", fail_workflow),
    ]
