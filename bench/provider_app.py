"""A one-route Functions app running the ``CosmosHistoryProvider`` turn, for the HTTP comparison.

    python -m devtools.devhost --app bench.provider_app

``POST /api/sessions/{id}/messages`` with ``{"message": "..."}`` runs one turn;
``GET /api/health`` lets the host report ready. The Cosmos client is the project's
(``create_client``, one per process, same options), so only the history design differs.

``X-Bench-Container`` names the container to use (created on first use): the local Cosmos DB
scans a whole container for every query, so the benchmark gives each measurement its own
container to keep other sessions' items from slowing the provider's queries, as a real
account's partition-scoped, indexed query would.
"""

from __future__ import annotations

import asyncio
import json
import os

import azure.functions as func
from azure.cosmos.aio import CosmosClient

from cosmos_history import load_settings
from cosmos_history.adapters.cosmos.client import create_client

from .provider import CONTAINER_HEADER, PROVIDER_CONTAINER, ProviderTurns, ensure_provider_container

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

_client: CosmosClient | None = None
_turns: dict[str, ProviderTurns] = {}
_lock = asyncio.Lock()


async def provider_turns(req: func.HttpRequest) -> ProviderTurns:
    """One client per process, built on the first request on the host's running event loop."""
    global _client
    name = req.headers.get(CONTAINER_HEADER) or os.environ.get("BENCH_PROVIDER_CONTAINER", PROVIDER_CONTAINER)
    if name in _turns:
        return _turns[name]
    async with _lock:
        if name not in _turns:
            settings = load_settings()
            if _client is None:
                _client = create_client(settings.cosmos)
            container = await ensure_provider_container(_client, settings, name)
            _turns[name] = ProviderTurns(container, settings, batch_supported=not settings.cosmos.is_local)
    return _turns[name]


@app.route(route="sessions/{id}/messages", methods=["POST"])
async def post_message(req: func.HttpRequest) -> func.HttpResponse:
    turns = await provider_turns(req)
    session_id = req.route_params["id"]
    message = json.loads(req.get_body())["message"]
    reply = await turns.run_turn(session_id, message)
    body = {"sessionId": session_id, "reply": reply}
    return func.HttpResponse(json.dumps(body, ensure_ascii=False), mimetype="application/json")


@app.route(route="health", methods=["GET"])
async def health(req: func.HttpRequest) -> func.HttpResponse:
    await provider_turns(req)
    return func.HttpResponse('{"status":"ok"}', mimetype="application/json")
