"""Builds the agent for each history mode from settings, once per process.

Two agents share one chat client. They differ only in who keeps the history:
``local`` pins an ``InMemoryHistoryProvider`` (its state is what the session
document stores) and tells the service not to store anything; ``service``
asks the Responses API to keep the thread and stores only its id. Pinning the
providers here matters: ``Agent.run`` otherwise adds a history provider to a
shared agent on first use, which would leak one mode's behaviour into the other.
"""

from __future__ import annotations

from collections.abc import Mapping

from agent_framework import Agent, BaseChatClient, InMemoryHistoryProvider, SupportsChatGetResponse

from cosmos_history.domain.errors import SettingsError
from cosmos_history.settings import HistoryMode, ModelSettings, Settings

Agents = Mapping[HistoryMode, Agent]


def build_chat_client(model: ModelSettings) -> SupportsChatGetResponse:
    """Create the chat client the settings name; imports each provider's SDK only when chosen."""
    if model.provider == "offline":
        from cosmos_history.models.offline import OfflineChatClient

        return OfflineChatClient()

    from agent_framework_openai import OpenAIChatClient, OpenAIChatCompletionClient

    client_type = OpenAIChatClient if model.api == "responses" else OpenAIChatCompletionClient
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


def build_agents(settings: Settings, client: SupportsChatGetResponse | BaseChatClient | None = None) -> Agents:
    """Return one agent per history mode the configured model API supports."""
    chat_client = client if client is not None else build_chat_client(settings.model)
    agents: dict[HistoryMode, Agent] = {
        "local": Agent(
            client=chat_client,
            name=settings.agent_name,
            instructions=settings.agent_instructions,
            context_providers=[InMemoryHistoryProvider()],
            # History lives in our document; the Responses service must not keep a copy.
            default_options={"store": False} if settings.model.api == "responses" else {},
        ),
    }
    if settings.model.api == "responses":
        agents["service"] = Agent(
            client=chat_client,
            name=settings.agent_name,
            instructions=settings.agent_instructions,
            default_options={"store": True},
        )
    return agents
