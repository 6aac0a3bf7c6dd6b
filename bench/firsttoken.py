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

``--profile N`` instead runs N streamed turns in this process (the registered ``post_message`` function on a
runtime whose model is the stand-in) under :mod:`cProfile`, from the request to its first ``delta`` only, and
prints the top functions by cumulative time per turn: what stands between a request and its first token.

    python -m bench.firsttoken [--samples 20] [--delay 0.05] [--profile 20 --mode local]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import multiprocessing
import os
import pstats
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

import httpx

from devtools.local_cosmos import free_port, stop_process

from .hosts import BenchEnv, app_hosts, bench_cosmos
from .inprocess import USER, message_request, new_session_id, registered_function, user_message
from .markdown import ms as _ms
from .markdown import table
from .measure import Latencies
from .profile import render as render_profile
from .profile import top_functions

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


async def _measure(bases: dict[str, str], fake_url: str, samples: int, sessions: int) -> dict[str, Latencies]:
    """``bases``: a label (``""`` for this checkout) -> a host's base URL; every path takes its turn per sample."""
    from openai import AsyncOpenAI

    paths = [(label, mode) for label in bases for mode in MODES]
    results: dict[str, Latencies] = {"direct": Latencies(), **{_key(mode, label): Latencies() for label, mode in paths}}
    ids = {path: [new_session_id(path[1], "ttft") for _ in range(sessions)] for path in paths}
    async with AsyncOpenAI(base_url=fake_url, api_key="bench") as client, httpx.AsyncClient(timeout=120) as http:
        for turn in (1, 2):  # warm-up: connections, the host's clients, first-request paths
            await direct_first_delta(client, user_message(turn))
            for label, mode in paths:
                await backend_first_delta(http, bases[label], new_session_id(mode, "warm"), mode, user_message(turn))
        for index in range(samples):
            message = user_message(index + 1)
            results["direct"].samples.append(await direct_first_delta(client, message))
            for label, mode in paths:
                session_id = ids[(label, mode)][index % sessions]
                first = await backend_first_delta(http, bases[label], session_id, mode, message)
                results[_key(mode, label)].samples.append(first)
    return results


def _key(mode: str, label: str) -> str:
    return f"{mode} ({label})" if label else mode


def measure_first_token(
    bench: BenchEnv,
    samples: int,
    delay: float = DEFAULT_DELAY,
    sessions: int = 3,
    *,
    before: Path | None = None,
) -> FirstToken:
    """Start the stand-in and one host of ``function_app`` on it, then time ``samples`` of each path.

    ``before``: another checkout of the project (the merged code, say) whose host takes its turn too, in the
    same run, so a change is measured against the code without it under the same load (paths ``local
    (before)`` and ``service (before)``)."""
    from tests.fake_openai import fake_openai_server

    with fake_openai_server() as fake:
        fake.first_token_delay = delay
        env = model_env(bench, fake.base_url)
        with ExitStack() as stack:
            bases = {"": stack.enter_context(app_hosts(env, "function_app", 1))[0]}
            if before is not None:
                bases["before"] = stack.enter_context(host_in(before, env))
            measured = asyncio.run(_measure(bases, fake.base_url, samples, sessions))
    return FirstToken(delay, measured)


@contextmanager
def host_in(checkout: Path, env: dict[str, str]) -> Iterator[str]:
    """``python -m devtools.devhost`` of another checkout (its own code, this run's environment); yields its URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "devtools.devhost", "--host", "127.0.0.1", "--port", str(port)],
        cwd=checkout,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | env | {"PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/api"
    try:
        for _ in range(600):  # at most about two minutes
            if process.poll() is not None:
                raise RuntimeError(f"the host in {checkout} exited with code {process.returncode}")
            with suppress(httpx.TransportError):
                if httpx.get(f"{base}/health", timeout=30).status_code == 200:
                    break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"the host in {checkout} did not become healthy in time")
        yield base
    finally:
        stop_process(process, grace=15)


async def _profile(bench: BenchEnv, fake_url: str, mode: str, turns: int) -> pstats.Stats:
    import function_app
    from cosmos_history import build_runtime, create_app, load_settings

    runtime = await build_runtime(load_settings(model_env(bench, fake_url)))
    post = registered_function(create_app(function_app.ROUTES, runtime=runtime), "post_message_route")
    profiler = cProfile.Profile()

    async def turn(session_id: str, number: int, *, profiled: bool) -> None:
        if profiled:
            profiler.enable()
        response = await post(message_request(session_id, number, mode, stream=True))
        async for chunk in response.body_iterator:
            if profiled and "event: delta" in (chunk if isinstance(chunk, str) else chunk.decode()):
                profiled = False
                profiler.disable()

    try:
        session_id = new_session_id(mode, "profile")
        for number in (1, 2):  # warm-up: clients, connections, first-request paths
            await turn(session_id, number, profiled=False)
        for number in range(3, 3 + turns):
            await turn(session_id, number, profiled=True)
    finally:
        await runtime.close()
    return pstats.Stats(profiler)


def profile_first_token(bench: BenchEnv, mode: str, turns: int, delay: float = 0.0) -> pstats.Stats:
    """Profile ``turns`` streamed turns of one session from request to first ``delta`` (see the module docstring)."""
    with stand_in_process(delay) as base_url:
        return asyncio.run(_profile(bench, base_url, mode, turns))


@contextmanager
def stand_in_process(delay: float) -> Iterator[str]:
    """The stand-in in a process of its own (yields its base URL): in a thread of this one it would take the
    interpreter lock whenever the profiled code waits on a socket, and its time would show as the app's."""
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.get_context("spawn").Process(target=_serve_stand_in, args=(child, delay), daemon=True)
    process.start()
    try:
        if not parent.poll(60):
            raise RuntimeError("the stand-in process did not start")
        yield parent.recv()
    finally:
        parent.send("stop")
        process.join(10)
        if process.is_alive():
            process.kill()


def _serve_stand_in(connection: Connection, delay: float) -> None:
    from tests.fake_openai import fake_openai_server

    with fake_openai_server() as fake:
        fake.first_token_delay = delay
        connection.send(fake.base_url)
        connection.recv()


def _path_label(path: str) -> str:
    mode, _, label = path.partition(" ")
    return f"backend, {mode} mode" + (f" {label}" if label else "")


def render(result: FirstToken) -> list[str]:
    rows = [
        [
            "direct (openai SDK to the stand-in)" if path == "direct" else _path_label(path),
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
    parser.add_argument("--before", type=Path, help="another checkout (say, the merged code) timed in the same run")
    parser.add_argument("--profile", type=int, metavar="TURNS", help="profile this many turns to their first delta")
    parser.add_argument("--mode", choices=MODES, default="local", help="the profiled turns' history mode")
    parser.add_argument("--top", type=int, default=40, help="functions listed (--profile)")
    args = parser.parse_args(argv)
    with bench_cosmos() as bench:
        if args.profile:
            stats = profile_first_token(bench, args.mode, args.profile, delay=0.0)
            rows = top_functions(stats, args.profile, args.top)
            lines = render_profile(rows, variant=args.mode, length=2, turns=args.profile)
            print("\n".join([f"## Request to first delta, {args.mode} mode", *lines[1:]]))
            return
        result = measure_first_token(bench, args.samples, args.delay, before=args.before)
    print("\n".join(render(result)))


if __name__ == "__main__":
    main()
