"""Composition of workflow runs: the discovered workflows, their store and their queue, for the runtime."""

from __future__ import annotations

from collections.abc import Mapping

from agent_framework import Agent

from cosmos_history.agents.catalog import Agents
from cosmos_history.domain.ports import JobQueue
from cosmos_history.domain.workflow_events import RunEventLog
from cosmos_history.domain.workflow_runs import WorkflowRunStore
from cosmos_history.domain.workflows import WorkflowRuns
from cosmos_history.settings import Settings
from cosmos_history.workflows.discovery import WorkflowModule, workflow_modules
from cosmos_history.workflows.jobs import queue_name

__all__ = ["agents_for_workflows", "discover", "queue_name", "workflow_runs"]


def agents_for_workflows(agents: Agents) -> Mapping[str, Agent]:
    """What ``create_workflow(agents)`` gets: each agent of the app (its local-mode instance) by name."""
    return {name: served.by_mode["local"] for name, served in agents.items()}


def discover(settings: Settings, agents: Agents) -> dict[str, WorkflowModule]:
    """The workflows of ``WORKFLOWS_PACKAGE``, checked (raises ``WorkflowLoadError`` naming a broken file)."""
    return workflow_modules(agents_for_workflows(agents), settings.workflows_package)


def workflow_runs(
    modules: Mapping[str, WorkflowModule],
    store: WorkflowRunStore,
    queue: JobQueue | None,
    events: RunEventLog | None = None,
    settings: Settings | None = None,
) -> WorkflowRuns:
    """The runs of ``modules``; with ``events`` their events are stored (flushed and polled as ``settings`` say)."""
    timing = (
        {"flush_seconds": settings.events_flush_ms / 1000, "poll_seconds": settings.events_poll_ms / 1000}
        if settings is not None
        else {}
    )
    return WorkflowRuns(
        {name: module.build for name, module in modules.items()},
        {name: module.description for name, module in modules.items()},
        store,
        queue,
        events,
        **timing,
    )
