"""A one-route Functions app running the ``CosmosHistoryProvider`` turn, for the HTTP comparison.

    python -m cosmos_history.devhost --app bench.provider_app

``POST /api/sessions/{id}/messages`` with ``{"message": "..."}`` runs one turn;
``GET /api/health`` lets the host report ready. The Cosmos client is the project's
(``create_client``, one per process, same options), so only the history design differs.
"""

from __future__ import annotations

import asyncio
import json
import os

import azure.functions as func

from cosmos_history import load_settings
from cosmos_history._cosmos import create_client

from .provider import PROVIDER_CONTAINER, ProviderTurns, ensure_provider_container

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

_turns: ProviderTurns | None = None
_lock = asyncio.Lock()


async def provider_turns() -> ProviderTurns:
    """Built once, on the first request, on the host's running event loop."""
    global _turns
    async with _lock:
        if _turns is None:
            settings = load_settings()
            client = create_client(settings.cosmos)
            name = os.environ.get("BENCH_PROVIDER_CONTAINER", PROVIDER_CONTAINER)
            container = await ensure_provider_container(client, settings, name)
            _turns = ProviderTurns(container, settings, batch_supported=not settings.cosmos.is_local)
    return _turns


@app.route(route="sessions/{id}/messages", methods=["POST"])
async def post_message(req: func.HttpRequest) -> func.HttpResponse:
    turns = await provider_turns()
    session_id = req.route_params["id"]
    message = json.loads(req.get_body())["message"]
    reply = await turns.run_turn(session_id, message)
    body = {"sessionId": session_id, "reply": reply}
    return func.HttpResponse(json.dumps(body, ensure_ascii=False), mimetype="application/json")


@app.route(route="health", methods=["GET"])
async def health(req: func.HttpRequest) -> func.HttpResponse:
    await provider_turns()
    return func.HttpResponse('{"status":"ok"}', mimetype="application/json")
