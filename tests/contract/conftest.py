"""The storage contract runs against every adapter: in memory, and Cosmos DB through the real SDK."""

from __future__ import annotations

import uuid

import pytest

from cosmos_history import Runtime
from cosmos_history.adapters.memory import MemorySessions
from cosmos_history.domain.ports import SessionRepository
from cosmos_history.domain.session_store import RepositorySessionStore


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
