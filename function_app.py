"""The HTTP API of the app: its route table, and the one module-level ``app`` Azure Functions indexes.

Handlers live in ``cosmos_history/http/handlers.py``; :func:`cosmos_history.app.create_app` wraps them
(caller identity, problem+json errors) and binds them to one runtime, built on the first request.
Public routes hold no data and are anonymous whatever ``HTTP_AUTH_LEVEL`` says.
"""

from cosmos_history.app import Route, create_app
from cosmos_history.http import handlers as api

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
    Route("GET", "openapi.json", api.openapi_route, public=True),
    Route("GET", "chat", api.chat_page_route, public=True),
)

app = create_app(ROUTES)
