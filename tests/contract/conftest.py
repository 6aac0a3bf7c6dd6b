"""The storage contract runs against every adapter: in memory, and Cosmos DB through the real SDK."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from cosmos_history import Runtime
from cosmos_history.adapters.cosmos.lease import CosmosTurnLease
from cosmos_history.adapters.cosmos.sessions import CosmosSessions
from cosmos_history.adapters.memory import (
    MemoryDatabase,
    MemoryReplayCache,
    MemoryResponseLog,
    MemorySessions,
    MemoryTurnLease,
    MemoryTurnLog,
)
from cosmos_history.domain.ports import ReplayCache, ResponseLog, SessionRepository, TurnLease
from cosmos_history.domain.session_store import RepositorySessionStore
from cosmos_history.domain.turn_records import TurnLog


@pytest.fixture(params=["memory", "cosmos"])
def repository(request: pytest.FixtureRequest) -> SessionRepository:
    """One user's sessions in the adapter under test (a user of its own, so tests never meet)."""
    user = f"user-{uuid.uuid4().hex[:8]}"
    if request.param == "memory":
        return MemorySessions(user_id=user)
    runtime: Runtime = request.getfixturevalue("runtime")
    return runtime.store.for_user(user)


@pytest.fixture
def session_store(repository: SessionRepository) -> RepositorySessionStore:
    """The framework's ``SessionStore`` over the repository under test."""
    return RepositorySessionStore(repository)


@dataclass
class TurnPorts:
    """The ports a turn commits through, over one adapter's store, for one user of their own."""

    repository: SessionRepository
    lease: TurnLease
    replays: ReplayCache
    responses: ResponseLog
    expire: Callable[[str], Awaitable[None]]
    """Makes the session's lease expire, as if its holder had crashed a whole lease ago."""


@pytest.fixture(params=["memory", "cosmos"])
def ports(request: pytest.FixtureRequest) -> TurnPorts:
    """The lease, replay cache and response log beside the repository, in the adapter under test."""
    user = f"user-{uuid.uuid4().hex[:8]}"
    if request.param == "memory":
        database = MemoryDatabase()

        async def expire_in_memory(session_id: str) -> None:
            _, etag = database.leases[(user, session_id)]
            database.leases[(user, session_id)] = (database.clock() - 1, etag)

        return TurnPorts(
            MemorySessions(database, user_id=user),
            MemoryTurnLease(database, seconds=30),
            MemoryReplayCache(database, ttl_seconds=600),
            MemoryResponseLog(database),
            expire_in_memory,
        )
    runtime: Runtime = request.getfixturevalue("runtime")
    store = runtime.store.for_user(user)
    assert isinstance(store, CosmosSessions) and runtime.guards.replays is not None and runtime.responses
    lease = CosmosTurnLease(store.container, seconds=30)

    async def expire_in_cosmos(session_id: str) -> None:
        await store.container.patch_item(
            f"{session_id}:lease",
            partition_key=[user, session_id],
            patch_operations=[{"op": "set", "path": "/expiresAt", "value": time.time() - 1}],
        )

    return TurnPorts(store, lease, runtime.guards.replays, runtime.responses, expire_in_cosmos)


@pytest.fixture(params=["memory", "cosmos"])
def turn_log(request: pytest.FixtureRequest) -> TurnLog:
    """Turn records and their event batches in the adapter under test."""
    if request.param == "memory":
        return MemoryTurnLog(MemoryDatabase())
    runtime: Runtime = request.getfixturevalue("runtime")
    assert runtime.turn_log is not None
    return runtime.turn_log
