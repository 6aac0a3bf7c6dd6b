"""Durable turns: what storing a streamed turn's events costs, and how fast a resumed stream answers.

``python -m bench.durable`` runs it alone (about a minute; prints a markdown section); ``python -m bench``
adds the section to the report. Every request the app sends is counted at the SDK's transport
(:mod:`bench.counting`); request units are estimated from sizes on the local Cosmos DB.

- **Extra writes and RU per streamed turn**: the same turn (the stand-in's 1 KB reply streamed word by word
  over about three seconds, as a model writes it) plain, and streamed with the events flushed every 1,000 ms
  (the default) and every 250 ms.
- **Resume latency**: a second runtime on the same database (another instance) replays a finished turn's
  events, and follows a running one: from the live ``done`` to the follower's.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from agent_framework import (
    BaseChatClient,
    ChatResponse,
    ChatResponseUpdate,
    Content,
    FunctionInvocationLayer,
    Message,
    ResponseStream,
)

from cosmos_history import Runtime, build_agents, build_runtime, load_settings
from cosmos_history.domain.results import TurnRequest
from cosmos_history.domain.streaming import TurnStream

from .counting import CountingTransport, RequestCounter
from .hosts import BenchEnv, bench_cosmos
from .markdown import table
from .model import REPLY

STREAM_SECONDS = 3.0
"""How long the stand-in takes to write its reply when streamed."""
SAMPLES = 10


class PacedChatClient(FunctionInvocationLayer[Any], BaseChatClient[Any]):
    """Streams the stand-in's reply a word at a time over ``seconds``, as a model writes it."""

    def __init__(self, seconds: float = STREAM_SECONDS) -> None:
        super().__init__()
        self.words = REPLY.split(" ")
        self.seconds = seconds

    def _inner_get_response(
        self, *, messages: Sequence[Message], stream: bool, options: Mapping[str, Any], **kwargs: Any
    ) -> Awaitable[ChatResponse] | ResponseStream[ChatResponseUpdate, ChatResponse]:
        if stream:
            return self._build_response_stream(self._stream())
        return self._respond()

    async def _respond(self) -> ChatResponse:
        return ChatResponse(messages=[Message(role="assistant", contents=[REPLY])], model="paced")

    async def _stream(self) -> AsyncIterator[ChatResponseUpdate]:
        pause = self.seconds / len(self.words)
        for index, word in enumerate(self.words):
            await asyncio.sleep(pause)
            text = word if index == len(self.words) - 1 else word + " "
            yield ChatResponseUpdate(role="assistant", contents=[Content.from_text(text)], model="paced")


@dataclass(frozen=True)
class CostRow:
    label: str
    requests: float
    writes: float
    ru: float


@asynccontextmanager
async def counted_runtime(
    bench: BenchEnv, counter: RequestCounter, flush_ms: int, poll_ms: int = 500, seconds: float = STREAM_SECONDS
) -> AsyncIterator[Runtime]:
    settings = load_settings({**bench.env, "EVENTS_FLUSH_MS": str(flush_ms), "EVENTS_POLL_MS": str(poll_ms)})
    with counter.pause():
        runtime = await build_runtime(
            settings, agents=build_agents(settings, PacedChatClient(seconds)), transport=CountingTransport(counter)
        )
    try:
        yield runtime
    finally:
        await runtime.close()


async def drained(stream: TurnStream) -> None:
    async for _ in stream.events():
        pass
    await stream.result()


async def turn_cost(bench: BenchEnv, flush_ms: int | None, samples: int, seconds: float = STREAM_SECONDS) -> CostRow:
    """The mean Cosmos traffic of one steady-state turn (the session's second and later turns)."""
    counter = RequestCounter(real_charges=bench.real_account)
    async with counted_runtime(bench, counter, flush_ms or 1000, seconds=seconds) as runtime:
        user, totals = f"bench-{uuid.uuid4().hex[:6]}", []
        session = f"durable-{uuid.uuid4().hex[:8]}"
        await runtime.turns.run(TurnRequest(session, "warm up"), caller=user)
        for index in range(samples):
            before = counter.snapshot()
            request = TurnRequest(session, f"question {index}")
            if flush_ms is None:
                await runtime.turns.run(request, caller=user)
            else:
                await drained(await runtime.turns.stream(request, caller=user))
            totals.append(counter.since(before))
    label = "plain" if flush_ms is None else f"streamed, EVENTS_FLUSH_MS={flush_ms}"
    writes = [sum(t.operations[op] for op in ("create", "replace", "upsert", "delete", "batch")) for t in totals]
    return CostRow(
        label,
        statistics.mean(t.requests for t in totals),
        statistics.mean(writes),
        statistics.mean(t.ru for t in totals),
    )


async def resume_latency(bench: BenchEnv, samples: int) -> tuple[list[float], list[float]]:
    """Milliseconds to replay a finished turn whole on another instance, and from a running turn's live
    ``done`` to a follower's on another instance (flush and poll intervals at their defaults: 1000/500 ms)."""
    replay, follow = [], []
    counter = RequestCounter(real_charges=bench.real_account)
    async with counted_runtime(bench, counter, 1000) as here, counted_runtime(bench, counter, 1000) as there:
        user = f"bench-{uuid.uuid4().hex[:6]}"
        for index in range(samples):
            session = f"resume-{uuid.uuid4().hex[:8]}"
            stream = await here.turns.stream(TurnRequest(session, f"question {index}"), caller=user)
            assert stream.turn is not None
            following = asyncio.create_task(_last_event_at(there, session, stream.turn, user))
            await drained(stream)
            live_done = time.perf_counter()
            follow.append((await following - live_done) * 1000)
            started = time.perf_counter()
            await _last_event_at(there, session, stream.turn, user)
            replay.append((time.perf_counter() - started) * 1000)
    return replay, follow


async def _last_event_at(runtime: Runtime, session: str, turn: int, user: str) -> float:
    async for _ in await runtime.turns.follow(session, turn, caller=user, after=0):
        pass
    return time.perf_counter()


async def measure_durable(bench: BenchEnv, samples: int = SAMPLES) -> list[str]:
    """The report's section on durable turns (markdown lines)."""
    rows = [await turn_cost(bench, flush, samples) for flush in (None, 1000, 250)]
    replay, follow = await resume_latency(bench, samples)
    plain = rows[0]
    ru_kind = "RU" if bench.real_account else "estimated RU"
    lines = [
        "## Durable turns: extra writes per streamed turn, resume latency",
        "",
        f"A steady-state turn whose 1 KB reply the model writes over {STREAM_SECONDS:.0f} s, mean of {samples}. "
        "A plain turn writes no turn record and no events; a streamed one writes its record twice (start, end) and "
        "one batch per flush interval that had new events, and reads its record once per interval (the cancel flag).",
        "",
        *table(
            ["Turn", "Cosmos requests", "Writes", ru_kind, f"Extra {ru_kind} over plain"],
            [[r.label, f"{r.requests:.1f}", f"{r.writes:.1f}", f"{r.ru:.1f}", f"{r.ru - plain.ru:+.1f}"] for r in rows],
        ),
        "",
        "Resume on another instance (a second runtime on the same database), milliseconds:",
        "",
        *table(
            ["Resume", "p50 ms", "max ms"],
            [
                ["replay a finished turn whole", f"{statistics.median(replay):.0f}", f"{max(replay):.0f}"],
                [
                    "follow a running turn: live done -> follower's done (flush 1000 ms, poll 500 ms)",
                    f"{statistics.median(follow):.0f}",
                    f"{max(follow):.0f}",
                ],
            ],
        ),
        "",
    ]
    return lines


def main() -> None:
    with bench_cosmos() as bench:
        print("\n".join(asyncio.run(measure_durable(bench))))


if __name__ == "__main__":
    main()
