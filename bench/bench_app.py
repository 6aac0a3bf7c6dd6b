"""The project's own route table served with the benchmark's model stand-in.

    python -m devtools.devhost --app bench.bench_app

Every route is exactly the project's (``function_app.ROUTES``). Only the agents differ: the runtime
is built on the first request (on the host's event loop, as the async Cosmos client needs) with
``agents=build_agents(settings, BenchChatClient())``. With ``BENCH_FLOOR=1`` the host measures the floor
(:mod:`bench.floor`: the app's per-message checks and the framework's copies switched off; never a setting).
"""

from __future__ import annotations

import os

from cosmos_history import Runtime, Settings, build_agents, build_runtime, create_app, load_settings
from cosmos_history.runtime import LazyRuntime
from function_app import ROUTES

from .floor import ENV as FLOOR_ENV
from .floor import switch_off_for_process
from .model import BenchChatClient


async def build_bench_runtime(settings: Settings) -> Runtime:
    """The project's runtime with the stand-in model instead of the configured one."""
    return await build_runtime(settings, agents=build_agents(settings, BenchChatClient()))


if os.environ.get(FLOOR_ENV) == "1":
    switch_off_for_process()

app = create_app(ROUTES, runtime=LazyRuntime(load_settings(), build=build_bench_runtime))

__all__ = ["app"]
