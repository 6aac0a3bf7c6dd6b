"""Cosmos DB requests per steady plain turn, counted on the wire (#23 target 1).

The project's runtime talks to Cosmos DB through :class:`devtools.wire.CountingProxy`, which counts
every HTTP request the app's client puts on the network: not the SDK's telemetry, and not the
benchmark's own transport counter (which sits inside the SDK). A session of each history mode gets
two warm-up turns, then ``turns`` plain turns are counted.
"""

from __future__ import annotations

import uuid

from cosmos_history import build_agents, build_runtime, load_settings
from cosmos_history.domain.results import TurnRequest
from devtools.wire import CountingProxy

from .markdown import mark
from .model import BenchChatClient

MODES = ("local", "service")


async def measure_wire(env: dict[str, str], turns: int = 20) -> dict[str, float]:
    """Requests per steady plain turn, by history mode."""
    per_turn: dict[str, float] = {}
    async with CountingProxy(env["COSMOS_ENDPOINT"]) as proxy:
        settings = load_settings({**env, "COSMOS_ENDPOINT": proxy.endpoint})
        runtime = await build_runtime(settings, agents=build_agents(settings, BenchChatClient()))
        try:
            for mode in MODES:
                session, user = f"wire-{mode}-{uuid.uuid4().hex[:8]}", "bench-wire"
                for n in range(2):
                    await runtime.turns.run(TurnRequest(session, f"warm-up {n}", mode=mode), caller=user)
                mark = len(proxy.requests)
                for n in range(turns):
                    await runtime.turns.run(TurnRequest(session, f"counted {n}"), caller=user)
                per_turn[mode] = proxy.count_since(mark) / turns
        finally:
            await runtime.close()
    return per_turn


def wire_row(per_turn: dict[str, float]) -> list[str]:
    """The target's row: exactly two requests per steady plain turn in both modes."""
    measured = ", ".join(f"{mode} {per_turn[mode]:.2f}" for mode in MODES if mode in per_turn)
    met = bool(per_turn) and all(value == 2.0 for value in per_turn.values())
    return [
        "Cosmos DB requests per steady plain turn, lease included, counted on the wire (a counting proxy): 2.00",
        measured or "n/a",
        mark(met),
    ]
