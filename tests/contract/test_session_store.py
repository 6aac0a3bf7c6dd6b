"""The framework's ``SessionStore`` contract, held by every adapter as hosting code relies on it."""

from __future__ import annotations

import math

import pytest
from agent_framework import AgentSession, FileSessionStore, Message

from cosmos_history.domain.budget import HistoryBudget
from cosmos_history.domain.policy import HistoryPolicy
from cosmos_history.domain.session_store import RepositorySessionStore

pytestmark = pytest.mark.integration


def conversation(count: int) -> AgentSession:
    session = AgentSession(session_id="conversation")
    session.state["in_memory"] = {
        "messages": [Message(role="user" if i % 2 == 0 else "assistant", contents=[f"m{i}"]) for i in range(count)]
    }
    return session


async def test_get_returns_the_session_id_that_was_set_not_the_key(session_store):
    await session_store.set("k", AgentSession(session_id="s"))

    restored = await session_store.get("k")

    assert restored is not None and restored.session_id == "s"


async def test_set_never_changes_the_callers_session(repository, session_id):
    store = RepositorySessionStore(repository, policy=HistoryPolicy(budget=HistoryBudget(max_messages=40)))
    session = conversation(300)
    before = session.to_dict()

    await store.set(session_id, session)

    assert session.to_dict() == before and len(session.state["in_memory"]["messages"]) == 300


async def test_a_service_mode_store_keeps_every_state_but_the_history(repository, session_id):
    service = HistoryPolicy(default_mode="service")
    session = conversation(4)
    session.service_session_id = "resp_123"
    session.state["tool_approval"] = {"pending": {"call-1": {"name": "schedule_reminder"}}}
    session.state["notes"] = {"items": ["buy milk"]}

    await RepositorySessionStore(repository, policy=service).set(session_id, session)
    restored = await RepositorySessionStore(repository, policy=service).get(session_id)

    assert restored is not None and restored.service_session_id == "resp_123"
    assert restored.state == {
        "tool_approval": {"pending": {"call-1": {"name": "schedule_reminder"}}},
        "notes": {"items": ["buy milk"]},
    }


@pytest.mark.parametrize("key", ["tenant/user", "two words", "café", "telegram:123:456", ".", "..", "x" * 128])
async def test_any_id_of_up_to_128_characters_round_trips(session_store, key):
    session = AgentSession(session_id=key)
    session.state["for"] = key

    await session_store.set(key, session)
    restored = await session_store.get(key)
    await session_store.delete(key)

    assert restored is not None and restored.state["for"] == key and restored.session_id == key
    assert await session_store.get(key) is None


@pytest.mark.parametrize("key", ["", "x" * 129])
async def test_an_empty_or_too_long_id_is_a_value_error_naming_session_id(session_store, key):
    for call in (session_store.get(key), session_store.set(key, AgentSession()), session_store.delete(key)):
        with pytest.raises(ValueError, match="session_id"):
            await call


class SpecialSession(AgentSession):
    pass


def with_state(**state: object) -> AgentSession:
    session = AgentSession()
    session.state.update(state)
    return session


class Opaque:
    """A value with no codec: neither the framework's stores nor this one can keep it."""


@pytest.mark.parametrize(
    ("session", "error"),
    [
        (with_state(score=math.nan), ValueError),
        (with_state(nested={"values": [1.0, math.inf]}), ValueError),
        (with_state(thing=Opaque()), TypeError),
        (SpecialSession(), TypeError),
    ],
    ids=["nan", "inf-in-a-list", "unsupported-type", "subclass"],
)
async def test_unstorable_sessions_fail_as_the_framework_file_store_fails_and_nothing_is_written(
    session_store, session_id, tmp_path, session, error
):
    with pytest.raises(error) as framework:
        await FileSessionStore(tmp_path).set(session_id, session)

    with pytest.raises(error) as ours:
        await session_store.set(session_id, session)

    assert str(ours.value).replace(type(session_store).__name__, "FileSessionStore") == str(framework.value)
    assert await session_store.get(session_id) is None
