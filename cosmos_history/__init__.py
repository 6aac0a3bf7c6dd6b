"""Conversation sessions for Microsoft Agent Framework agents, stored in Azure Cosmos DB.

One document per session, written with optimistic concurrency; served by
stateless Azure Functions (see ``function_app.py``).
"""

import importlib.metadata

from ._agents import Agents, build_agents, build_chat_client
from ._conversations import create_session, delete_session, history_of, list_sessions, load_session, session_json
from ._errors import (
    BadRequestError,
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
    UnauthorizedError,
    UnsupportedMediaTypeError,
    ValidationError,
)
from ._http import Call, endpoint, json_response, problem_response
from ._offline import OfflineChatClient
from ._page import chat_page_response
from ._requests import parse_limit, parse_new_message, parse_new_session
from ._runtime import Runtime, build_runtime, current_settings, get_runtime, set_runtime
from ._settings import Settings, load_settings
from ._store import CosmosSessionStore, SessionPage, SessionRecord, SessionSummary
from ._turn import TurnResult, run_turn

try:
    __version__ = importlib.metadata.version("cosmos-history")
except importlib.metadata.PackageNotFoundError:
    __version__ = "0.1.0"

__all__ = [
    "Agents",
    "BadRequestError",
    "Call",
    "CosmosSessionStore",
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
    "TurnResult",
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
    "get_runtime",
    "history_of",
    "json_response",
    "list_sessions",
    "load_session",
    "load_settings",
    "parse_limit",
    "parse_new_message",
    "parse_new_session",
    "problem_response",
    "run_turn",
    "session_json",
    "set_runtime",
]
