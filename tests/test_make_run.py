"""`make run` and `make cosmos` as a newcomer runs them: ports of one's choice, a busy port named by the
variable to set, something else on the Cosmos DB port reported as such, and nothing installed but what
running needs. Real make, real processes, free ports; every process started here is stopped here."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from cosmos_history.settings import SETTING_NAMES
from devtools.local_cosmos import free_port, is_listening, not_cosmos_reason

from .threaded_server import serve

ROOT = Path(__file__).resolve().parent.parent
#: The install stamps count as up to date: these tests are about what `make run` runs, not about installing
#: (the session that runs them has installed everything already).
STAMPS = [
    "-o",
    ".venv/.installed",
    "-o",
    "cosmos-emulator/node_modules/.installed",
    "-o",
    "storage-emulator/node_modules/.installed",
]
PACKAGE_MANAGER = re.compile(r"(^|[\s;&|(])(sudo|apt-get|apt|dpkg|dnf|yum|apk|brew|snap)\s")


def make_env() -> dict[str, str]:
    """This environment without the app's settings (the make run under test uses its own local Cosmos DB) and
    without the settings of a make that may be running these tests."""
    drop = set(SETTING_NAMES) | {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"}
    return {name: value for name, value in os.environ.items() if name not in drop}


def make(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", *args], cwd=ROOT, env=make_env(), capture_output=True, text=True, timeout=timeout, check=False
    )


@contextmanager
def make_in_background(*args: str) -> Iterator[subprocess.Popen[str]]:
    """``make args`` in a process group of its own, stopped (the group, by its id) when the block ends."""
    process = subprocess.Popen(
        ["make", *args],
        cwd=ROOT,
        env=make_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        with_signal(process, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with_signal(process, signal.SIGKILL)
            process.wait(timeout=30)
        if process.stdout:
            process.stdout.close()


def with_signal(process: subprocess.Popen[str], sig: signal.Signals) -> None:
    with suppress(ProcessLookupError):  # the group has exited already
        os.killpg(process.pid, sig)


def wait_for_health(process: subprocess.Popen[str], base: str, timeout: float = 120) -> httpx.Response:
    """The first 200 of /health, or the last answer once ``timeout`` is over."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            raise AssertionError(f"make run exited with {process.returncode}:\n{output}")
        answer = None
        with suppress(httpx.TransportError):
            answer = httpx.get(f"{base}/health", timeout=30)
        if answer is not None and (answer.status_code == 200 or time.monotonic() > deadline):
            return answer
        if time.monotonic() > deadline:
            raise AssertionError("make run did not answer in time")
        time.sleep(0.2)


@contextmanager
def silent_listener() -> Iterator[int]:
    """A port something listens on that never answers (the kernel accepts connections; nobody reads them)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def not_a_cosmos_db() -> Starlette:
    return Starlette(routes=[Route("/{path:path}", lambda _: PlainTextResponse("hello"))])


def test_make_run_serves_the_app_the_local_cosmos_db_and_the_local_queues_on_the_ports_given():
    port, cosmos_port, storage_port = free_port(), free_port(), free_port()
    ports = (f"PORT={port}", f"COSMOS_PORT={cosmos_port}", f"STORAGE_PORT={storage_port}")
    with make_in_background(*STAMPS, "run", *ports) as process:
        health = wait_for_health(process, f"http://127.0.0.1:{port}/api")
        created = httpx.post(f"http://127.0.0.1:{port}/api/sessions", json={}, timeout=30)
        queued = httpx.post(
            f"http://127.0.0.1:{port}/api/sessions/{created.json()['id']}/messages",
            json={"message": "later", "background": True},
            timeout=30,
        )

        assert health.status_code == 200, health.text
        assert created.status_code == 201, created.text
        assert queued.status_code == 202, queued.text
        assert not_cosmos_reason(cosmos_port) is None, "the local Cosmos DB listens on COSMOS_PORT"
        assert is_listening(storage_port), "the local queues listen on STORAGE_PORT"
    stopped = not is_listening(port) and not is_listening(cosmos_port) and not is_listening(storage_port)
    assert stopped, "stopping make run stops all three"


def test_a_busy_app_port_stops_make_run_with_a_message_naming_the_port_variable():
    cosmos_port = free_port()
    with silent_listener() as busy:
        result = make(*STAMPS, "run", f"PORT={busy}", f"COSMOS_PORT={cosmos_port}")

    assert result.returncode != 0
    assert f"Port {busy} on 127.0.0.1 is not available" in result.stdout + result.stderr
    assert "make run PORT=" in result.stdout + result.stderr
    assert not is_listening(cosmos_port), "nothing was started before the port was checked"


def test_a_web_server_on_the_cosmos_port_is_reported_as_not_the_local_cosmos_db():
    port = free_port()
    with serve(not_a_cosmos_db()) as taken:
        result = make(*STAMPS, "run", f"PORT={port}", f"COSMOS_PORT={taken}")

    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"Port {taken} is taken by something that is not the local Cosmos DB" in output
    assert "does not speak HTTPS" in output and "make run COSMOS_PORT=" in output
    assert not is_listening(port), "the app did not start against it"


def test_a_listener_that_never_answers_on_the_cosmos_port_is_reported_as_not_the_local_cosmos_db():
    with silent_listener() as taken:
        result = make(*STAMPS, "run", f"PORT={free_port()}", f"COSMOS_PORT={taken}")

    assert result.returncode != 0
    assert f"Port {taken} is taken by something that is not the local Cosmos DB (it did not answer" in result.stderr


def test_make_cosmos_reports_a_port_taken_by_something_else():
    with serve(not_a_cosmos_db()) as taken:
        result = make(*STAMPS, "cosmos", f"COSMOS_PORT={taken}")

    assert result.returncode != 0
    assert f"Port {taken} is taken by something that is not the local Cosmos DB" in result.stderr


def test_the_probe_recognises_the_local_cosmos_db(cosmos_env):
    port = httpx.URL(cosmos_env["COSMOS_ENDPOINT"]).port
    assert port is not None and not_cosmos_reason(port) is None


def test_make_cosmos_on_a_port_where_a_cosmos_db_listens_says_make_run_can_use_it(cosmos_env):
    port = httpx.URL(cosmos_env["COSMOS_ENDPOINT"]).port
    result = make(*STAMPS, "cosmos", f"COSMOS_PORT={port}")

    assert result.returncode != 0
    assert f"A Cosmos DB already listens on port {port}: `make run COSMOS_PORT={port}` uses it." in result.stderr


def dry_run(target: str) -> str:
    """Every command ``make target`` would run from a fresh clone (-B: as if nothing were installed yet)."""
    result = make("-n", "-B", target)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("target", ["run", "cosmos"])
def test_make_run_and_make_cosmos_never_call_a_package_manager(target):
    commands = dry_run(target)

    assert "devtools." in commands, "the dry run shows the recipe"
    assert [line for line in commands.splitlines() if PACKAGE_MANAGER.search(line)] == []


def test_the_browser_is_installed_by_make_test():
    # The same check sees the package manager where there is one: the chat page test's browser.
    assert any("apt-get install" in line for line in dry_run("test").splitlines() if PACKAGE_MANAGER.search(line))
