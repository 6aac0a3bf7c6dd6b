"""An agent's A2A agent card: who it is, what it can do (a skill per tool), where and how to call it.

The card names the JSON-RPC endpoint at the URL the caller reached the card through (behind a proxy: the
``X-Forwarded-Proto`` and ``X-Forwarded-Host`` it sets), so it is right locally, under any route prefix and
behind a custom domain. It declares the protocol version ``a2a-sdk`` speaks (1.0), streaming, no push
notifications, and how the app is guarded: a function key (``x-functions-key``) when the auth level needs one.
"""

from __future__ import annotations

from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    APIKeySecurityScheme,
    SecurityRequirement,
    SecurityScheme,
    StringList,
)
from a2a.utils.constants import AGENT_CARD_WELL_KNOWN_PATH, PROTOCOL_VERSION_CURRENT, TransportProtocol

from cosmos_history.agents.catalog import ServedAgent
from cosmos_history.http.calls import Call

CARD_VERSION = "1.0.0"
"""The version of the agents' interface this app serves (their own behaviour is versioned with the app)."""
TEXT = "text/plain"
FUNCTION_KEY = "functionKey"


def endpoint_url(call: Call) -> str:
    """The JSON-RPC endpoint's public URL: the card's own URL without ``/.well-known/agent-card.json``."""
    url = call.request.url
    scheme = _first(call.request.headers.get("x-forwarded-proto")) or url.scheme
    host = _first(call.request.headers.get("x-forwarded-host")) or call.request.headers.get("host") or url.netloc
    path = url.path.removesuffix(AGENT_CARD_WELL_KNOWN_PATH).rstrip("/")
    return f"{scheme}://{host}{path}"


def _first(value: str | None) -> str | None:
    """The first of a proxy header's comma-separated values (the client-facing hop)."""
    return value.split(",")[0].strip() or None if value else None


def agent_card(agent: ServedAgent, *, url: str, auth_level: str) -> AgentCard:
    """The card of ``agent`` served at ``url``."""
    card = AgentCard(
        name=agent.name,
        description=agent.description or f"The {agent.name} agent.",
        version=CARD_VERSION,
        supported_interfaces=[
            AgentInterface(
                url=url, protocol_binding=TransportProtocol.JSONRPC.value, protocol_version=PROTOCOL_VERSION_CURRENT
            )
        ],
        capabilities=AgentCapabilities(streaming=True, push_notifications=False),
        default_input_modes=[TEXT, "application/json"],
        default_output_modes=[TEXT],
        skills=skills(agent),
    )
    if auth_level in ("function", "admin"):
        card.security_schemes[FUNCTION_KEY].CopyFrom(
            SecurityScheme(
                api_key_security_scheme=APIKeySecurityScheme(
                    description="An Azure Functions key of this app.", location="header", name="x-functions-key"
                )
            )
        )
        card.security_requirements.append(SecurityRequirement(schemes={FUNCTION_KEY: StringList()}))
    return card


def skills(agent: ServedAgent) -> list[AgentSkill]:
    """A skill per tool of the agent (those that need a person's approval say so), or one for the agent itself."""
    found = [
        AgentSkill(
            id=tool.name,
            name=tool.name,
            description=tool.description or f"The {tool.name} tool.",
            tags=["tool", "approval-required"] if tool.approval_required else ["tool"],
        )
        for tool in agent.tools()
    ]
    return found or [
        AgentSkill(
            id=agent.name, name=agent.name, description=agent.description or "Conversation.", tags=["conversation"]
        )
    ]
