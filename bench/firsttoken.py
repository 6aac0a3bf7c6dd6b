"""Time to first token: what the backend adds before a streamed turn's first ``delta`` reaches the client.

One OpenAI-compatible stand-in (``tests/fake_openai.py``) streams its first text delta a fixed
``delay`` after each request. Samples interleave, one request at a time:

- **direct**: the official ``openai`` SDK streams a Responses request with the same message straight
  from the stand-in, timed from the request to its first ``response.output_text.delta``;
- **local** and **service**: ``POST /api/sessions/{id}/messages`` with ``"stream": true`` to the
  project's own ``function_app`` in a local host process configured with ``MODEL_PROVIDER=openai`` at
  the stand-in, timed from the request to the first ``event: delta`` line (sessions continue, so each
  turn reads a real history first).

What the backend adds is each mode's figure minus the direct one (medians, and p95s). The stand-in
serves both in a thread of this process, so it costs both the same.

    python -m bench.firsttoken [--samples 20] [--delay 0.05]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass, field

import httpx

from .hosts import BenchEnv, app_hosts, bench_cosmos
from .inprocess import USER, new_session_id, user_message
from .markdown import ms as _ms
from .markdown import table
from .measure import Latencies

MODES = ("local", "service")
DEFAULT_DELAY = 0.05
"""The stand-in's time to first token (seconds): a fast model's."""


@dataclass(frozen=True)
class FirstToken:
    """Times from request to first text delta, in seconds, per path (``direct`` and each mode)."""

    delay: float
    samples: dict[str, Latencies] = field(default_factory=dict)

    def added(self, mode: str) -> tuple[float, float]:
        """What the backend adds in ``mode``: (median, p95) minus the direct call's."""
        direct, through = self.samples["direct"], self.samples[mode]
        return through.median - direct.median, through.p95 - direct.p95


def model_env(bench: BenchEnv, base_url: str) -> dict[str, str]:
    """The benchmark's environment with the configured model at the stand-in (Responses API)."""
    return {
        **bench.env,
        "MODEL_PROVIDER": "openai",
        "MODEL_API": "responses",
        "OPENAI_BASE_URL": base_url,
        "OPENAI_API_KEY": "bench",
        "OPENAI_MODEL": "bench-model",
    }


async def direct_first_delta(client: object, message: str) -> float:
    """Seconds from sending a streamed Responses request to its first text delta (the stream is drained)."""
    started = time.perf_counter()
    stream = await client.responses.create(model="bench-model", input=message, stream=True, store=False)  # type: ignore[attr-defined]
    first = None
    async for event in stream:
        if first is None and event.type == "response.output_text.delta":
            first = time.perf_counter() - started
    if first is None:
        raise RuntimeError("the stand-in streamed no text delta")
    return first


async def backend_first_delta(http: httpx.AsyncClient, base: str, session_id: str, mode: str, message: str) -> float:
    """Seconds from ``POST …/messages`` with ``stream: true`` to the first ``event: delta`` line; the rest of
    the stream is read, so the turn is saved before the next sample starts."""
    started = time.perf_counter()
    first = None
    body = {"message": message, "mode": mode, "stream": True}
    async with http.stream(
        "POST", f"{base}/sessions/{session_id}/messages", json=body, headers={"X-User-Id": USER}
    ) as response:
        if response.status_code != 200:
            text = (await response.aread())[:300]
            raise RuntimeError(f"streamed {mode} turn answered {response.status_code}: {text!r}")
        async for line in response.aiter_lines():
            if first is None and line == "event: delta":
                first = time.perf_counter() - started
            if line == "event: error":
                raise RuntimeError(f"streamed {mode} turn failed inside the stream")
    if first is None:
        raise RuntimeError(f"the streamed {mode} turn sent no delta")
    return first


async def _measure(base: str, fake_url: str, samples: int, sessions: int) -> dict[str, Latencies]:
    from openai import AsyncOpenAI

    results: dict[str, Latencies] = {path: Latencies() for path in ("direct", *MODES)}
    ids = {mode: [new_session_id(mode, "ttft") for _ in range(sessions)] for mode in MODES}
    async with AsyncOpenAI(base_url=fake_url, api_key="bench") as client, httpx.AsyncClient(timeout=120) as http:
        for turn in (1, 2):  # warm-up: connections, the host's clients, first-request paths
            await direct_first_delta(client, user_message(turn))
            for mode in MODES:
                await backend_first_delta(http, base, new_session_id(mode, "warm"), mode, user_message(turn))
        for index in range(samples):
            message = user_message(index + 1)
            results["direct"].samples.append(await direct_first_delta(client, message))
            for mode in MODES:
                session_id = ids[mode][index % sessions]
                results[mode].samples.append(await backend_first_delta(http, base, session_id, mode, message))
    return results


def measure_first_token(bench: BenchEnv, samples: int, delay: float = DEFAULT_DELAY, sessions: int = 3) -> FirstToken:
    """Start the stand-in and one host of ``function_app`` on it, then time ``samples`` of each path."""
    from tests.fake_openai import fake_openai_server

    with fake_openai_server() as fake:
        fake.first_token_delay = delay
        with app_hosts(model_env(bench, fake.base_url), "function_app", 1) as hosts:
            measured = asyncio.run(_measure(hosts[0], fake.base_url, samples, sessions))
    return FirstToken(delay, measured)


def render(result: FirstToken) -> list[str]:
    rows = [
        [
            "direct (openai SDK to the stand-in)" if path == "direct" else f"backend, {path} mode",
            str(len(lat.samples)),
            _ms(lat.median),
            _ms(lat.p95),
            "" if path == "direct" else _ms(result.added(path)[0]),
            "" if path == "direct" else _ms(result.added(path)[1]),
        ]
        for path, lat in result.samples.items()
    ]
    return [
        "## Time to first token",
        "",
        f"A streamed turn's first `delta` through the backend against the same OpenAI-compatible stand-in "
        f"(`tests/fake_openai.py`, first text delta {result.delay * 1000:.0f} ms after each request) called "
        "directly with the same message (`bench/firsttoken.py`). Samples interleave, one request at a time; "
        "the backend is `function_app` in one local host process with `MODEL_PROVIDER=openai`, each turn "
        "continuing a session (so its history is read, leased and converted first).",
        "",
        *table(["Path", "Samples", "Median ms", "p95 ms", "Added median ms", "Added p95 ms"], rows),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.firsttoken", description=__doc__)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--delay", type=float, default=DEFAULT_DELAY, help="the stand-in's time to first token (s)")
    args = parser.parse_args(argv)
    with bench_cosmos() as bench:
        result = measure_first_token(bench, args.samples, args.delay)
    print("\n".join(render(result)))


if __name__ == "__main__":
    main()
