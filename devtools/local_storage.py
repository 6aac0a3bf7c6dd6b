"""Start and stop the local Azure Storage emulator (Azurite's queue service, from npm). Dev and tests only.

Background turns travel through an Azure Storage queue; locally that queue is Azurite, a Node.js process
installed by ``npm ci`` into ``storage-emulator/`` (as the local Cosmos DB is into ``cosmos-emulator/``).
Only the queue service runs, in memory: nothing is written to disk, and stopping it drops every message.

    python -m devtools.local_storage [--port 10001]     # what `make storage STORAGE_PORT=...` runs
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from devtools.local_cosmos import is_listening, node_server

logger = logging.getLogger("devtools.devhost")

#: Azurite's documented development account and key (public, like the Cosmos DB emulator's); only ever sent
#: to a server on this machine.
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
#: What local.settings.json says for "the local emulator on its default ports" (the Functions convention).
DEVELOPMENT_STORAGE = "UseDevelopmentStorage=true"
#: The setting naming the host storage account (the Functions host's name for it, not an upper-case one).
SETTING = "AzureWebJobsStorage"

EMULATOR_DIR = Path(__file__).resolve().parent.parent / "storage-emulator"
SERVER_SCRIPT = EMULATOR_DIR / "node_modules" / "azurite" / "dist" / "src" / "queue" / "main.js"


def connection_string(port: int) -> str:
    """The connection string of the local queue service on ``127.0.0.1:port`` (what AzureWebJobsStorage holds)."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
        f"QueueEndpoint=http://127.0.0.1:{port}/{ACCOUNT};"
    )


def server_command(port: int) -> list[str]:
    """The command line of the local queue service on ``127.0.0.1:port``; says what to install when it cannot run."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("Node.js is needed for the local storage emulator (install nodejs, then `make install`).")
    if not SERVER_SCRIPT.is_file():
        raise RuntimeError(f"{SERVER_SCRIPT} is missing: run `npm ci --prefix {EMULATOR_DIR}` (or `make install`).")
    return [
        node,
        str(SERVER_SCRIPT),
        "--queueHost",
        "127.0.0.1",
        "--queuePort",
        str(port),
        # In memory (nothing on disk), any API version the SDK speaks, headers it does not know ignored.
        "--inMemoryPersistence",
        "--skipApiVersionCheck",
        "--loose",
        "--disableTelemetry",
        "--silent",
    ]


@contextlib.contextmanager
def local_storage(port: int = 10001, *, log_path: Path | None = None, timeout: float = 30.0) -> Iterator[str]:
    """Run the local queue service on ``127.0.0.1:port`` for the duration of the block; yields its connection
    string."""
    name = "The local storage emulator"
    with node_server(server_command(port), port, name=name, log_path=log_path, timeout=timeout, cwd=EMULATOR_DIR):
        yield connection_string(port)


def add_storage_arguments(parser: argparse.ArgumentParser) -> None:
    """The local host's options for its queues (`make run` passes the first two)."""
    parser.add_argument(
        "--local-storage",
        action="store_true",
        help="also run the local storage emulator for the queues (unless AzureWebJobsStorage names an account)",
    )
    parser.add_argument("--storage-port", type=int, default=10001, help="port of the local queues (default 10001)")
    parser.add_argument(
        "--queue-lease", type=float, default=600, help="seconds a running message stays hidden (default 600)"
    )


def use_local_storage(stack: contextlib.ExitStack, port: int) -> None:
    """Point AzureWebJobsStorage (the host's and the app's queues) at the local queue service on ``port``: one
    already listening there (`make storage`) or one started for this run. An account in Azure is left alone."""
    configured = os.environ.get(SETTING) or ""
    if os.environ.get(f"{SETTING}__accountName") or os.environ.get(f"{SETTING}__queueServiceUri"):
        return
    if configured and configured.strip().lower() != DEVELOPMENT_STORAGE.lower() and "127.0.0.1" not in configured:
        return
    if is_listening(port):
        os.environ[SETTING] = connection_string(port)
    else:
        os.environ[SETTING] = stack.enter_context(local_storage(port))
    logger.info("Using the local storage emulator (queues) on port %d", port)


def main(argv: list[str] | None = None) -> None:
    """`make storage`: the local queue service in the foreground."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=10001, help="port on 127.0.0.1 (default 10001)")
    port = parser.parse_args(argv).port
    if is_listening(port):
        sys.exit(f"Port {port} is in use: `make run STORAGE_PORT={port}` uses a storage emulator listening there.")
    try:
        command = server_command(port)
    except RuntimeError as error:
        sys.exit(str(error))
    print(f"The local storage emulator (queues) on http://127.0.0.1:{port} (in memory; Ctrl-C stops it)", flush=True)
    os.chdir(EMULATOR_DIR)
    os.execve(command[0], command, {**os.environ, "NODE_NO_WARNINGS": "1"})


if __name__ == "__main__":
    main()
