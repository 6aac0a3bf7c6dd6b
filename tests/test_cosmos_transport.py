"""The Cosmos DB client's HTTP transport looks proxy settings and ``.netrc`` up on each request only where
there are any: aiohttp otherwise does both in worker threads before every request (#23, time to first token)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cosmos_history.adapters.cosmos.client import environment_settings_present


@pytest.fixture
def bare_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No proxy variable, no ``NETRC``, and a home folder without ``.netrc``."""
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    monkeypatch.delenv("NETRC", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def test_without_proxy_settings_or_netrc_the_transport_skips_the_look_ups(bare_environment: Path) -> None:
    assert environment_settings_present() is False


@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY"])
def test_a_proxy_variable_keeps_the_per_request_look_up(
    bare_environment: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "http://proxy.example:3128" if variable != "NO_PROXY" else "localhost")

    assert environment_settings_present() is True


def test_a_netrc_file_keeps_the_per_request_look_up(bare_environment: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (bare_environment / ".netrc").write_text("machine cosmos.example login a password b\n", encoding="utf-8")
    assert environment_settings_present() is True

    (bare_environment / ".netrc").unlink()
    monkeypatch.setenv("NETRC", str(bare_environment / "elsewhere"))
    (bare_environment / "elsewhere").write_text("machine cosmos.example login a password b\n", encoding="utf-8")
    assert environment_settings_present() is True
