"""Conversation sessions for Microsoft Agent Framework agents, stored in Azure Cosmos DB.

One document per session, written with optimistic concurrency; served by stateless Azure
Functions (``function_app.py``). The package root exports the few names an app or a host needs;
everything else lives in its subpackage (``domain``, ``adapters``, ``http``, ``models``, ``agents``).
Names are imported on first use: the worker pays only for what a cold start touches.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cosmos_history import precompiled

# First, before any module of the app defines a dataclass: their methods come precompiled in the package, and the
# start-up modules' bytecode in one file.
precompiled.install()
precompiled.serve_bytecode()

if TYPE_CHECKING:
    from cosmos_history.adapters.cosmos.sessions import CosmosSessionStore
    from cosmos_history.agents.catalog import build_agents
    from cosmos_history.app import Route, create_app
    from cosmos_history.domain.errors import (
        ProblemError,
        SessionConflictError,
        SessionNotFoundError,
        StoreUnavailableError,
    )
    from cosmos_history.domain.records import SessionRecord
    from cosmos_history.domain.results import TurnResult
    from cosmos_history.domain.service import run_turn, run_turn_stream
    from cosmos_history.runtime import Runtime, build_runtime
    from cosmos_history.settings import Settings, load_settings

_EXPORTS = {
    "CosmosSessionStore": "cosmos_history.adapters.cosmos.sessions",
    "ProblemError": "cosmos_history.domain.errors",
    "Route": "cosmos_history.app",
    "Runtime": "cosmos_history.runtime",
    "SessionConflictError": "cosmos_history.domain.errors",
    "SessionNotFoundError": "cosmos_history.domain.errors",
    "SessionRecord": "cosmos_history.domain.records",
    "Settings": "cosmos_history.settings",
    "StoreUnavailableError": "cosmos_history.domain.errors",
    "TurnResult": "cosmos_history.domain.results",
    "build_agents": "cosmos_history.agents.catalog",
    "build_runtime": "cosmos_history.runtime",
    "create_app": "cosmos_history.app",
    "load_settings": "cosmos_history.settings",
    "run_turn": "cosmos_history.domain.service",
    "run_turn_stream": "cosmos_history.domain.service",
}

__all__ = [
    "CosmosSessionStore",
    "ProblemError",
    "Route",
    "Runtime",
    "SessionConflictError",
    "SessionNotFoundError",
    "SessionRecord",
    "Settings",
    "StoreUnavailableError",
    "TurnResult",
    "__version__",
    "build_agents",
    "build_runtime",
    "create_app",
    "load_settings",
    "run_turn",
    "run_turn_stream",
]


def _version() -> str:
    """The installed distribution's version; looked up on first use (a cold start scans the installed packages
    for it otherwise, and the deployment package is not an installed distribution)."""
    import importlib.metadata

    try:
        return importlib.metadata.version("cosmos-history")
    except importlib.metadata.PackageNotFoundError:
        return "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        globals()[name] = version = _version()
        return version
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cosmos_history' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
