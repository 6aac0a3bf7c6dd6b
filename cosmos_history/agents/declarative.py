"""Agents declared in YAML (``agents/<name>.yaml``), in the framework's declarative format.

A file is a ``kind: Prompt`` agent definition of ``agent-framework-declarative``: ``name``, ``description``,
``instructions``, ``model.options`` (temperature, topP, maxOutputTokens, ...) and ``tools``. The framework's
``AgentFactory`` reads it, with the app's configured chat client, so a YAML agent needs no model settings
and no secrets of its own. What this module adds:

- **Tools by name**: a ``kind: function`` tool names one of the app's tools (a tool of a Python agent module,
  such as ``current_time`` or ``schedule_reminder``), which the agent then uses as it is, approval included;
  a ``kind: agent`` entry (this app's) names another agent of the app to delegate to (a sub-agent).
- **MCP servers**: a ``kind: mcp`` tool (``name``, ``url``, ``approvalMode``, ``allowedTools``) becomes the
  framework's ``MCPStreamableHTTPTool``, run by the app as a Python agent's MCP servers are (connected on
  first use). Servers that need credentials stay in Python modules, where they come from settings.
- **Refused at start-up**, naming the file and the field: ``model.id``/``provider``/``apiType``/``connection``
  (the app's model serves every agent), PowerFx expressions (values starting with ``=``: evaluating them
  needs a .NET runtime, which this app does not require), and tools of other kinds (hosted tools the
  app's model clients do not run).

``agent_framework_declarative`` is imported only when a YAML agent exists: it imports ``powerfx``, which
looks for a .NET runtime at import (and prints to stdout; that output is kept out of the app's).
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from agent_framework import Agent, MCPStreamableHTTPTool

from cosmos_history.agents.discovery import AgentLoadError

MODEL_FIELDS_REFUSED = ("id", "provider", "apiType", "connection")
TOOL_KINDS = ("function", "agent", "mcp")


class DeclarativeAgentError(AgentLoadError):
    """A YAML agent cannot serve; the message names its file and the problem."""


def read_definition(path: Path) -> dict[str, Any]:
    """The file's agent definition, checked for what this app refuses (before anything is built)."""
    try:
        definition = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise DeclarativeAgentError(f"{path}: is not a readable YAML file: {_first_line(error)}") from error
    if not isinstance(definition, dict):
        raise DeclarativeAgentError(f"{path}: must hold one agent definition (a mapping with kind: Prompt).")
    if str(definition.get("kind", "")).lower() != "prompt":
        raise DeclarativeAgentError(f"{path}: kind must be Prompt (the framework's declarative agent).")
    for field, value in _strings(definition):
        if value.startswith("="):
            raise DeclarativeAgentError(
                f"{path}: {field} is a PowerFx expression; write it as plain text (PowerFx needs a .NET runtime)."
            )
    model = definition.get("model")
    if model is not None and not isinstance(model, dict):
        raise DeclarativeAgentError(f"{path}: model must be a mapping (its options).")
    for field in MODEL_FIELDS_REFUSED:
        if model and field in model:
            raise DeclarativeAgentError(
                f"{path}: model.{field} is not allowed; the app's configured model (MODEL_PROVIDER) serves every agent."
            )
    tools = definition.get("tools") or []
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        raise DeclarativeAgentError(f"{path}: tools must be a list of tool definitions.")
    for index, tool in enumerate(tools):
        if tool.get("kind") not in TOOL_KINDS:
            raise DeclarativeAgentError(
                f"{path}: tools[{index}].kind must be one of {', '.join(TOOL_KINDS)}, not {tool.get('kind')!r}."
            )
        if not isinstance(tool.get("name"), str) or not tool["name"]:
            raise DeclarativeAgentError(f"{path}: tools[{index}] needs a name.")
    return definition


def create_declarative_agent(
    path: Path, definition: dict[str, Any], client: Any, tools: Mapping[str, Any], agents: set[str]
) -> Agent:
    """Build the agent of ``definition`` on ``client``; ``tools`` are the app's tools by name, ``agents`` its agents.

    Raises:
        DeclarativeAgentError: the framework refuses the definition, or it names a tool or agent the app lacks.
    """
    own = [_tool(path, index, entry, tools, agents) for index, entry in enumerate(definition.get("tools") or [])]
    rest = {key: value for key, value in definition.items() if key != "tools"}
    rest.setdefault("name", path.stem)
    try:
        with _quiet():
            from agent_framework_declarative import AgentFactory

            factory = AgentFactory(client=client, safe_mode=True, env_file_path=os.devnull)
            made = factory.create_agent_from_dict(rest)
    except Exception as error:
        raise DeclarativeAgentError(f"{path}: the framework refused the definition: {_first_line(error)}") from error
    options = {key: value for key, value in made.default_options.items() if key not in ("tools", "instructions")}
    return Agent(
        client=client,
        name=made.name,
        description=made.description,
        instructions=made.default_options.get("instructions"),
        default_options=options,  # type: ignore[arg-type]
        tools=own,
    )


def _tool(path: Path, index: int, entry: dict[str, Any], tools: Mapping[str, Any], agents: set[str]) -> Any:
    name = entry["name"]
    if entry["kind"] == "function":
        if name not in tools:
            known = ", ".join(sorted(tools)) or "none"
            raise DeclarativeAgentError(f"{path}: tools[{index}] names {name!r}, not a tool of the app ({known}).")
        return tools[name]
    if entry["kind"] == "agent":
        from cosmos_history.agents.delegate import delegate

        if name not in agents:
            raise DeclarativeAgentError(f"{path}: tools[{index}] delegates to {name!r}, not an agent of the app.")
        return delegate(name, description=entry.get("description"))
    return _mcp_server(path, index, entry)


def _mcp_server(path: Path, index: int, entry: dict[str, Any]) -> MCPStreamableHTTPTool:
    if entry.get("connection") is not None:
        raise DeclarativeAgentError(
            f"{path}: tools[{index}].connection is not allowed; an MCP server needing credentials belongs in a "
            "Python agent module, where they come from the app's settings."
        )
    url = entry.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise DeclarativeAgentError(f"{path}: tools[{index}].url must be the MCP server's http(s) URL.")
    allowed = entry.get("allowedTools")
    return MCPStreamableHTTPTool(
        name=entry["name"],
        url=url,
        description=entry.get("description") or entry.get("serverDescription"),
        approval_mode=_approval_mode(path, index, entry.get("approvalMode")),
        allowed_tools=list(allowed) if allowed else None,
        load_prompts=False,
    )


def _approval_mode(path: Path, index: int, mode: Any) -> Any:
    """The framework's declarative approval modes: ``always`` (the default here, as for Python agents'
    MCP servers), ``never``, or ``{kind: specify, alwaysRequireApprovalTools, neverRequireApprovalTools}``."""
    kind = mode if isinstance(mode, str) else (mode or {}).get("kind", "always")
    if kind == "always":
        return "always_require"
    if kind == "never":
        return "never_require"
    if kind == "specify" and isinstance(mode, dict):
        return {
            "always_require_approval": list(mode.get("alwaysRequireApprovalTools") or []),
            "never_require_approval": list(mode.get("neverRequireApprovalTools") or []),
        }
    raise DeclarativeAgentError(f"{path}: tools[{index}].approvalMode must be always, never or specify.")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The package's import prints (``powerfx``'s patch notice) and warns (experimental API) on every start."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _strings(value: Any, where: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield where or "(value)", value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, f"{where}[{i}]")


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
