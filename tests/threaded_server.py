"""Serving an ASGI app from a test: uvicorn on a free 127.0.0.1 port, in a background thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from devtools.local_cosmos import free_port


@contextmanager
def serve(app: Any, *, lifespan: str = "auto", timeout: float = 15.0) -> Iterator[int]:
    """Serve ``app`` until the block ends; yields its port once the server listens."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan=lifespan))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"the test server for {type(app).__name__} did not start")
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)
