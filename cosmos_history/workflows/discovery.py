"""Finds the app's workflows: every module of the top-level ``workflows`` package (``WORKFLOWS_PACKAGE``) that
defines ``create_workflow(agents)``, found and loaded as agents are (:mod:`cosmos_history.discovery`).

As for agents, the module's name is the workflow's name and anything wrong with a module (it does not import,
has no ``create_workflow``, or that fails or returns no ``agent_framework.Workflow`` when called with the app's
agents) is a start-up error naming the file. An app without a ``workflows`` package has no workflows.
Each job builds a new instance (a workflow instance keeps state between its runs), so the factory is kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent_framework import Agent, Workflow

from cosmos_history.agents.discovery import AgentLoadError
from cosmos_history.discovery import find_package, installed, made


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
        call = "create_workflow(agents)"
        return made(self.create, self.agents, path=self.path, call=call, made_type=Workflow, error=WorkflowLoadError)


def workflow_modules(agents: Mapping[str, Agent], package: str = "workflows") -> dict[str, WorkflowModule]:
    """Every workflow module of ``package`` by name (sorted), each built once to check it.

    Raises:
        WorkflowLoadError: a module is broken (the message names the file).
    """
    if not installed(package):
        return {}
    found: dict[str, WorkflowModule] = {}
    package_found = find_package(package, kind="workflow", factory="create_workflow(agents)", error=WorkflowLoadError)
    for module in package_found.modules:
        entry = WorkflowModule(module.name, module.description, module.path, agents, module.factory)
        entry.build()
        found[module.name] = entry
    return found
