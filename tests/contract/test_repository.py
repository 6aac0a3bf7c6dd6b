"""The session repository contract, held by every adapter (see ``conftest.py``)."""

from __future__ import annotations

import uuid

import pytest
from agent_framework import register_state_type

from cosmos_history import SessionConflictError, SessionRecord
from cosmos_history.domain.errors import SessionExistsError
from cosmos_history.domain.ports import SessionRepository
from cosmos_history.domain.tool_journal import StartedCall

pytestmark = pytest.mark.integration


class Preferences:
    """A custom state type, registered as the framework requires for cold-start restore."""

    def __init__(self, language: str) -> None:
        self.language = language

    def to_dict(self) -> dict[str, str]:
        return {"language": self.language}

    @classmethod
    def from_dict(cls, payload: dict[str, str]) -> Preferences:
        return cls(payload["language"])


register_state_type(Preferences, type_id="test_preferences")


def new_record(repository: SessionRepository, session_id: str, **kwargs) -> SessionRecord:
    return SessionRecord.new(session_id, user_id=repository.user_id, mode=kwargs.pop("mode", "local"), **kwargs)


async def test_a_missing_session_loads_as_none(repository, session_id):
    assert await repository.load(session_id) is None


async def test_save_and_load_round_trip_including_a_registered_state_type(repository, session_id):
    record = new_record(repository, session_id, title="Trip")
    record.session.state["prefs"] = Preferences("pt")
    record.session.service_session_id = None
    saved = await repository.save(record, etag=None)

    loaded = await repository.load(session_id)

    assert loaded is not None and loaded.etag == saved.etag
    assert isinstance(loaded.session.state["prefs"], Preferences)
    assert loaded.session.state["prefs"].language == "pt"
    assert (loaded.title, loaded.mode, loaded.user_id, loaded.turns) == ("Trip", "local", repository.user_id, 0)


async def test_a_stale_etag_is_a_conflict_and_the_stored_session_is_unchanged(repository, session_id):
    first = await repository.save(new_record(repository, session_id), etag=None)
    first.turns = 1
    second = await repository.save(first, etag=first.etag)

    first.turns = 99
    with pytest.raises(SessionConflictError):
        await repository.save(first, etag=first.etag)

    current = await repository.load(session_id)
    assert current is not None and current.turns == 1 and current.etag == second.etag


async def test_creating_an_existing_session_is_a_conflict(repository, session_id):
    await repository.save(new_record(repository, session_id), etag=None)

    with pytest.raises(SessionExistsError):
        await repository.save(new_record(repository, session_id), etag=None)


async def test_another_users_session_is_unreachable(repository, session_id):
    await repository.save(new_record(repository, session_id, title="mine"), etag=None)
    other = repository.for_user(f"someone-else-{session_id}")

    assert await other.load(session_id) is None
    assert await other.delete(session_id) is False
    assert (await other.list_sessions()).sessions == []
    loaded = await repository.load(session_id)
    assert loaded is not None and loaded.title == "mine"


async def test_two_users_may_use_the_same_session_id_without_conflict(repository, session_id):
    other = repository.for_user(f"someone-else-{session_id}")
    await repository.save(new_record(repository, session_id, title="mine"), etag=None)
    await other.save(new_record(other, session_id, title="theirs"), etag=None)

    assert await other.delete(session_id) is True

    loaded = await repository.load(session_id)
    assert loaded is not None and loaded.title == "mine" and loaded.user_id == repository.user_id
    assert await other.load(session_id) is None


async def test_delete_removes_the_session(repository, session_id):
    await repository.save(new_record(repository, session_id), etag=None)

    assert await repository.delete(session_id) is True
    assert await repository.load(session_id) is None
    assert await repository.delete(session_id) is False


async def test_listing_pages_through_the_callers_sessions_newest_first(repository):
    ids = [f"list-{uuid.uuid4().hex[:8]}-{n}" for n in range(5)]
    for session_id in ids:
        await repository.save(new_record(repository, session_id), etag=None)
    await repository.for_user("intruder").save(
        SessionRecord.new(f"other-{uuid.uuid4().hex[:8]}", user_id="intruder", mode="local"), etag=None
    )

    first = await repository.list_sessions(limit=2)
    second = await repository.list_sessions(limit=2, continuation_token=first.continuation_token)
    third = await repository.list_sessions(limit=2, continuation_token=second.continuation_token)

    listed = [s.id for page in (first, second, third) for s in page.sessions]
    assert listed == list(reversed(ids))
    assert first.continuation_token and second.continuation_token


async def test_saving_a_session_deleted_meanwhile_is_a_conflict_not_a_resurrection(repository, session_id):
    saved = await repository.save(new_record(repository, session_id), etag=None)
    await repository.delete(session_id)

    with pytest.raises(SessionConflictError):
        await repository.save(saved, etag=saved.etag)

    assert await repository.load(session_id) is None


async def test_noting_a_started_tool_call_changes_only_the_journal_and_is_conditional(repository, session_id):
    stored = await repository.save(new_record(repository, session_id, title="Pay"), etag=None)
    running = await repository.load(session_id)
    running.turns, running.title = 7, "changed in memory only"
    running.tool_journal = [StartedCall("call-1", "pay", "digest", "key-1")]

    noted = await repository.note_started(running)
    again = await repository.load(session_id)
    stale = await repository.load(session_id)
    stale.etag = stored.etag
    with pytest.raises(SessionConflictError):
        await repository.note_started(stale)

    assert noted == again.etag != stored.etag
    assert again.tool_journal == running.tool_journal and (again.turns, again.title) == (0, "Pay")
    assert (await repository.load(session_id)).etag == noted


async def test_noting_a_started_call_on_a_first_turn_creates_the_empty_session_once(repository, session_id):
    record = new_record(repository, session_id, agent="ledger")
    record.tool_journal = [StartedCall("call-1", "ring", "digest", "key-1")]
    record.session.state["partly run"] = True

    await repository.note_started(record)
    created = await repository.load(session_id)
    record.etag = None
    with pytest.raises(SessionExistsError):
        await repository.note_started(record)

    assert created.tool_journal == record.tool_journal and created.turns == 0 and created.agent == "ledger"
    assert "partly run" not in created.session.state
