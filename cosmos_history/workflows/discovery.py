"""Finds the app's workflows: every module of the top-level ``workflows`` package (``WORKFLOWS_PACKAGE``) that
defines ``create_workflow(agents)``.

As for agents, the module's name is the workflow's name and anything wrong with a module (it does not import,
has no ``create_workflow``, or that fails or returns no ``agent_framework.Workflow`` when called with the app's
agents) is a start-up error naming the file. An app without a ``workflows`` package has no workflows.
Each job builds a new instance (a workflow instance keeps state between its runs), so the factory is kept.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent_framework import Agent, Workflow

from cosmos_history.agents.discovery import AGENT_NAME, AgentLoadError


class WorkflowLoadError(AgentLoadError):
    """A workflow module cannot serve; the message names its file and the cause."""


@dataclass(frozen=True)
class WorkflowModule:
    """One workflow: its name, its description (the module's docstring's first line) and its factory."""

    name: str
    description: str
    path: Path
    agents: Mapping[str, Agent]
    create: Any

    def build(self) -> Workflow:
        """A new instance, checked."""
        try:
            workflow = self.create(self.agents)
        except Exception as error:
            raise WorkflowLoadError(f"{self.path}: create_workflow(agents) failed: {error!r}") from error
        if not isinstance(workflow, Workflow):
            raise WorkflowLoadError(
                f"{self.path}: create_workflow(agents) returned {type(workflow).__name__}, not an "
                "agent_framework.Workflow."
            )
        return workflow


def workflow_modules(agents: Mapping[str, Agent], package: str = "workflows") -> dict[str, WorkflowModule]:
    """Every workflow module of ``package`` by name (sorted), each built once to check it.

    Raises:
        WorkflowLoadError: a module is broken (the message names the file).
    """
    try:
        if importlib.util.find_spec(package) is None:
            return {}
    except (ImportError, ValueError):
        return {}
    try:
        root = importlib.import_module(package)
    except Exception as error:
        raise WorkflowLoadError(f"The workflows package {package!r} cannot be imported: {error!r}") from error
    found: dict[str, WorkflowModule] = {}
    for info in sorted(pkgutil.iter_modules(root.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        path = Path(root.__path__[0]) / f"{info.name}.py"
        if not AGENT_NAME.fullmatch(info.name):
            raise WorkflowLoadError(f"{path}: a workflow's module name must be lower-case letters, digits, '-' or '_'.")
        try:
            module = importlib.import_module(f"{package}.{info.name}")
        except Exception as error:
            raise WorkflowLoadError(f"{path}: cannot be imported: {error!r}") from error
        create = getattr(module, "create_workflow", None)
        if not callable(create):
            raise WorkflowLoadError(f"{path}: defines no create_workflow(agents) function.")
        doc = (module.__doc__ or "").strip().splitlines()
        entry = WorkflowModule(info.name, doc[0] if doc else "", path, agents, create)
        entry.build()
        found[info.name] = entry
    return found
