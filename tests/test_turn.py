"""The turn, as a service function: unit tests with an in-memory store and a recording model."""

from __future__ import annotations

import pytest

from cosmos_history import (
    ModeConflictError,
    ModelCallError,
    SessionConflictError,
    SessionNotFoundError,
    ValidationError,
    build_agents,
    load_settings,
    run_turn,
)
from cosmos_history._turn import title_from

from .fakes import InMemoryRecordStore, RecordingChatClient


@pytest.fixture
def model() -> RecordingChatClient:
    return RecordingChatClient()


@pytest.fixture
def agents(model: RecordingChatClient):
    return build_agents(load_settings({}), model)


@pytest.fixture
def store() -> InMemoryRecordStore:
    return InMemoryRecordStore(user_id="alice")


async def test_first_turn_creates_the_session_and_returns_the_reply(store, agents, model):
    result = await run_turn(store, agents, session_id="s1", message="Hello there")

    assert result.to_json() == {"sessionId": "s1", "reply": "reply 1", "turn": 1, "mode": "local"}
    stored = await store.load("s1")
    assert stored is not None and stored.turns == 1 and stored.title == "Hello there"


async def test_second_turn_sends_the_first_turn_to_the_model(store, agents, model):
    await run_turn(store, agents, session_id="s1", message="first")
    await run_turn(store, agents, session_id="s1", message="second")

    assert model.texts(-1) == [("user", "first"), ("assistant", "reply 1"), ("user", "second")]


async def test_local_mode_asks_the_service_not_to_store(store, agents, model):
    await run_turn(store, agents, session_id="s1", message="hi")

    assert model.options[-1].get("store") is False


async def test_service_mode_sends_only_the_new_message(store, agents, model):
    await run_turn(store, agents, session_id="s1", message="first", mode="service")
    await run_turn(store, agents, session_id="s1", message="second")

    assert model.texts(-1) == [("user", "second")]
    assert model.options[-1].get("store") is True


async def test_failed_model_call_leaves_the_session_unchanged(store, agents, model):
    await run_turn(store, agents, session_id="s1", message="first")
    before = await store.load("s1")
    model.fail_with = RuntimeError("model down")

    with pytest.raises(ModelCallError):
        await run_turn(store, agents, session_id="s1", message="second")

    after = await store.load("s1")
    assert after is not None and before is not None
    assert after.etag == before.etag and after.session.to_dict() == before.session.to_dict()


async def test_failed_first_turn_creates_nothing(store, agents, model):
    model.fail_with = RuntimeError("model down")

    with pytest.raises(ModelCallError):
        await run_turn(store, agents, session_id="s1", message="first")

    assert await store.load("s1") is None


async def test_a_turn_racing_another_is_rejected_not_merged(store, agents, model):
    await run_turn(store, agents, session_id="s1", message="first")
    original_load = store.load

    async def load_then_someone_else_writes(session_id: str):
        record = await original_load(session_id)
        other = await original_load(session_id)
        assert other is not None
        other.turns += 1
        await store.save(other, etag=other.etag)
        return record

    store.load = load_then_someone_else_writes  # type: ignore[method-assign]
    with pytest.raises(SessionConflictError):
        await run_turn(store, agents, session_id="s1", message="loser")


async def test_asking_for_the_other_mode_is_a_conflict(store, agents):
    await run_turn(store, agents, session_id="s1", message="first", mode="local")

    with pytest.raises(ModeConflictError):
        await run_turn(store, agents, session_id="s1", message="again", mode="service")


async def test_service_mode_is_refused_when_the_model_api_is_chat_completions(store, model):
    agents = build_agents(load_settings({"MODEL_API": "chat"}), model)

    with pytest.raises(ValidationError):
        await run_turn(store, agents, session_id="s1", message="hi", mode="service")


async def test_another_users_session_is_invisible_and_not_overwritten(agents, store, model):
    await run_turn(store, agents, session_id="s1", message="alice's secret")
    mallory = InMemoryRecordStore(user_id="mallory")
    mallory.documents = store.documents

    with pytest.raises(SessionNotFoundError):
        await run_turn(mallory, agents, session_id="s1", message="hijack")
    assert len(model.calls) == 1, "the model must not be paid for a turn on someone else's session"
    record = await store.load("s1")
    assert record is not None and record.turns == 1


def test_title_is_the_first_words_cut_at_a_word_boundary():
    assert title_from("  Plan   a trip\nto Lisbon ") == "Plan a trip to Lisbon"
    long = title_from("word " * 40)
    assert len(long) <= 61 and long.endswith("…") and not long[:-1].endswith(" ")
