"""What one worker process builds once and reuses for every invocation.

Settings are read at import time (bad settings stop the app at start-up). The
Cosmos client, container and agents are built at the first request, on the
worker's running event loop, because the async Cosmos client binds to that loop.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass

from azure.cosmos.aio import ContainerProxy, CosmosClient

from cosmos_history.adapters.cosmos.client import create_client, ensure_container, store_errors
from cosmos_history.adapters.cosmos.idempotency import IdempotencyRecords
from cosmos_history.adapters.cosmos.lease import TurnLease
from cosmos_history.adapters.cosmos.sessions import CosmosSessionStore
from cosmos_history.agents.catalog import Agents, build_agents
from cosmos_history.domain.turn import NO_GUARDS, TurnGuards
from cosmos_history.settings import Settings, load_settings
from cosmos_history.telemetry import configure_telemetry


@dataclass
class Runtime:
    settings: Settings
    store: CosmosSessionStore
    agents: Agents
    guards: TurnGuards = NO_GUARDS
    cosmos_client: CosmosClient | None = None
    """Set when the runtime built the client itself, and so must close it."""

    async def close(self) -> None:
        if self.cosmos_client is not None:
            await self.cosmos_client.close()


_runtime: Runtime | None = None
_lock: asyncio.Lock | None = None


@functools.cache
def current_settings() -> Settings:
    """The process's settings, read from the environment once."""
    return load_settings()


async def get_runtime() -> Runtime:
    """The process-wide runtime, built on first use."""
    global _runtime, _lock
    if _runtime is not None:
        return _runtime
    if _lock is None:
        _lock = asyncio.Lock()
    async with _lock:
        if _runtime is None:
            configure_telemetry(current_settings().telemetry)
            _runtime = await build_runtime(current_settings())
    return _runtime


async def build_runtime(
    settings: Settings, *, agents: Agents | None = None, client: CosmosClient | None = None
) -> Runtime:
    """Connect to Cosmos DB (creating the container when allowed) and build the agents.

    A ``client`` passed in stays the caller's to close; one built here is closed by the runtime.
    """
    agents = agents if agents is not None else build_agents(settings)
    owned = client is None
    cosmos = create_client(settings.cosmos) if client is None else client
    try:
        with store_errors():
            container = await ensure_container(cosmos, settings.cosmos)
    except BaseException:
        if owned:
            await cosmos.close()
        raise
    store, guards = session_services(container, settings)
    return Runtime(settings, store, agents, guards, cosmos_client=cosmos if owned else None)


def session_services(container: ContainerProxy, settings: Settings) -> tuple[CosmosSessionStore, TurnGuards]:
    """The store and turn guards over one container, configured from settings."""
    ttl = settings.session_ttl_seconds
    store = CosmosSessionStore(
        container,
        default_mode=settings.history_mode,
        ttl_seconds=ttl,
        max_item_bytes=settings.max_session_bytes,
        max_history_messages=settings.max_history_messages,
    )
    guards = TurnGuards(
        lease=TurnLease(container, seconds=settings.turn_lease_seconds, ttl_seconds=ttl),
        replays=IdempotencyRecords(container, ttl_seconds=settings.idempotency_ttl_seconds),
        model_timeout_seconds=settings.turn_timeout_seconds,
    )
    return store, guards


def set_runtime(runtime: Runtime | None) -> Runtime | None:
    """Install a runtime built elsewhere (tests, custom hosts); returns the one it replaced."""
    global _runtime
    previous, _runtime = _runtime, runtime
    return previous


async def close_runtime() -> None:
    """Close what the process-wide runtime opened (for hosts that shut down cleanly)."""
    runtime = set_runtime(None)
    if runtime is not None:
        await runtime.close()
