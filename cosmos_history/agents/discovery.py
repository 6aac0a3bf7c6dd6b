"""Finds the app's agents: every module of the top-level ``agents`` package that defines ``create_agent``,
and every ``<name>.yaml`` agent definition beside them (:mod:`cosmos_history.agents.declarative`); the modules
are found and loaded as workflows are (:mod:`cosmos_history.discovery`).

The module's (or file's) name is the agent's name, so adding a file adds an agent and there is no registry
to edit. Anything wrong with a module (it does not import, has no ``create_agent``, or that does not
return an ``agent_framework.Agent``) or a YAML file (not YAML, not an agent definition, a field the app
refuses) is a start-up error naming the file: a typo must never leave the app silently serving another agent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent_framework import Agent

from cosmos_history.discovery import NAME, find_package, made
from cosmos_history.domain.errors import SettingsError

AgentFactory = Callable[[Any], Agent]


@dataclass(frozen=True)
class AgentModule:
    """One agent module: its checked ``create_agent``, and its ``SUMMARY_PROMPT`` if it sets one (the prompt
    that summarises its long conversations)."""

    create: AgentFactory
    summary_prompt: str | None = None
    path: Path | None = None
    declarative: dict[str, Any] | None = None
    """A YAML agent's checked definition (its ``create`` is then unused: it needs the app's tools)."""


class AgentLoadError(SettingsError):
    """An agent module cannot serve; the message names its file and the cause."""


def agent_modules(package: str = "agents") -> dict[str, AgentModule]:
    """Every agent module in ``package``, by agent name (sorted)."""
    found = find_package(package, kind="agent", factory="create_agent(client)", error=AgentLoadError)
    factories: dict[str, AgentModule] = {}
    for module in found.modules:
        prompt = getattr(module.module, "SUMMARY_PROMPT", None)
        if prompt is not None and not isinstance(prompt, str):
            raise AgentLoadError(f"{module.path}: SUMMARY_PROMPT must be a string.")
        factories[module.name] = AgentModule(_checked(module.factory, module.path), prompt, module.path)
    factories.update(_yaml_agents(found.folder, factories))
    if not factories:
        raise AgentLoadError(f"The agents package {package!r} ({found.folder}) holds no agent module.")
    return factories


def _yaml_agents(folder: Path, modules: dict[str, AgentModule]) -> dict[str, AgentModule]:
    """The YAML agent definitions in ``folder``, checked (their module is imported only when there are some)."""
    files = sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and not p.name.startswith("_"))
    if not files:
        return {}
    from cosmos_history.agents.declarative import read_definition

    found: dict[str, AgentModule] = {}
    for path in files:
        if not NAME.fullmatch(path.stem):
            raise AgentLoadError(f"{path}: an agent's file name must be lower-case letters, digits, '-' or '_'.")
        if path.stem in modules or path.stem in found:
            raise AgentLoadError(f"{path}: another file already defines the agent {path.stem!r}.")
        found[path.stem] = AgentModule(_unbuilt, None, path, read_definition(path))
    return found


def _unbuilt(client: Any) -> Agent:
    raise AgentLoadError("A YAML agent is built by the catalog, with the app's tools.")


def _checked(create: Callable[[Any], Any], path: Path) -> AgentFactory:
    def factory(client: Any) -> Agent:
        return made(create, client, path=path, call="create_agent(client)", made_type=Agent, error=AgentLoadError)

    return factory
