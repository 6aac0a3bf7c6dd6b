"""Settings: defaults, validation, and no silent fallback to the offline model."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from cosmos_history import load_settings
from cosmos_history.domain.errors import SettingsError
from cosmos_history.settings import SETTING_NAMES

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_run_offline_in_local_mode_against_the_local_emulator():
    settings = load_settings({})

    assert settings.model.provider == "offline"
    assert settings.history_mode == "local"
    assert settings.cosmos.database == "conversations" and settings.cosmos.container == "user-sessions"
    assert settings.cosmos.is_local and settings.http_auth_level == "function"


def test_a_configured_azure_endpoint_is_never_replaced_by_the_offline_model():
    with pytest.raises(SettingsError, match="AZURE_OPENAI_DEPLOYMENT"):
        load_settings({"AZURE_OPENAI_ENDPOINT": "https://x.openai.azure.com"})


def test_openai_provider_requires_a_model_name():
    with pytest.raises(SettingsError, match="OPENAI_MODEL"):
        load_settings({"MODEL_PROVIDER": "openai", "OPENAI_API_KEY": "k"})


def test_service_mode_requires_the_responses_api():
    with pytest.raises(SettingsError, match="MODEL_API=responses"):
        load_settings({"HISTORY_MODE": "service", "MODEL_API": "chat"})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HISTORY_MODE", "remote"),
        ("MODEL_PROVIDER", "llama"),
        ("HTTP_AUTH_LEVEL", "none"),
        ("SESSION_TTL_SECONDS", "-5"),
        ("MAX_REQUEST_BYTES", "lots"),
        ("COSMOS_ENDPOINT", "not a url"),
        ("LOG_LEVEL", "loud"),
    ],
)
def test_malformed_values_fail_at_start_up(name, value):
    with pytest.raises(SettingsError, match=name):
        load_settings({name: value})


def test_tls_verification_may_be_off_only_for_this_machine():
    assert load_settings({"COSMOS_ENDPOINT": "https://localhost:8081"}).cosmos.is_local
    assert not load_settings({"COSMOS_ENDPOINT": "https://acct.documents.azure.com:443/"}).cosmos.is_local


def readme_settings_table() -> set[str]:
    """The names in the first column of the README's settings table."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([A-Z_]+)`", row.split("|")[1])}


def test_the_readme_table_and_the_example_settings_list_exactly_the_settings_the_app_reads():
    example = json.loads((ROOT / "local.settings.json.example").read_text(encoding="utf-8"))["Values"]
    host_settings = {"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage", "PYTHON_ENABLE_INIT_INDEXING"}

    assert readme_settings_table() == set(SETTING_NAMES)
    assert set(example) - host_settings == set(SETTING_NAMES)


def test_example_settings_are_accepted_by_the_settings_loader():
    example = json.loads((ROOT / "local.settings.json.example").read_text(encoding="utf-8"))["Values"]
    assert load_settings(example).model.provider == "offline"


def test_log_level_sets_the_level_of_the_app_and_agent_loggers():
    from cosmos_history.app import create_app

    loggers = [logging.getLogger("cosmos_history"), logging.getLogger("agents")]
    saved = [logger.level for logger in loggers]
    try:
        create_app((), settings=load_settings({"LOG_LEVEL": "DEBUG"}))
        assert [logger.level for logger in loggers] == [logging.DEBUG, logging.DEBUG]
    finally:
        for logger, level in zip(loggers, saved, strict=True):
            logger.setLevel(level)


def test_unset_log_level_leaves_the_loggers_to_the_host():
    assert load_settings({}).log_level is None


def test_the_background_queue_is_reached_as_the_functions_host_reaches_its_storage():
    local = load_settings({"AzureWebJobsStorage": "DefaultEndpointsProtocol=http;AccountName=a;AccountKey=k"}).queue
    azure = load_settings(
        {
            "AzureWebJobsStorage__accountName": "acct",
            "AzureWebJobsStorage__clientId": "id-1",
            "BACKGROUND_QUEUE": "jobs",
        }
    ).queue

    assert local.configured and local.connection_string and local.service_uri is None
    assert local.name == "background-turns" and local.poison_name == "background-turns-poison"
    assert (azure.service_uri, azure.client_id, azure.connection_string) == (
        "https://acct.queue.core.windows.net",
        "id-1",
        None,
    )
    assert not load_settings({}).queue.configured


@pytest.mark.parametrize("name", ["Turns", "ab", "a--b", "-turns", "x" * 57])
def test_a_background_queue_name_azure_refuses_fails_at_start_up(name):
    with pytest.raises(SettingsError, match="BACKGROUND_QUEUE"):
        load_settings({"BACKGROUND_QUEUE": name})


def test_the_default_background_queue_name_passes_the_check_a_set_one_gets():
    default = load_settings({}).queue.name  # a start-up that leaves BACKGROUND_QUEUE unset does not check it

    assert load_settings({"BACKGROUND_QUEUE": default}).queue.name == default == "background-turns"


def test_multitask_is_reject_unless_set_and_refuses_other_values():
    assert load_settings({}).multitask == "reject"
    assert load_settings({"MULTITASK": "enqueue"}).multitask == "enqueue"
    with pytest.raises(SettingsError, match="MULTITASK"):
        load_settings({"MULTITASK": "queue"})


def test_the_session_cache_is_on_by_default_off_at_zero_and_refuses_other_values():
    assert load_settings({}).session_cache_bytes == 2048 * 1024
    assert load_settings({"SESSION_CACHE_KB": "512"}).session_cache_bytes == 512 * 1024
    assert load_settings({"SESSION_CACHE_KB": "0"}).session_cache_bytes == 0
    for value in ("-1", "4MB"):
        with pytest.raises(SettingsError, match="SESSION_CACHE_KB"):
            load_settings({"SESSION_CACHE_KB": value})


async def test_a_runtime_keeps_windows_unless_the_session_cache_is_off():
    from cosmos_history.runtime import session_services

    on, on_guards = session_services(None, load_settings({}))  # type: ignore[arg-type]  # no request is made
    off, off_guards = session_services(None, load_settings({"SESSION_CACHE_KB": "0"}))  # type: ignore[arg-type]

    assert on.windows is not None and on.windows.max_bytes == 2048 * 1024
    assert on.for_user("bob").windows is on.windows
    assert on_guards.lease.windows is on.windows, "the claim takes what the store's commits keep"
    assert off.windows is None and off_guards.lease.windows is None


def test_the_session_cache_bounds_the_kept_archive_chunks_too_and_zero_keeps_none():
    from cosmos_history.runtime import session_services

    on, _ = session_services(None, load_settings({"SESSION_CACHE_KB": "1"}))  # type: ignore[arg-type]  # no request
    off, _ = session_services(None, load_settings({"SESSION_CACHE_KB": "0"}))  # type: ignore[arg-type]
    chunk = {"id": "s:archive:000000:abc", "messages": [{"role": "user", "contents": [{"type": "text", "text": "hi"}]}]}
    too_large = {"id": "s:archive:000001:abc", "messages": [{"role": "user", "contents": ["x" * 2048]}]}

    for store in (on, off):
        store.archive.recent.remember("u", [chunk, too_large])

    assert on.for_user("u").archive.recent.recall("u", chunk["id"]) is not None
    assert on.archive.recent.recall("u", too_large["id"]) is None, "over the 1 kB bound"
    assert off.archive.recent.recall("u", chunk["id"]) is None
