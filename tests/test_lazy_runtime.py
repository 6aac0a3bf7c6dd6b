"""What a cold start leaves for first use: the subsystems a plain turn never touches (workflow runs, background
turns) are neither imported by ``import function_app`` nor built with the runtime, and are built once when first
used (bench/optimisations.md, #23 target 4)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from cosmos_history.adapters.memory import MemoryDatabase, MemorySessions, MemoryTurnLog
from cosmos_history.agents.catalog import Agents
from cosmos_history.runtime import Runtime
from cosmos_history.settings import load_settings

REPO = Path(__file__).resolve().parents[1]

DEFERRED = (
    "cosmos_history.domain.workflows",
    "cosmos_history.domain.workflow_runs",
    "cosmos_history.domain.workflow_events",
    "cosmos_history.domain.workflow_requests",
    "cosmos_history.domain.workflow_tool_journal",
    "cosmos_history.adapters.cosmos.workflows",
    "cosmos_history.adapters.cosmos.workflow_events",
    "cosmos_history.workflows.service",
    "cosmos_history.workflows.discovery",
    "cosmos_history.http.workflows",
    "cosmos_history.domain.background",
    "workflows",
    "agent_framework_orchestrations",
)
"""Modules the first plain turn does not need, which a cold start therefore does not import."""


def cold_import_modules(env: dict[str, str] | None = None) -> list[str]:
    """The modules a fresh ``import function_app`` (offline model, no telemetry) loads, in load order."""
    unset = ("PYTHONPATH", "MODEL_", "MCP_", "APPLICATIONINSIGHTS_", "WORKFLOWS_")
    base = {k: v for k, v in os.environ.items() if not k.startswith(unset)} | {"MODEL_PROVIDER": "offline"}
    done = subprocess.run(
        [sys.executable, "-c", "import sys, function_app; print(' '.join(sys.modules))"],
        cwd=REPO,
        env=base | (env or {}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_a_cold_import_loads_neither_the_workflow_subsystem_nor_the_background_turns() -> None:
    loaded = cold_import_modules()

    assert "cosmos_history.agents.catalog" in loaded and "cosmos_history.workflows.jobs" in loaded
    assert [m for m in loaded if any(m == d or m.startswith(d + ".") for d in DEFERRED)] == []


class CountingBuilder:
    """A workflow builder that counts its calls (what the runtime builds on first use)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> Any:
        self.calls += 1
        return object()


def runtime_of(agents: Agents, **kwargs: Any) -> Runtime:
    return Runtime(load_settings({}), MemorySessions(user_id="alice"), agents, **kwargs)


def test_the_workflows_are_built_at_their_first_use_and_only_once(memory_agents: Agents) -> None:
    builder = CountingBuilder()
    runtime = runtime_of(memory_agents, build_workflows=builder)

    assert builder.calls == 0
    first = runtime.workflows
    assert runtime.workflows is first and builder.calls == 1


def test_a_runtime_built_without_workflows_has_none(memory_agents: Agents) -> None:
    assert runtime_of(memory_agents).workflows is None


class Queue:
    async def enqueue(self, job: dict[str, Any], *, delay_seconds: int = 0) -> None:
        """Never called here."""


def test_background_turns_are_built_at_their_first_use_from_the_queue_and_the_turn_log(memory_agents: Agents) -> None:
    runtime = runtime_of(memory_agents, turn_log=MemoryTurnLog(MemoryDatabase()), jobs=Queue())

    background = runtime.background
    assert background is not None and runtime.background is background
    assert runtime_of(memory_agents, turn_log=MemoryTurnLog(MemoryDatabase())).background is None  # no queue
    assert runtime_of(memory_agents, jobs=Queue()).background is None  # no turn log


def test_the_collector_paused_for_the_import_is_back_on_and_left_little_garbage() -> None:
    # function_app.py pauses the garbage collector while the app imports, then freezes what start-up built.
    # Unfrozen again here only to count the garbage the freeze kept (what a collection would have freed).
    script = "import gc, function_app; print(gc.isenabled(), gc.get_freeze_count(), gc.unfreeze(), gc.collect())"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"MODEL_PROVIDER": "offline"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    enabled, frozen, _, garbage = done.stdout.split()[-4:]

    assert enabled == "True" and int(frozen) > 10_000
    assert int(garbage) < 5_000  # kept frozen for the worker's life: the pause's price (839 objects when written)
