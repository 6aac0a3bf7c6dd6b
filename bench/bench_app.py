"""The project's own ``function_app`` served with the benchmark's model stand-in.

    python -m devtools.devhost --app bench.bench_app

Every route is exactly the project's. Only the agents differ: ``get_runtime`` builds the
runtime on the first request (on the host's event loop, as the async Cosmos client needs),
and here that build passes ``agents=build_agents(settings, BenchChatClient())``.
"""

from __future__ import annotations

import cosmos_history.runtime as runtime_module
from cosmos_history import Runtime, Settings, build_agents

from .model import BenchChatClient

_project_build_runtime = runtime_module.build_runtime


async def build_bench_runtime(settings: Settings, *, agents: object = None) -> Runtime:
    """The project's ``build_runtime`` with the stand-in model instead of the configured one."""
    return await _project_build_runtime(settings, agents=build_agents(settings, BenchChatClient()))


runtime_module.build_runtime = build_bench_runtime  # type: ignore[assignment]

from function_app import app  # noqa: E402 - after the runtime builder is in place

__all__ = ["app"]
