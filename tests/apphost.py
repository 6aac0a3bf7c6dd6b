"""Run the app in the local host as a separate process, as `make run` does, for end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from cosmos_history.local_cosmos import free_port, stop_process

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def app_host(env: dict[str, str], *, log_path: Path | None = None, timeout: float = 60.0) -> Iterator[str]:
    """Start ``python -m cosmos_history.devhost`` on a free port; yields the base URL (…/api)."""
    port = free_port()
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "cosmos_history.devhost", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the local host exited with code {process.returncode}")
            try:
                if httpx.get(f"{base}/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the local host did not become healthy in time")
            time.sleep(0.2)
        yield base
    finally:
        stop_process(process, grace=15)
        if log is not subprocess.DEVNULL:
            log.close()
