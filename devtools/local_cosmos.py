"""Start and stop the local Cosmos DB stand-in (`@vercel/cosmosdb-server` from npm). Dev and tests only.

The official emulator needs Docker; this one is a Node.js process installed by
``npm ci`` into ``cosmos-emulator/`` (with the repo's patch for missing-item reads).
It speaks HTTPS with a self-signed certificate and accepts the emulator's
well-known key. See the README for its limits.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

#: The Cosmos DB emulator's documented, public key. Only ever sent to a server on this machine.
EMULATOR_KEY = "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="

EMULATOR_DIR = Path(__file__).resolve().parent.parent / "cosmos-emulator"
SERVER_SCRIPT = EMULATOR_DIR / "node_modules" / "@vercel" / "cosmosdb-server" / "lib" / "cli.js"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def is_listening(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


@contextlib.contextmanager
def local_cosmos(port: int = 8081, *, log_path: Path | None = None, timeout: float = 30.0) -> Iterator[str]:
    """Run the local Cosmos DB on ``127.0.0.1:port`` for the duration of the block; yields its endpoint."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("Node.js is needed for the local Cosmos DB (install nodejs, then run `make install`).")
    if not SERVER_SCRIPT.is_file():
        raise RuntimeError(f"{SERVER_SCRIPT} is missing: run `npm ci --prefix {EMULATOR_DIR}` (or `make install`).")
    if is_listening(port):
        raise RuntimeError(f"Port {port} is already in use; stop what listens there or choose another port.")
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [node, str(SERVER_SCRIPT), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "NODE_NO_WARNINGS": "1"},
    )
    try:
        deadline = time.monotonic() + timeout
        while not is_listening(port):
            if process.poll() is not None:
                raise RuntimeError(f"The local Cosmos DB exited with code {process.returncode}.")
            if time.monotonic() > deadline:
                raise RuntimeError(f"The local Cosmos DB did not listen on port {port} within {timeout:.0f} s.")
            time.sleep(0.1)
        yield f"https://127.0.0.1:{port}"
    finally:
        stop_process(process)
        if log is not subprocess.DEVNULL:
            log.close()


def stop_process(process: subprocess.Popen[bytes], *, grace: float = 10.0) -> None:
    """Terminate ``process`` and wait for it; kill it if it ignores the request for ``grace`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
