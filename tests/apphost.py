"""Run the app in the local host as a separate process, as `make run` does, for end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from devtools.devhost import host_process

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def app_host(env: dict[str, str], *, log_path: Path | None = None, timeout: float = 60.0) -> Iterator[str]:
    """Start ``python -m devtools.devhost`` on a free port; yields the base URL (…/api)."""
    with host_process(env, log_path=log_path, timeout=timeout) as base:
        yield base
