"""Settings: defaults, validation, and no silent fallback to the offline model."""

from __future__ import annotations

import pytest

from cosmos_history import load_settings
from cosmos_history.domain.errors import SettingsError


def test_defaults_run_offline_in_local_mode_against_the_local_emulator():
    settings = load_settings({})

    assert settings.model.provider == "offline"
    assert settings.history_mode == "local"
    assert settings.cosmos.database == "conversations" and settings.cosmos.container == "sessions"
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
    ],
)
def test_malformed_values_fail_at_start_up(name, value):
    with pytest.raises(SettingsError, match=name):
        load_settings({name: value})


def test_tls_verification_may_be_off_only_for_this_machine():
    assert load_settings({"COSMOS_ENDPOINT": "https://localhost:8081"}).cosmos.is_local
    assert not load_settings({"COSMOS_ENDPOINT": "https://acct.documents.azure.com:443/"}).cosmos.is_local


def test_every_setting_is_documented_in_the_example_settings_and_the_readme():
    import json
    from pathlib import Path

    from cosmos_history.settings import SETTING_NAMES

    root = Path(__file__).resolve().parent.parent
    example = json.loads((root / "local.settings.json.example").read_text())["Values"]
    readme = (root / "README.md").read_text()
    assert set(SETTING_NAMES) <= set(example)
    assert [name for name in SETTING_NAMES if f"`{name}`" not in readme] == []
