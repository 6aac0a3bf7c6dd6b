"""Every setting the app reads, resolved once into a typed, validated object.

This module is the only place that knows setting names, so the infrastructure
(`infra/`), `local.settings.json.example` and the README can be checked
against it. Bad values fail at start-up instead of being replaced by defaults.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeVar
from urllib.parse import urlparse

from cosmos_history.domain.errors import SettingsError
from cosmos_history.domain.modes import (  # noqa: F401 (re-exported: settings name them)
    COMPACTIONS,
    HISTORY_MODES,
    Compaction,
    CompactionSettings,
    HistoryMode,
)

ModelProvider = Literal["offline", "azure_openai", "openai"]
ModelApi = Literal["responses", "chat"]
AuthLevel = Literal["anonymous", "function", "admin"]
_Choice = TypeVar("_Choice", bound=str)

MODEL_PROVIDERS: tuple[ModelProvider, ...] = ("offline", "azure_openai", "openai")
MODEL_APIS: tuple[ModelApi, ...] = ("responses", "chat")
AUTH_LEVELS: tuple[AuthLevel, ...] = ("anonymous", "function", "admin")
Multitask = Literal["reject", "enqueue", "interrupt"]
MULTITASKS: tuple[Multitask, ...] = ("reject", "enqueue", "interrupt")
_QUEUE_NAME = r"^(?!.*--)[a-z0-9][a-z0-9-]{1,54}[a-z0-9]$"
"""Checked only where ``BACKGROUND_QUEUE`` is set (compiled then, by ``re``'s cache): a start-up without it compiles
nothing for it."""
LogLevel = Literal["debug", "info", "warning", "error"]
LOG_LEVELS: tuple[LogLevel, ...] = ("debug", "info", "warning", "error")

#: Setting names the app reads, with a one-line description (used by docs and infra checks).
SETTING_NAMES: dict[str, str] = {
    "COSMOS_ENDPOINT": "Cosmos DB account endpoint (https://<account>.documents.azure.com:443/).",
    "COSMOS_KEY": "Account key; only for the local emulator. Unset in Azure: managed identity is used.",
    "COSMOS_DATABASE": "Database name (default conversations).",
    "COSMOS_CONTAINER": "Container name (default user-sessions).",
    "AZURE_CLIENT_ID": "Client id of the user-assigned managed identity (read by DefaultAzureCredential).",
    "HISTORY_MODE": "Default history mode for new sessions: local or service (default local).",
    "SESSION_TTL_SECONDS": "Sliding retention of session items in seconds; unset keeps them forever.",
    "MODEL_PROVIDER": "offline, azure_openai or openai (default: inferred, offline when nothing is set).",
    "MODEL_API": "responses or chat (default responses); service mode needs responses.",
    "AZURE_OPENAI_ENDPOINT": "Azure OpenAI endpoint, for MODEL_PROVIDER=azure_openai.",
    "AZURE_OPENAI_DEPLOYMENT": "Azure OpenAI deployment name, for MODEL_PROVIDER=azure_openai.",
    "AZURE_OPENAI_API_KEY": "Optional Azure OpenAI key; unset uses managed identity.",
    "OPENAI_BASE_URL": "OpenAI-compatible base URL (Ollama, LM Studio, Foundry Local); optional.",
    "OPENAI_API_KEY": "API key for MODEL_PROVIDER=openai.",
    "OPENAI_MODEL": "Model name for MODEL_PROVIDER=openai.",
    "DEFAULT_AGENT": "The agent (a module of the agents package) for requests that name none (default assistant).",
    "AGENTS_PACKAGE": "The Python package whose modules are the app's agents (default agents).",
    "WORKFLOWS_PACKAGE": "The Python package whose modules are the app's workflows (default workflows).",
    "MAX_TOOL_ROUNDS": "Most model round trips with tool calls in one turn (framework max_iterations; default 8).",
    "HTTP_AUTH_LEVEL": "Functions auth level of the HTTP routes: function (default), anonymous or admin.",
    "MAX_REQUEST_BYTES": "Largest accepted request body in bytes (default 65536).",
    "MAX_MESSAGE_CHARS": "Longest accepted user message in characters (default 16000).",
    "MAX_SESSION_BYTES": "Budget of one stored item; older turns move to archive items beyond it (default 1000000).",
    "MAX_HISTORY_MESSAGES": "Most messages kept in the session document, the window the model sees (default 200).",
    "HISTORY_COMPACTION": "Local mode: summarize (default), window or none (MAX_HISTORY_MESSAGES alone bounds it).",
    "MAX_INPUT_TOKENS": "Local mode: the budget of history (summary included) the model reads per turn (default 8000).",
    "TURN_TIMEOUT_SECONDS": "Longest a model call may take before the turn fails with 502 (default 120).",
    "TURN_LEASE_SECONDS": "Length of a turn's session lease, renewed every third of it while the turn runs; a "
    "crashed turn's lease runs out after it (default 10, at least 3).",
    "SESSION_CACHE_KB": "Local mode: memory in kB an instance may spend keeping the history of the sessions its "
    "turns just saved (and the documents they wrote), and again the archive chunks they moved out, so that the next "
    "turn there need not receive, restore or read them (default 2048; 0 turns both off).",
    "IDEMPOTENCY_TTL_SECONDS": "How long Idempotency-Key results are kept for replay (default 86400).",
    "EVENTS_FLUSH_MS": "How often a streamed turn stores its buffered events, in ms (default 1000, at least 50).",
    "EVENTS_POLL_MS": "How often a resumed stream looks for a running turn's next events, ms (default 500, min 50).",
    "EVENTS_TTL_SECONDS": "How long a streamed turn's stored events are kept for resuming (default 86400).",
    "BACKGROUND_QUEUE": "Storage queue of background turns on the host storage account (default background-turns; "
    "failed ones move to <name>-poison).",
    "MULTITASK": "What a message sent while a turn runs does unless it says: reject (409, default), enqueue or "
    "interrupt.",
    "LOCAL_DEV_ALLOW_ANONYMOUS": "Local development only: let anonymous-level calls through without Easy Auth.",
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "Application Insights connection string; unset exports no telemetry.",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Authorization=AAD[;ClientId=<id>]: export with the managed identity.",
    "ENABLE_SENSITIVE_DATA": "true records message text in model spans (development only; default false).",
    "LOG_LEVEL": "DEBUG, INFO, WARNING or ERROR: the level of the app's and the agents' loggers (unset: the host's).",
    # Read by the shipped agent (agents/assistant.py), listed here so infra and docs can be checked against them.
    "MCP_SERVER_URL": "A remote MCP server (streamable HTTP) whose tools the assistant agent uses; unset: none.",
    "MCP_SERVER_HEADERS": "JSON object of headers sent to the MCP server (in Azure: a Key Vault reference).",
    "MCP_TOOLS_REQUIRING_APPROVAL": "MCP tools that need a person's approval: all (default), none or a list of names.",
}


@dataclass(frozen=True)
class CosmosSettings:
    """Where the sessions live and how to authenticate to Cosmos DB."""

    endpoint: str = "https://127.0.0.1:8081"
    key: str | None = None
    database: str = "conversations"
    container: str = "user-sessions"

    @property
    def is_local(self) -> bool:
        """True for an emulator on this machine: the only case where TLS verification may be off."""
        return urlparse(self.endpoint).hostname in ("localhost", "127.0.0.1")


@dataclass(frozen=True)
class ModelSettings:
    """Which chat client the agent uses."""

    provider: ModelProvider = "offline"
    api: ModelApi = "responses"
    azure_endpoint: str | None = None
    azure_deployment: str | None = None
    azure_api_key: str | None = field(default=None, repr=False)
    openai_base_url: str | None = None
    openai_api_key: str | None = field(default=None, repr=False)
    openai_model: str | None = None


@dataclass(frozen=True)
class TelemetrySettings:
    """Where traces, metrics and logs go: Application Insights, or nowhere."""

    connection_string: str | None = field(default=None, repr=False)
    use_managed_identity: bool = False
    """True when the deployment disables local auth: the exporter authenticates with Entra ID."""
    client_id: str | None = None
    """The user-assigned identity to export with; ``None`` means the system-assigned one."""
    sensitive_data: bool = False

    @property
    def enabled(self) -> bool:
        return self.connection_string is not None


@dataclass(frozen=True)
class QueueSettings:
    """The host storage account's queue service, reached as the Functions host reaches it (``AzureWebJobsStorage``):
    a connection string locally (the storage emulator), the account's queue endpoint and the managed identity in
    Azure (``AzureWebJobsStorage__accountName`` or ``__queueServiceUri``, ``__clientId``)."""

    connection_string: str | None = field(default=None, repr=False)
    service_uri: str | None = None
    client_id: str | None = None
    name: str = "background-turns"

    @property
    def configured(self) -> bool:
        return self.connection_string is not None or self.service_uri is not None

    @property
    def poison_name(self) -> str:
        """Where the host moves a message that failed ``maxDequeueCount`` times."""
        return f"{self.name}-poison"


@dataclass(frozen=True)
class Settings:
    """The whole app configuration, built by :func:`load_settings`."""

    cosmos: CosmosSettings = field(default_factory=CosmosSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    history_mode: HistoryMode = "local"
    session_ttl_seconds: int | None = None
    default_agent: str = "assistant"
    agents_package: str = "agents"
    workflows_package: str = "workflows"
    max_tool_rounds: int = 8
    http_auth_level: AuthLevel = "function"
    max_request_bytes: int = 65536
    max_message_chars: int = 16000
    max_session_bytes: int = 1_000_000
    max_history_messages: int = 200
    compaction: CompactionSettings = field(default_factory=lambda: CompactionSettings())
    turn_timeout_seconds: int = 120
    turn_lease_seconds: int = 10
    session_cache_bytes: int = 2048 * 1024
    """Memory the history windows kept for the next turn on the same instance may take (0: none kept)."""
    idempotency_ttl_seconds: int = 86400
    events_flush_ms: int = 1000
    events_poll_ms: int = 500
    events_ttl_seconds: int = 86400
    local_dev_allow_anonymous: bool = False
    queue: QueueSettings = field(default_factory=QueueSettings)
    multitask: Multitask = "reject"
    log_level: LogLevel | None = None
    """``None`` leaves the loggers at the level the host gives them."""
    telemetry: TelemetrySettings = field(default_factory=TelemetrySettings)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read settings from ``environ`` (default ``os.environ``), validate them, fill defaults.

    Raises:
        SettingsError: a value is malformed, or a configured model provider lacks what it needs.
    """
    env = {k: v for k, v in (os.environ if environ is None else environ).items() if v != ""}
    defaults = Settings()

    cosmos = CosmosSettings(
        endpoint=env.get("COSMOS_ENDPOINT", CosmosSettings.endpoint),
        key=env.get("COSMOS_KEY"),
        database=env.get("COSMOS_DATABASE", CosmosSettings.database),
        container=env.get("COSMOS_CONTAINER", CosmosSettings.container),
    )
    if urlparse(cosmos.endpoint).scheme not in ("https", "http") or not urlparse(cosmos.endpoint).hostname:
        raise SettingsError(f"COSMOS_ENDPOINT must be an http(s) URL, got {cosmos.endpoint!r}")

    model = _load_model_settings(env)
    history_mode = _choice(env, "HISTORY_MODE", HISTORY_MODES, defaults.history_mode)
    if model.api == "chat" and history_mode == "service":
        raise SettingsError("HISTORY_MODE=service needs MODEL_API=responses: chat completions keep no history")

    return Settings(
        cosmos=cosmos,
        model=model,
        history_mode=history_mode,
        session_ttl_seconds=_positive_int(env, "SESSION_TTL_SECONDS"),
        default_agent=env.get("DEFAULT_AGENT", defaults.default_agent),
        agents_package=env.get("AGENTS_PACKAGE", defaults.agents_package),
        workflows_package=env.get("WORKFLOWS_PACKAGE", defaults.workflows_package),
        max_tool_rounds=_positive_int(env, "MAX_TOOL_ROUNDS") or defaults.max_tool_rounds,
        http_auth_level=_choice(env, "HTTP_AUTH_LEVEL", AUTH_LEVELS, defaults.http_auth_level),
        max_request_bytes=_positive_int(env, "MAX_REQUEST_BYTES") or defaults.max_request_bytes,
        max_message_chars=_positive_int(env, "MAX_MESSAGE_CHARS") or defaults.max_message_chars,
        max_session_bytes=_positive_int(env, "MAX_SESSION_BYTES") or defaults.max_session_bytes,
        max_history_messages=_positive_int(env, "MAX_HISTORY_MESSAGES") or defaults.max_history_messages,
        compaction=CompactionSettings(
            _choice(env, "HISTORY_COMPACTION", COMPACTIONS, defaults.compaction.strategy),
            _at_least(500, _positive_int(env, "MAX_INPUT_TOKENS"), "MAX_INPUT_TOKENS")
            or defaults.compaction.max_input_tokens,
        ),
        turn_timeout_seconds=_positive_int(env, "TURN_TIMEOUT_SECONDS") or defaults.turn_timeout_seconds,
        turn_lease_seconds=_at_least(3, _positive_int(env, "TURN_LEASE_SECONDS"), "TURN_LEASE_SECONDS")
        or defaults.turn_lease_seconds,
        session_cache_bytes=_kilobytes(env, "SESSION_CACHE_KB", defaults.session_cache_bytes),
        idempotency_ttl_seconds=_positive_int(env, "IDEMPOTENCY_TTL_SECONDS") or defaults.idempotency_ttl_seconds,
        events_flush_ms=_at_least(50, _positive_int(env, "EVENTS_FLUSH_MS"), "EVENTS_FLUSH_MS")
        or defaults.events_flush_ms,
        events_poll_ms=_at_least(50, _positive_int(env, "EVENTS_POLL_MS"), "EVENTS_POLL_MS") or defaults.events_poll_ms,
        events_ttl_seconds=_positive_int(env, "EVENTS_TTL_SECONDS") or defaults.events_ttl_seconds,
        local_dev_allow_anonymous=_boolean(env, "LOCAL_DEV_ALLOW_ANONYMOUS"),
        queue=_load_queue_settings(env),
        multitask=_choice(env, "MULTITASK", MULTITASKS, defaults.multitask),
        log_level=_choice(env, "LOG_LEVEL", LOG_LEVELS, "info") if "LOG_LEVEL" in env else None,
        telemetry=_load_telemetry_settings(env),
    )


def _load_queue_settings(env: Mapping[str, str]) -> QueueSettings:
    """The host storage connection as the Functions host reads it (a development connection string stays as
    written: the local host replaces ``UseDevelopmentStorage=true`` by the emulator's before the app starts)."""
    name = env.get("BACKGROUND_QUEUE", QueueSettings.name)
    if "BACKGROUND_QUEUE" in env and not re.fullmatch(_QUEUE_NAME, name):
        raise SettingsError(f"BACKGROUND_QUEUE must be 3-56 lowercase letters, digits and single hyphens, got {name!r}")
    uri = env.get("AzureWebJobsStorage__queueServiceUri")
    if uri is None and "AzureWebJobsStorage__accountName" in env:
        uri = f"https://{env['AzureWebJobsStorage__accountName']}.queue.core.windows.net"
    return QueueSettings(
        connection_string=env.get("AzureWebJobsStorage") if uri is None else None,
        service_uri=uri,
        client_id=env.get("AzureWebJobsStorage__clientId") or env.get("AZURE_CLIENT_ID"),
        name=name,
    )


def _load_telemetry_settings(env: Mapping[str, str]) -> TelemetrySettings:
    """Parse the Application Insights settings the way the Functions host and Bicep write them."""
    connection_string = env.get("APPLICATIONINSIGHTS_CONNECTION_STRING")
    if connection_string is not None and "=" not in connection_string:
        raise SettingsError("APPLICATIONINSIGHTS_CONNECTION_STRING must look like InstrumentationKey=...;...")
    auth: dict[str, str] = {}
    for part in env.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING", "").split(";"):
        if part.strip():
            name, sep, value = part.partition("=")
            if not sep:
                raise SettingsError("APPLICATIONINSIGHTS_AUTHENTICATION_STRING must look like Authorization=AAD;...")
            auth[name.strip().lower()] = value.strip()
    if auth and auth.get("authorization", "").upper() != "AAD":
        raise SettingsError("APPLICATIONINSIGHTS_AUTHENTICATION_STRING supports only Authorization=AAD")
    return TelemetrySettings(
        connection_string=connection_string,
        use_managed_identity=bool(auth),
        client_id=auth.get("clientid") or env.get("AZURE_CLIENT_ID"),
        sensitive_data=_boolean(env, "ENABLE_SENSITIVE_DATA"),
    )


def _boolean(env: Mapping[str, str], name: str) -> bool:
    value = env.get(name, "false").strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise SettingsError(f"{name} must be true or false, got {value!r}")


def _load_model_settings(env: Mapping[str, str]) -> ModelSettings:
    provider = env.get("MODEL_PROVIDER")
    if provider is None:
        # Never fall back to the offline demo when a real provider was half-configured.
        if "AZURE_OPENAI_ENDPOINT" in env:
            provider = "azure_openai"
        elif "OPENAI_API_KEY" in env or "OPENAI_BASE_URL" in env:
            provider = "openai"
        else:
            provider = "offline"
    settings = ModelSettings(
        provider=_choice({"MODEL_PROVIDER": provider}, "MODEL_PROVIDER", MODEL_PROVIDERS, "offline"),
        api=_choice(env, "MODEL_API", MODEL_APIS, "responses"),
        azure_endpoint=env.get("AZURE_OPENAI_ENDPOINT"),
        azure_deployment=env.get("AZURE_OPENAI_DEPLOYMENT"),
        azure_api_key=env.get("AZURE_OPENAI_API_KEY"),
        openai_base_url=env.get("OPENAI_BASE_URL"),
        openai_api_key=env.get("OPENAI_API_KEY"),
        openai_model=env.get("OPENAI_MODEL"),
    )
    if settings.provider == "azure_openai":
        _require(env, "MODEL_PROVIDER=azure_openai", "AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_DEPLOYMENT")
    elif settings.provider == "openai":
        _require(env, "MODEL_PROVIDER=openai", "OPENAI_MODEL")
        if "OPENAI_API_KEY" not in env and "OPENAI_BASE_URL" not in env:
            raise SettingsError("MODEL_PROVIDER=openai needs OPENAI_API_KEY (or OPENAI_BASE_URL for a local server)")
    return settings


def _require(env: Mapping[str, str], context: str, *names: str) -> None:
    missing = [name for name in names if name not in env]
    if missing:
        raise SettingsError(f"{context} needs {', '.join(missing)}")


def _choice(env: Mapping[str, str], name: str, allowed: tuple[_Choice, ...], default: _Choice) -> _Choice:
    value = env.get(name, default).strip().lower()
    for option in allowed:
        if value == option:
            return option
    raise SettingsError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")


def _at_least(minimum: int, value: int | None, name: str) -> int | None:
    if value is not None and value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _positive_int(env: Mapping[str, str], name: str) -> int | None:
    return _whole_number(env, name, minimum=1, kind="a positive integer")


def _kilobytes(env: Mapping[str, str], name: str, default: int) -> int:
    """A size in kilobytes, as bytes (0 allowed: it turns the feature off)."""
    value = _whole_number(env, name, minimum=0, kind="a whole number of kilobytes (0 or more)")
    return default if value is None else value * 1024


def _whole_number(env: Mapping[str, str], name: str, *, minimum: int, kind: str) -> int | None:
    raw = env.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be {kind}, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be {kind}, got {raw!r}")
    return value
