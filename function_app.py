"""The HTTP API of the app: its route table, and the one module-level ``app`` Azure Functions indexes.

Handlers live in ``cosmos_history/http/handlers.py``; :func:`cosmos_history.app.create_app` wraps them
(caller identity, problem+json errors) and binds them to one runtime, built on the first request.
Public routes hold no data and are anonymous whatever ``HTTP_AUTH_LEVEL`` says.

The garbage collector is paused while this module (and so every dependency) is imported: what an import creates
lives as long as the worker, so each collection during it only walked a growing heap for nothing (about 15% of a
cold import's CPU, bench/optimisations.md). ``create_app`` then freezes those objects out of the collector's way and
the collector is switched back on; import-time garbage left by the pause is a few hundred objects.
"""

import gc

gc.disable()  # switched back on below, once the app is built

import importlib

from azurefunctions.extensions.http.fastapi import Response

from cosmos_history.app import Route, create_app
from cosmos_history.background_jobs import background_triggers
from cosmos_history.domain.errors import ProblemError
from cosmos_history.http import handlers as api
from cosmos_history.http.calls import Call, ErrorRenderer, Handler
from cosmos_history.settings import load_settings
from cosmos_history.workflows.jobs import workflow_triggers


def _handler(module: str, name: str) -> Handler:
    """The handler ``module.name``, imported on its first call: a cold start pays for the OpenAI-compatible
    endpoint, the MCP server, AG-UI and A2A (and their SDKs), the workflow routes and those of a running turn (reattach,
    cancel) only when they are used; the native API's first request needs none of them."""

    async def handler(call: Call) -> Response:
        return await getattr(importlib.import_module(module), name)(call)

    handler.__name__ = handler.__qualname__ = name
    return handler


def _errors(module: str) -> ErrorRenderer:
    """The error renderer ``module.error_response`` (an API's own error shape), imported on first use."""

    def render(error: ProblemError) -> Response:
        return importlib.import_module(module).error_response(error)

    return render


OPENAI = "cosmos_history.http.openai.handlers"
OPENAI_ERRORS = _errors("cosmos_history.http.openai.objects")
MCP = "cosmos_history.http.mcp.transport"
AGUI = "cosmos_history.http.agui.route"
A2A = "cosmos_history.http.a2a.transport"
WORKFLOWS = "cosmos_history.http.workflows"
TURNS = "cosmos_history.http.turns"

ROUTES = (
    Route("POST", "sessions", api.create_session_route),
    Route("GET", "sessions", api.list_sessions_route),
    Route("GET", "sessions/{id}", api.get_session_route),
    Route("DELETE", "sessions/{id}", api.delete_session_route),
    Route("POST", "sessions/{id}/messages", api.post_message_route),
    Route("GET", "sessions/{id}/messages", api.list_messages_route),
    Route("POST", "sessions/{id}/approvals", api.post_approvals_route),
    Route("GET", "sessions/{id}/turns/{turn}", _handler(TURNS, "get_turn_route")),
    Route("GET", "sessions/{id}/turns/{turn}/events", _handler(TURNS, "turn_events_route")),
    Route("POST", "sessions/{id}/turns/{turn}/cancel", _handler(TURNS, "cancel_turn_route")),
    Route("GET", "agents", api.list_agents_route),
    Route("GET", "workflows", _handler(WORKFLOWS, "list_workflows_route")),
    Route("POST", "workflows/{name}/runs", _handler(WORKFLOWS, "start_run_route")),
    Route("GET", "workflows/runs/{id}", _handler(WORKFLOWS, "get_run_route")),
    Route("GET", "workflows/runs/{id}/events", _handler(WORKFLOWS, "run_events_route")),
    Route("POST", "workflows/runs/{id}/responses", _handler(WORKFLOWS, "respond_route")),
    Route("POST", "workflows/runs/{id}/cancel", _handler(WORKFLOWS, "cancel_run_route")),
    Route("GET", "health", api.health_route),
    # The OpenAI Responses-compatible endpoint: base_url .../api/v1 for the openai SDKs.
    Route("POST", "v1/responses", _handler(OPENAI, "create_response_route"), errors=OPENAI_ERRORS),
    Route("GET", "v1/responses/{id}", _handler(OPENAI, "get_response_route"), errors=OPENAI_ERRORS),
    Route("DELETE", "v1/responses/{id}", _handler(OPENAI, "delete_response_route"), errors=OPENAI_ERRORS),
    Route("POST", "v1/responses/{id}/cancel", _handler(OPENAI, "cancel_response_route"), errors=OPENAI_ERRORS),
    Route("GET", "v1/responses/{id}/input_items", _handler(OPENAI, "list_input_items_route"), errors=OPENAI_ERRORS),
    Route("GET", "v1/models", _handler(OPENAI, "list_models_route"), errors=OPENAI_ERRORS),
    Route("GET", "v1/models/{id}", _handler(OPENAI, "get_model_route"), errors=OPENAI_ERRORS),
    # The MCP server (Streamable HTTP, stateless): every agent as a tool; errors are JSON-RPC errors.
    Route("POST", "mcp", _handler(MCP, "mcp_route"), errors=_errors(MCP)),
    # AG-UI (SSE): threadId is the session, a run is a turn; errors before the stream are problem+json.
    Route("POST", "ag-ui/{agent}", _handler(AGUI, "agui_route")),
    # A2A (JSON-RPC, A2A 1.0): each agent's card, and its messages and tasks over the caller's sessions.
    Route("GET", "a2a/{agent}/.well-known/agent-card.json", _handler(A2A, "agent_card_route")),
    Route("POST", "a2a/{agent}", _handler(A2A, "a2a_route"), errors=_errors(A2A)),
    Route("GET", "openapi.json", api.openapi_route, public=True),
    Route("GET", "chat", api.chat_page_route, public=True),
)

# Background turns run in queue functions (Azure Storage queues on the host's storage account).
try:
    _settings = load_settings()
    app = create_app(
        ROUTES, triggers=[*background_triggers(_settings), *workflow_triggers(_settings)], settings=_settings
    )
finally:
    gc.enable()
