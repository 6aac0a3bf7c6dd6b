"""Conversation sessions for Microsoft Agent Framework agents, stored in Azure Cosmos DB.

One document per session, written with optimistic concurrency; served by
stateless Azure Functions (see ``function_app.py``).
"""

import importlib.metadata

from cosmos_history.adapters.cosmos.sessions import CosmosSessionStore, SessionPage, SessionRecord, SessionSummary
from cosmos_history.agents.catalog import Agents, build_agents, build_chat_client
from cosmos_history.domain.conversations import (
    create_session,
    delete_session,
    history_of,
    list_sessions,
    load_session,
    read_history,
    session_json,
)
from cosmos_history.domain.errors import (
    BadRequestError,
    IdempotencyKeyReusedError,
    InvalidSessionIdError,
    ModeConflictError,
    ModelCallError,
    PayloadTooLargeError,
    ProblemError,
    SessionConflictError,
    SessionExistsError,
    SessionNotFoundError,
    SettingsError,
    StoreUnavailableError,
    ThreadExpiredError,
    TurnInProgressError,
    UnauthorizedError,
    UnsupportedMediaTypeError,
    ValidationError,
)
from cosmos_history.domain.turn import (
    TurnGuards,
    TurnResult,
    TurnStream,
    run_turn,
    run_turn_stream,
    wait_for_running_turns,
)
from cosmos_history.http.bodies import parse_before, parse_limit, parse_new_message, parse_new_session
from cosmos_history.http.calls import Call, endpoint, json_response, problem_body, problem_response
from cosmos_history.http.openapi import openapi_document
from cosmos_history.http.page import chat_page_response
from cosmos_history.http.sse import event_stream_response, wants_event_stream
from cosmos_history.models.offline import OfflineChatClient
from cosmos_history.runtime import Runtime, build_runtime, current_settings, get_runtime, set_runtime
from cosmos_history.settings import Settings, load_settings

try:
    __version__ = importlib.metadata.version("cosmos-history")
except importlib.metadata.PackageNotFoundError:
    __version__ = "0.1.0"

__all__ = [
    "Agents",
    "BadRequestError",
    "Call",
    "CosmosSessionStore",
    "IdempotencyKeyReusedError",
    "InvalidSessionIdError",
    "ModeConflictError",
    "ModelCallError",
    "OfflineChatClient",
    "PayloadTooLargeError",
    "ProblemError",
    "Runtime",
    "SessionConflictError",
    "SessionExistsError",
    "SessionNotFoundError",
    "SessionPage",
    "SessionRecord",
    "SessionSummary",
    "Settings",
    "SettingsError",
    "StoreUnavailableError",
    "ThreadExpiredError",
    "TurnGuards",
    "TurnInProgressError",
    "TurnResult",
    "TurnStream",
    "UnauthorizedError",
    "UnsupportedMediaTypeError",
    "ValidationError",
    "__version__",
    "build_agents",
    "build_chat_client",
    "build_runtime",
    "chat_page_response",
    "create_session",
    "current_settings",
    "delete_session",
    "endpoint",
    "event_stream_response",
    "get_runtime",
    "history_of",
    "json_response",
    "list_sessions",
    "load_session",
    "load_settings",
    "openapi_document",
    "parse_before",
    "parse_limit",
    "parse_new_message",
    "parse_new_session",
    "problem_body",
    "problem_response",
    "read_history",
    "run_turn",
    "run_turn_stream",
    "session_json",
    "set_runtime",
    "wait_for_running_turns",
    "wants_event_stream",
]
