"""Finds the app's agents: every module of the top-level ``agents`` package that defines ``create_agent``.

The module's name is the agent's name, so adding a file adds an agent and there is no registry to
edit. Anything wrong with a module (it does not import, has no ``create_agent``, or that does not
return an ``agent_framework.Agent``) is a start-up error naming the file: a typo must never leave the
app silently serving another agent.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from agent_framework import Agent

from cosmos_history.domain.errors import SettingsError

AGENT_NAME = re.compile(r"[a-z0-9_-]{1,64}")

AgentFactory = Callable[[Any], Agent]


@dataclass(frozen=True)
class AgentModule:
    """One agent module: its checked ``create_agent``, and its ``SUMMARY_PROMPT`` if it sets one (the prompt
    that summarises its long conversations)."""

    create: AgentFactory
    summary_prompt: str | None = None


class AgentLoadError(SettingsError):
    """An agent module cannot serve; the message names its file and the cause."""


def agent_modules(package: str = "agents") -> dict[str, AgentModule]:
    """Every agent module in ``package``, by agent name (sorted)."""
    try:
        root = importlib.import_module(package)
    except Exception as error:
        raise AgentLoadError(f"The agents package {package!r} cannot be imported: {error!r}") from error
    factories: dict[str, AgentModule] = {}
    for info in sorted(pkgutil.iter_modules(root.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        path = Path(root.__path__[0]) / f"{info.name}.py"
        if not AGENT_NAME.fullmatch(info.name):
            raise AgentLoadError(f"{path}: an agent's module name must be lower-case letters, digits, '-' or '_'.")
        module = _import(f"{package}.{info.name}", path)
        create = getattr(module, "create_agent", None)
        if not callable(create):
            raise AgentLoadError(f"{path}: defines no create_agent(client) function.")
        prompt = getattr(module, "SUMMARY_PROMPT", None)
        if prompt is not None and not isinstance(prompt, str):
            raise AgentLoadError(f"{path}: SUMMARY_PROMPT must be a string.")
        factories[info.name] = AgentModule(_checked(create, path), prompt)
    if not factories:
        raise AgentLoadError(f"The agents package {package!r} ({root.__path__[0]}) holds no agent module.")
    return factories


def _import(name: str, path: Path) -> ModuleType:
    try:
        return importlib.import_module(name)
    except Exception as error:
        raise AgentLoadError(f"{path}: cannot be imported: {error!r}") from error


def _checked(create: Callable[[Any], Any], path: Path) -> AgentFactory:
    def factory(client: Any) -> Agent:
        try:
            agent = create(client)
        except Exception as error:
            raise AgentLoadError(f"{path}: create_agent(client) failed: {error!r}") from error
        if not isinstance(agent, Agent):
            raise AgentLoadError(
                f"{path}: create_agent(client) returned {type(agent).__name__}, not an agent_framework.Agent."
            )
        return agent

    return factory
