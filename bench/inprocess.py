"""The three turn handlers in this process, on counted Cosmos clients, plus fast history seeding.

``local`` and ``service`` are the project's registered ``post_message`` function called with a
FastAPI request (the code path Azure runs under HTTP streams, minus the socket); ``provider`` is
:class:`~bench.provider.ProviderTurns`. All share one :class:`~bench.counting.RequestCounter`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import azure.functions as func
from agent_framework import Agent, AgentSession, InMemoryHistoryProvider, Message
from azure.cosmos.aio import CosmosClient
from azurefunctions.extensions.http.fastapi import Request, Response

from cosmos_history import Runtime, SessionRecord, build_agents, build_runtime, create_app, load_settings
from cosmos_history.adapters.cosmos.client import create_client
from cosmos_history.domain.budget import fit_to_budget
from cosmos_history.domain.compaction import SUMMARY
from cosmos_history.domain.records import TurnItems, utc_now
from cosmos_history.domain.turn import title_from

from .counting import CountingTransport, RequestCounter
from .hosts import BenchEnv
from .model import REPLY, USER_MESSAGE, BenchChatClient
from .provider import ProviderTurns, ensure_provider_container

Variant = Literal["local", "service", "provider"]
VARIANTS: tuple[Variant, ...] = ("local", "service", "provider")
USER = "bench-user"


def user_message(turn: int) -> str:
    """A distinct question per turn (the provider drops a message identical to the one before it)."""
    return f"Turn {turn}. {USER_MESSAGE}"


def new_session_id(variant: str, label: str = "") -> str:
    return f"{variant}-{label}-{uuid.uuid4().hex[:10]}"


def message_request(session_id: str, turn: int, mode: str, *, stream: bool = False) -> Request:
    """What the Functions worker hands ``post_message`` for ``POST /api/sessions/{id}/messages``
    under HTTP streams: a FastAPI request with the route values in ``path_params``."""
    body = json.dumps({"message": user_message(turn), "mode": mode, **({"stream": True} if stream else {})}).encode()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {
        "type": "http",
        "method": "POST",
        "path": f"/api/sessions/{session_id}/messages",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"x-user-id", USER.encode())],
        "path_params": {"id": session_id},
    }
    return Request(scope, receive)


def provider_container(session_id: str) -> str:
    """The container of a provider session in this benchmark: one per session (see ``bench.provider_app``)."""
    return f"p-{session_id}"


def registered_function(app: func.FunctionApp, name: str) -> Callable[[Request], Awaitable[Response]]:
    """The user function registered as ``name``, exactly what the Functions worker would call.

    ``FunctionApp.get_functions`` records the names it returned and refuses a second call on the
    same app (duplicate names), so the record is restored: the worker, or a test, can still index it.
    """
    recorded = app.functions_bindings
    try:
        functions = {f.get_function_name(): f.get_user_function() for f in app.get_functions()}
    finally:
        app.functions_bindings = recorded
    return functions[name]


@dataclass
class Variants:
    counter: RequestCounter
    runtime: Runtime
    provider_client: CosmosClient
    batch_supported: bool
    post_message: Callable[[Request], Awaitable[Response]]
    transcripts: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    providers: dict[str, ProviderTurns] = field(default_factory=dict)

    async def provider(self, container: str) -> ProviderTurns:
        """The provider turn handler on ``container``, created (uncounted) on first use."""
        if container not in self.providers:
            with self.counter.pause():
                made = await ensure_provider_container(self.provider_client, self.runtime.settings, container)
            self.providers[container] = ProviderTurns(made, self.runtime.settings, batch_supported=self.batch_supported)
        return self.providers[container]

    async def turn(self, variant: Variant, session_id: str, turn: int) -> None:
        """Run turn number ``turn`` of ``session_id`` with one variant."""
        if variant == "provider":
            provider = await self.provider(provider_container(session_id))
            await provider.run_turn(session_id, user_message(turn))
            return
        response = await self.post_message(message_request(session_id, turn, variant))
        if response.status_code != 200:
            raise RuntimeError(f"{variant} turn {turn} answered {response.status_code}: {response.body!r}")

    async def seed(self, variant: Variant, session_id: str, turns: int) -> None:
        """Store ``turns`` earlier turns in one write, uncounted: the model runs in memory, the
        session is written once (store.save / provider.save_messages), so long histories are quick.

        A local-mode session is fitted to its budget first, as every turn's commit fits it, and its summary
        covers what went to the archive: the steady state of a conversation that grew turn by turn, not a
        window of ``turns`` turns that the first timed turns would archive and summarise 200 messages at a time.
        """
        if turns <= 0:
            return
        with self.counter.pause():
            mode = "service" if variant == "service" else "local"
            session = await self.transcript(mode, session_id, turns)
            if variant == "provider":
                history: list[Message] = session.state[InMemoryHistoryProvider.DEFAULT_SOURCE_ID]["messages"]
                await (await self.provider(provider_container(session_id))).seed(session_id, history)
                return
            now = utc_now()
            title = title_from(user_message(1)) if mode == "local" else None
            record = SessionRecord(session, USER, mode, now, now, turns=turns, title=title)
            store = self.runtime.store.for_user(USER)
            lease = self.runtime.guards.lease
            claim = await lease.claim(session_id, USER) if lease is not None else None  # as a real turn does
            await fit_to_budget(store, record, self.runtime.policy.budget)  # as every commit does
            saved = await store.save(record, etag=None, items=TurnItems(claim.etag if claim else None))
            if saved.archive.count:  # a steady state: what went to the archive is in the summary already
                saved.session.state[SUMMARY] = {"text": REPLY, "through": saved.archive.count}
                await store.save(saved, etag=saved.etag)

    async def transcript(self, mode: str, session_id: str, turns: int) -> AgentSession:
        """A session after ``turns`` turns in memory; computed once per (mode, turns), then re-keyed."""
        key = (mode, turns)
        if key not in self.transcripts:
            self.transcripts[key] = (
                await transcript(self.runtime.agents.resolve(None).for_mode(mode), "seed", turns)
            ).to_dict()
        return AgentSession.from_dict({**self.transcripts[key], "session_id": session_id})

    async def stored_bytes(self, variant: Variant, session_id: str) -> int:
        """What the session occupies in Cosmos DB (compact JSON of its items, system properties included)."""
        with self.counter.pause():
            if variant == "provider":
                return await (await self.provider(provider_container(session_id))).stored_bytes(session_id)
            document = await self.runtime.store.container.read_item(session_id, partition_key=[USER, session_id])
            return len(json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode())


async def transcript(agent: Agent, session_id: str, turns: int) -> AgentSession:
    """A session after ``turns`` real agent turns with the stand-in model, nothing stored."""
    session = AgentSession(session_id=session_id)
    for turn in range(1, turns + 1):
        await agent.run(user_message(turn), session=session)
    return session


@asynccontextmanager
async def variants(bench: BenchEnv, counter: RequestCounter | None = None) -> AsyncIterator[Variants]:
    """The three handlers on counted clients; the project's route table runs on an app of its own."""
    import function_app

    counter = counter if counter is not None else RequestCounter()
    counter.real_charges = bench.real_account
    settings = load_settings(bench.env)
    with counter.pause():
        runtime = await build_runtime(
            settings, agents=build_agents(settings, BenchChatClient()), transport=CountingTransport(counter)
        )
        provider_client = create_client(settings.cosmos, transport=CountingTransport(counter))
    try:
        app = create_app(function_app.ROUTES, runtime=runtime)
        post_message = registered_function(app, "post_message_route")
        yield Variants(counter, runtime, provider_client, bench.real_account, post_message)
    finally:
        await runtime.close()
        await provider_client.close()
