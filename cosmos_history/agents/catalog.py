"""The agents the app serves, built once per process from the ``agents`` package and the settings.

Each agent module's ``create_agent(client)`` is called once per history mode, with the one chat
client the settings configure. The two instances differ only in who keeps the history: ``local``
pins an ``InMemoryHistoryProvider`` (its state is what the session document stores) and tells the
service not to store anything; ``service`` asks the Responses API to keep the thread and stores only
its id. Pinning the providers here matters: ``Agent.run`` otherwise adds a history provider to a
shared agent on first use, which would leak one mode's behaviour into the other.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent_framework import Agent, BaseChatClient, HistoryProvider, InMemoryHistoryProvider, SupportsChatGetResponse

from cosmos_history.agents.arguments import ArgumentErrors
from cosmos_history.agents.discovery import AgentLoadError, agent_modules
from cosmos_history.domain.compaction import InputBudget, RunningSummary, WindowHistory
from cosmos_history.domain.delegation import delegate_target
from cosmos_history.domain.errors import AgentNotFoundError, SettingsError, ValidationError
from cosmos_history.settings import CompactionSettings, HistoryMode, ModelSettings, Settings


def build_chat_client(model: ModelSettings) -> SupportsChatGetResponse:
    """Create the chat client the settings name; imports each provider's SDK only when chosen."""
    if model.provider == "offline":
        from cosmos_history.models.offline import OfflineChatClient

        return OfflineChatClient()

    from cosmos_history.models.openai_json import ChatCompletionsClient, ResponsesClient

    client_type = ResponsesClient if model.api == "responses" else ChatCompletionsClient
    if model.provider == "azure_openai":
        if model.azure_api_key:
            return client_type(
                model=model.azure_deployment, azure_endpoint=model.azure_endpoint, api_key=model.azure_api_key
            )
        from azure.identity.aio import DefaultAzureCredential

        return client_type(
            model=model.azure_deployment, azure_endpoint=model.azure_endpoint, credential=DefaultAzureCredential()
        )
    if model.provider == "openai":
        # Local OpenAI-compatible servers (Ollama, LM Studio, Foundry Local) accept any key.
        return client_type(
            model=model.openai_model, base_url=model.openai_base_url, api_key=model.openai_api_key or "not-needed"
        )
    raise SettingsError(f"unknown MODEL_PROVIDER {model.provider!r}")


@dataclass(frozen=True)
class ServedAgent:
    """One agent of the app: its name, and one instance per history mode the model API supports."""

    name: str
    by_mode: Mapping[HistoryMode, Agent]
    summary_prompt: str | None = None
    """The agent module's ``SUMMARY_PROMPT``, when it overrides the default summarization prompt."""

    @property
    def description(self) -> str:
        return self.by_mode["local"].description or ""

    def for_mode(self, mode: HistoryMode) -> Agent:
        """The instance for ``mode``, or a clear error when the configured model API cannot serve it."""
        try:
            return self.by_mode[mode]
        except KeyError:
            raise ValidationError("History mode 'service' needs MODEL_API=responses on this deployment.") from None

    def sampling(self) -> dict[str, float]:
        """The ``temperature`` and ``top_p`` the agent's own options set (a request's values override them)."""
        options = self.by_mode["local"].default_options
        return {
            name: float(options[name])
            for name in ("temperature", "top_p")
            if isinstance(options.get(name), (int, float)) and not isinstance(options.get(name), bool)
        }

    def tools(self) -> list[ToolInfo]:
        """The agent's tools; an MCP server's tools once they were loaded (its first use), the server before."""
        agent = self.by_mode["local"]
        infos = [ToolInfo.of(tool) for tool in agent.default_options.get("tools") or []]
        for server in agent.mcp_tools:
            loaded = server.functions if server.is_connected else []
            infos += [ToolInfo.of(tool) for tool in loaded] or [ToolInfo.of(server)]
        return infos


@dataclass(frozen=True)
class ToolInfo:
    """What ``GET /api/agents`` tells about a tool."""

    name: str
    description: str
    approval_required: bool
    parameters: dict[str, Any] | None = None
    """The JSON schema of its arguments, as the model is sent it; ``None`` for an MCP server not connected yet."""

    @classmethod
    def of(cls, tool: Any) -> ToolInfo:
        mode = getattr(tool, "approval_mode", None)
        name = getattr(tool, "name", None) or getattr(tool, "__name__", "tool")
        schema = getattr(tool, "parameters", None)
        parameters = schema() if callable(schema) else None
        return cls(
            str(name),
            str(getattr(tool, "description", "") or ""),
            mode == "always_require",
            dict(parameters) if isinstance(parameters, dict) else None,
        )


class Agents(Mapping[str, ServedAgent]):
    """The app's agents by name, and the one that serves requests naming none (``DEFAULT_AGENT``)."""

    def __init__(
        self, agents: Mapping[str, ServedAgent], default: str, compaction: CompactionSettings | None = None
    ) -> None:
        if default not in agents:
            raise SettingsError(f"DEFAULT_AGENT names {default!r}, but the agents are {', '.join(sorted(agents))}.")
        self._agents = dict(agents)
        self.default = default
        self.compaction = compaction or CompactionSettings()
        """How their local-mode histories are kept short (the same for every agent)."""

    def __getitem__(self, name: str) -> ServedAgent:
        return self._agents[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._agents)

    def __len__(self) -> int:
        return len(self._agents)

    def resolve(self, name: str | None) -> ServedAgent:
        """The agent called ``name`` (the default one for ``None``).

        Raises:
            AgentNotFoundError: no agent has that name (a 404; never a fallback to another agent).
        """
        found = self._agents.get(name if name is not None else self.default)
        if found is None:
            raise AgentNotFoundError(f"No agent is called {name!r}; GET /api/agents lists them.")
        return found


def build_agents(settings: Settings, client: SupportsChatGetResponse | BaseChatClient | None = None) -> Agents:
    """Every agent of ``AGENTS_PACKAGE``, each once per history mode the configured model API supports.

    Raises:
        AgentLoadError: an agent module is missing, broken or returns no agent (the message names the file).
    """
    chat_client = client if client is not None else build_chat_client(settings.model)
    invocation = getattr(chat_client, "function_invocation_configuration", None)
    if isinstance(invocation, dict):
        invocation["max_iterations"] = settings.max_tool_rounds  # bounds the tool rounds of one turn
    modes: list[HistoryMode] = ["local", "service"] if settings.model.api == "responses" else ["local"]
    modules = agent_modules(settings.agents_package)
    built = {name: {mode: m.create(chat_client) for mode in modes} for name, m in modules.items() if not m.declarative}
    if any(m.declarative for m in modules.values()):
        from cosmos_history.agents.declarative import create_declarative_agent

        tools = app_tools(built)
        for name, module in modules.items():
            if module.declarative is not None and module.path is not None:
                built[name] = {
                    mode: create_declarative_agent(module.path, module.declarative, chat_client, tools, set(modules))
                    for mode in modes
                }
    for name, by_mode in built.items():
        _check_delegations(modules[name].path, by_mode[modes[0]], set(modules))
    served = {
        name: ServedAgent(
            name, {mode: _for_mode(agent, mode, settings) for mode, agent in built[name].items()}, module.summary_prompt
        )
        for name, module in modules.items()
    }
    return Agents(served, settings.default_agent, settings.compaction)


def app_tools(built: Mapping[str, Mapping[HistoryMode, Agent]]) -> dict[str, Any]:
    """The tools of the Python agents by name, for YAML agents to use (the first agent's, for a shared name)."""
    tools: dict[str, Any] = {}
    for by_mode in built.values():
        for tool in by_mode["local"].default_options.get("tools") or []:
            name = getattr(tool, "name", None)
            if isinstance(name, str) and delegate_target(tool) is None:
                tools.setdefault(name, tool)
    return tools


def _check_delegations(path: Path | None, agent: Agent, agents: set[str]) -> None:
    """Every agent a delegation tool names must be one of the app's."""
    for tool in agent.default_options.get("tools") or []:
        target = delegate_target(tool)
        if target is not None and target not in agents:
            raise AgentLoadError(
                f"{path}: the tool {getattr(tool, 'name', '?')!r} delegates to {target!r}, which is not an agent of "
                f"the app ({', '.join(sorted(agents))})."
            )


def _for_mode(agent: Agent, mode: HistoryMode, settings: Settings) -> Agent:
    # First, as argument checks must come before any security middleware of the agent's own.
    agent.middleware = [ArgumentErrors(), *(agent.middleware or [])]
    if mode == "local":
        if not any(isinstance(p, HistoryProvider) for p in agent.context_providers):
            agent.context_providers.insert(0, WindowHistory())
        if settings.compaction.strategy != "none":
            # The summary comes first in what the model reads; the budget applies last, to everything.
            agent.context_providers.insert(0, RunningSummary())
            agent.context_providers.append(InputBudget(settings.compaction.max_input_tokens))
        if settings.model.api == "responses":
            agent.default_options["store"] = False  # history lives in our document; the service keeps no copy
    else:
        agent.context_providers[:] = [p for p in agent.context_providers if not isinstance(p, InMemoryHistoryProvider)]
        agent.default_options["store"] = True
    return agent
