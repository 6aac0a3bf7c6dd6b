"""The app for tests: in the local host as a separate process (as `make run` runs it), or in process."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cosmos_history import Runtime, create_app
from devtools.devhost import host_process

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def app_host(
    env: dict[str, str], *, log_path: Path | None = None, timeout: float = 60.0, **options: Any
) -> Iterator[str]:
    """Start ``python -m devtools.devhost`` on a free port; yields the base URL (…/api)."""
    with host_process(env, log_path=log_path, timeout=timeout, **options) as base:
        yield base


@contextmanager
def two_app_hosts(env: dict[str, str], *, logs: Path) -> Iterator[tuple[str, str]]:
    """Two app processes on the same Cosmos DB (another instance of the app), whose durable events are flushed
    and polled every 100 ms; yields their base URLs. Their logs go to ``<logs>-1.log`` and ``<logs>-2.log``."""
    quick = {**env, "EVENTS_FLUSH_MS": "100", "EVENTS_POLL_MS": "100"}
    with (
        app_host(quick, log_path=logs.with_name(f"{logs.name}-1.log")) as here,
        app_host(quick, log_path=logs.with_name(f"{logs.name}-2.log")) as there,
    ):
        yield here, there


def registered_functions(runtime: Runtime) -> dict[str, Any]:
    """``function_app.ROUTES`` on a new app bound to ``runtime``, by function name, as the worker indexes them."""
    import function_app

    app = create_app(function_app.ROUTES, runtime=runtime)
    return {f.get_function_name(): f.get_user_function() for f in app.get_functions()}
