"""The project's own route table served with the benchmark's model stand-in.

    python -m devtools.devhost --app bench.bench_app

Every route is exactly the project's (``function_app.ROUTES``). Only the agents differ: the runtime
is built on the first request (on the host's event loop, as the async Cosmos client needs) with
``agents=build_agents(settings, BenchChatClient())``.
"""

from __future__ import annotations

from cosmos_history import Runtime, Settings, build_agents, build_runtime, create_app, load_settings
from cosmos_history.runtime import LazyRuntime
from function_app import ROUTES

from .model import BenchChatClient


async def build_bench_runtime(settings: Settings) -> Runtime:
    """The project's runtime with the stand-in model instead of the configured one."""
    return await build_runtime(settings, agents=build_agents(settings, BenchChatClient()))


app = create_app(ROUTES, runtime=LazyRuntime(load_settings(), build=build_bench_runtime))

__all__ = ["app"]
