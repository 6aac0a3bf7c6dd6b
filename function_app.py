"""The HTTP API of the app: its route table, and the one module-level ``app`` Azure Functions indexes.

Handlers live in ``cosmos_history/http/handlers.py``; :func:`cosmos_history.app.create_app` wraps them
(caller identity, problem+json errors) and binds them to one runtime, built on the first request.
Public routes hold no data and are anonymous whatever ``HTTP_AUTH_LEVEL`` says.
"""

from cosmos_history.app import Route, create_app
from cosmos_history.http import handlers as api
from cosmos_history.http.mcp import transport as mcp
from cosmos_history.http.openai import handlers as openai
from cosmos_history.http.openai.objects import error_response

ROUTES = (
    Route("POST", "sessions", api.create_session_route),
    Route("GET", "sessions", api.list_sessions_route),
    Route("GET", "sessions/{id}", api.get_session_route),
    Route("DELETE", "sessions/{id}", api.delete_session_route),
    Route("POST", "sessions/{id}/messages", api.post_message_route),
    Route("GET", "sessions/{id}/messages", api.list_messages_route),
    Route("POST", "sessions/{id}/approvals", api.post_approvals_route),
    Route("GET", "agents", api.list_agents_route),
    Route("GET", "health", api.health_route),
    # The OpenAI Responses-compatible endpoint: base_url .../api/v1 for the openai SDKs.
    Route("POST", "v1/responses", openai.create_response_route, errors=error_response),
    Route("GET", "v1/responses/{id}", openai.get_response_route, errors=error_response),
    Route("DELETE", "v1/responses/{id}", openai.delete_response_route, errors=error_response),
    Route("GET", "v1/responses/{id}/input_items", openai.list_input_items_route, errors=error_response),
    Route("GET", "v1/models", openai.list_models_route, errors=error_response),
    Route("GET", "v1/models/{id}", openai.get_model_route, errors=error_response),
    # The MCP server (Streamable HTTP, stateless): every agent as a tool; errors are JSON-RPC errors.
    Route("POST", "mcp", mcp.mcp_route, errors=mcp.error_response),
    Route("GET", "openapi.json", api.openapi_route, public=True),
    Route("GET", "chat", api.chat_page_route, public=True),
)

app = create_app(ROUTES)
