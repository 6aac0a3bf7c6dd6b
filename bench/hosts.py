"""Where the benchmark runs: a Cosmos DB (local unless ``COSMOS_ENDPOINT`` names a real account) and
local host processes serving an app module over HTTP on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import httpx

from devtools.devhost import host_process
from devtools.local_cosmos import EMULATOR_KEY, free_port, local_cosmos, stop_process

from .cpu import cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


@dataclass(frozen=True)
class BenchEnv:
    """Environment for every process of one benchmark run, and whether charges are real."""

    env: dict[str, str]
    real_account: bool

    @property
    def is_local(self) -> bool:
        return not self.real_account


def real_endpoint() -> str | None:
    """``COSMOS_ENDPOINT`` when it names an account that is not on this machine."""
    endpoint = os.environ.get("COSMOS_ENDPOINT")
    if endpoint and urlparse(endpoint).hostname not in ("localhost", "127.0.0.1"):
        return endpoint
    return None


@contextmanager
def bench_cosmos(*, database: str | None = None) -> Iterator[BenchEnv]:
    """A Cosmos DB for one run, with a database of its own; a local one is started and stopped here."""
    database = database or f"bench-{uuid.uuid4().hex[:8]}"
    base = {
        "COSMOS_DATABASE": database,
        "COSMOS_CONTAINER": "sessions",
        "BENCH_PROVIDER_CONTAINER": "provider-history",
        "MODEL_PROVIDER": "offline",
        "LOG_LEVEL": "WARNING",
    }
    endpoint = real_endpoint()
    if endpoint is not None:
        env = {**base, "COSMOS_ENDPOINT": endpoint}
        if os.environ.get("COSMOS_KEY"):
            env["COSMOS_KEY"] = os.environ["COSMOS_KEY"]
        yield BenchEnv(env, real_account=True)
        return
    ARTIFACTS.mkdir(exist_ok=True)
    # Connections kept open, as a real account keeps them: otherwise every request pays a TLS handshake.
    with local_cosmos(free_port(), log_path=ARTIFACTS / "bench-cosmos.log", keep_alive=True) as local_endpoint:
        yield BenchEnv({**base, "COSMOS_ENDPOINT": local_endpoint, "COSMOS_KEY": EMULATOR_KEY}, real_account=False)


@contextmanager
def app_host(env: dict[str, str], app: str, *, timeout: float = 60.0) -> Iterator[str]:
    """``python -m devtools.devhost --app <app>`` on a free port; yields the base URL (…/api)."""
    ARTIFACTS.mkdir(exist_ok=True)
    with host_process(env, app=app, log_path=ARTIFACTS / "bench-hosts.log", timeout=timeout) as base:
        yield base


@contextmanager
def app_hosts(env: dict[str, str], app: str, count: int) -> Iterator[list[str]]:
    """``count`` host processes of the same app (a scaled-out Functions app on one machine)."""
    with ExitStack() as stack:
        yield [stack.enter_context(app_host(env, app)) for _ in range(count)]


@dataclass(frozen=True)
class Host:
    """A host process serving an app: its base URL (…/api) and its process id (to read its CPU time)."""

    base: str
    pid: int

    def cpu_seconds(self) -> float:
        """CPU time the process (all its threads) has used so far."""
        return cpu_seconds(self.pid)


@contextmanager
def checkout_host(checkout: Path, env: dict[str, str], *, app: str = "function_app") -> Iterator[Host]:
    """``python -m devtools.devhost --app <app>`` run in ``checkout`` (that checkout's code, this run's environment
    and interpreter), on a free port, until the block ends."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "devtools.devhost", "--host", "127.0.0.1", "--port", str(port), "--app", app],
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
        yield Host(base, process.pid)
    finally:
        stop_process(process, grace=15)
