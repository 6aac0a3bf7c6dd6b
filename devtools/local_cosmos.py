"""Start and stop the local Cosmos DB stand-in (`@vercel/cosmosdb-server` from npm). Dev and tests only.

The official emulator needs Docker; this one is a Node.js process installed by
``npm ci`` into ``cosmos-emulator/`` (with the repo's patch: missing-item reads, hierarchical
partition keys).
It speaks HTTPS with a self-signed certificate and accepts the emulator's
well-known key. See the README for its limits.

    python -m devtools.local_cosmos [--port 8081]     # what `make cosmos COSMOS_PORT=...` runs
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path
from urllib.parse import quote

logger = logging.getLogger("devtools.devhost")  # what the local host says at start-up

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


def not_cosmos_reason(port: int, *, host: str = "127.0.0.1", timeout: float = 5.0) -> str | None:
    """``None`` when a Cosmos DB answers on ``host:port``; else what answers instead, in a few words.

    Asks what the SDK asks first, the database account (``GET /``, signed with the emulator key as the
    REST API wants), so an emulator that checks keys answers too. Anything else on the port (another web
    server, a plain TCP service) would otherwise turn every request of the app into a 503.
    """
    import httpx

    date = formatdate(usegmt=True)
    payload = f"get\n\n\n{date.lower()}\n\n".encode()
    signature = base64.b64encode(hmac.new(base64.b64decode(EMULATOR_KEY), payload, hashlib.sha256).digest()).decode()
    token = quote(f"type=master&ver=1.0&sig={signature}", safe="")
    headers = {"x-ms-date": date, "x-ms-version": "2018-12-31", "authorization": token}
    try:
        # A self-signed certificate on this machine: nothing but the well-known emulator key is sent.
        answer = httpx.get(f"https://{host}:{port}/", headers=headers, verify=False, timeout=timeout)
    except httpx.TimeoutException:
        return f"it did not answer within {timeout:.0f} s"
    except httpx.TransportError as error:
        return f"it does not speak HTTPS ({type(error).__name__})"
    with contextlib.suppress(ValueError):
        body = answer.json()
        if answer.status_code == 200 and isinstance(body, dict) and "writableLocations" in body:
            return None
    return f"it answered GET / with {answer.status_code}, not a Cosmos DB account"


def server_command(port: int, *, keep_alive: bool = False) -> list[str]:
    """The command line of the local Cosmos DB on ``127.0.0.1:port``; says what to install when it cannot run.

    By default the server closes every connection after its answer (its command line offers nothing
    else), so each request pays a new TLS handshake. ``keep_alive`` starts it through its library
    with ``keepAlive: true`` instead, as a real account keeps connections open: the benchmark uses it,
    so handshakes the real service would not make do not weigh on its per-turn figures.
    """
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("Node.js is needed for the local Cosmos DB (install nodejs, then run `make install`).")
    if not SERVER_SCRIPT.is_file():
        raise RuntimeError(f"{SERVER_SCRIPT} is missing: run `npm ci --prefix {EMULATOR_DIR}` (or `make install`).")
    if keep_alive:
        library = json.dumps(str(SERVER_SCRIPT.parent))
        script = f"require({library}).createHttpsServer({{keepAlive: true}}).listen({int(port)}, '127.0.0.1')"
        return [node, "-e", script]
    return [node, str(SERVER_SCRIPT), "--host", "127.0.0.1", "--port", str(port)]


def not_cosmos_message(port: int, reason: str) -> str:
    """What to say when ``port`` is taken by something else than a Cosmos DB: what, and which variable to set."""
    return (
        f"Port {port} is taken by something that is not the local Cosmos DB ({reason}): stop it, or choose "
        f"another port with `make run COSMOS_PORT=<port>` (`make cosmos COSMOS_PORT=<port>` for the Cosmos DB alone)."
    )


@contextlib.contextmanager
def local_cosmos(
    port: int = 8081, *, log_path: Path | None = None, timeout: float = 30.0, keep_alive: bool = False
) -> Iterator[str]:
    """Run the local Cosmos DB on ``127.0.0.1:port`` for the duration of the block; yields its endpoint
    (``keep_alive``: see :func:`server_command`)."""
    command = server_command(port, keep_alive=keep_alive)
    with node_server(command, port, name="The local Cosmos DB", log_path=log_path, timeout=timeout):
        yield f"https://127.0.0.1:{port}"


@contextlib.contextmanager
def node_server(
    command: list[str], port: int, *, name: str, log_path: Path | None, timeout: float, cwd: Path | None = None
) -> Iterator[None]:
    """Run a local emulator's ``command`` until the block ends, once it listens on ``port`` (``name`` says which
    emulator in errors): the one way the local Cosmos DB and the local storage emulator are started."""
    if is_listening(port):
        raise RuntimeError(f"Port {port} is already in use; stop what listens there or choose another port.")
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115 - closed below
    env = {**os.environ, "NODE_NO_WARNINGS": "1"}
    process = subprocess.Popen(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + timeout
        while not is_listening(port):
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with code {process.returncode}.")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not listen on port {port} within {timeout:.0f} s.")
            time.sleep(0.1)
        yield
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


def main(argv: list[str] | None = None) -> None:
    """`make cosmos`: the local Cosmos DB in the foreground, on a port that is checked first."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8081, help="port on 127.0.0.1 (default 8081)")
    port = parser.parse_args(argv).port
    if is_listening(port):
        reason = not_cosmos_reason(port)
        if reason is None:
            sys.exit(f"A Cosmos DB already listens on port {port}: `make run COSMOS_PORT={port}` uses it.")
        sys.exit(not_cosmos_message(port, reason))
    try:
        command = server_command(port)
    except RuntimeError as error:
        sys.exit(str(error))
    print(f"The local Cosmos DB on https://127.0.0.1:{port} (in memory; Ctrl-C stops it)", flush=True)
    os.execve(command[0], command, {**os.environ, "NODE_NO_WARNINGS": "1"})


def use_local_cosmos(stack: contextlib.ExitStack, port: int) -> None:
    """Point the app at the local Cosmos DB on ``port``: one already listening there (`make cosmos`, its data
    outlives restarts of the app) or one started for this run. A COSMOS_ENDPOINT on this machine (as in
    local.settings.json.example) means the local one too; an account elsewhere is left alone."""
    from cosmos_history.settings import CosmosSettings

    configured = os.environ.get("COSMOS_ENDPOINT")
    if configured and not CosmosSettings(endpoint=configured).is_local:
        return
    if not is_listening(port):
        os.environ["COSMOS_ENDPOINT"] = stack.enter_context(local_cosmos(port))
    elif (reason := not_cosmos_reason(port)) is not None:
        sys.exit(not_cosmos_message(port, reason))
    else:
        os.environ["COSMOS_ENDPOINT"] = f"https://127.0.0.1:{port}"
    os.environ.setdefault("COSMOS_KEY", EMULATOR_KEY)
    logger.info("Using the local Cosmos DB at %s", os.environ["COSMOS_ENDPOINT"])


def check_cosmos_credential() -> None:
    """Say at start-up, rather than at every request, when nothing can authenticate to an Azure account:
    without COSMOS_KEY the app uses DefaultAzureCredential (``az login`` locally, a managed identity in Azure)."""
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import DefaultAzureCredential

    from cosmos_history.adapters.cosmos.client import NO_CREDENTIAL
    from cosmos_history.settings import load_settings

    cosmos = load_settings().cosmos
    if cosmos.key or cosmos.is_local:
        return
    try:
        with DefaultAzureCredential() as credential:
            credential.get_token("https://cosmos.azure.com/.default")
    except ClientAuthenticationError:
        logger.error("COSMOS_ENDPOINT is %s: %s", cosmos.endpoint, NO_CREDENTIAL)


if __name__ == "__main__":
    main()
