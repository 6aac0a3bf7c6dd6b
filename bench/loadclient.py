"""The load test's HTTP client: one keep-alive session per cell, as lean per request as a client gets.

On this machine the load generator shares the CPU with the host processes it measures, so whatever it
spends per request is taken from them. ``aiohttp`` (one ``ClientSession``, a bounded keep-alive
connector, no cookie jar) costs about half of ``httpx.AsyncClient`` per request (``bench/optimisations.md``);
``httpx`` stays selectable (``--client httpx``) to compare. Every variant of a run uses the same client.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Literal

import aiohttp
import httpx

LoadClient = Literal["aiohttp", "httpx"]
CLIENTS: tuple[LoadClient, ...] = ("aiohttp", "httpx")

# Idle connections are dropped before the local host's server closes them (uvicorn: after 5 s), so a request
# never goes out on a connection the server is closing at that moment (the client would see it reset).
KEEPALIVE_SECONDS = 3.0

# POST url, JSON body, headers -> (status, response text); the caller times it.
Post = Callable[[str, bytes, dict[str, str]], Awaitable[tuple[int, str]]]


@asynccontextmanager
async def load_session(client: LoadClient, connections: int) -> AsyncIterator[Post]:
    """A ``Post`` over one session of ``client`` keeping up to ``connections`` connections open."""
    if client == "httpx":
        limits = httpx.Limits(
            max_connections=connections, max_keepalive_connections=connections, keepalive_expiry=KEEPALIVE_SECONDS
        )
        async with httpx.AsyncClient(timeout=300, limits=limits) as http:

            async def post_httpx(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
                response = await http.post(url, content=body, headers=headers)
                return response.status_code, response.text

            yield post_httpx
        return
    connector = aiohttp.TCPConnector(
        limit=connections, limit_per_host=connections, ttl_dns_cache=None, keepalive_timeout=KEEPALIVE_SECONDS
    )
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False
    ) as session:

        async def post_aiohttp(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
            async with session.post(url, data=body, headers=headers) as response:
                return response.status, (await response.read()).decode("utf-8", "replace")

        yield post_aiohttp


async def timed_post(post: Post, url: str, payload: dict[str, object], headers: dict[str, str]) -> float:
    """One POST of ``payload`` as JSON; its wall time. Anything but 200 fails the measurement."""
    body = json.dumps(payload).encode()
    started = time.perf_counter()
    status, text = await post(url, body, {**headers, "Content-Type": "application/json"})
    elapsed = time.perf_counter() - started
    if status != 200:
        raise RuntimeError(f"POST {url} answered {status}: {text[:300]}")
    return elapsed
