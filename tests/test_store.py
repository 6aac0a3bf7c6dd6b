"""CosmosSessionStore against the local Cosmos DB through the real azure-cosmos SDK."""

from __future__ import annotations

import uuid

import pytest
from agent_framework import AgentSession, register_state_type
from azure.cosmos import exceptions as cosmos_errors

from cosmos_history import CosmosSessionStore, SessionConflictError, SessionNotFoundError, SessionRecord
from cosmos_history.adapters.cosmos.client import INDEXING_POLICY, PARTITION_KEY_PATH
from cosmos_history.domain.errors import BadRequestError, InvalidSessionIdError, SessionExistsError

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


def new_record(store: CosmosSessionStore, session_id: str, **kwargs) -> SessionRecord:
    return SessionRecord.new(session_id, user_id=store.user_id, mode=kwargs.pop("mode", "local"), **kwargs)


async def test_a_missing_item_read_answers_404_not_500(container):
    """The local server's patch: a point read of a missing item is a 404 (it answered 500 unpatched)."""
    with pytest.raises(cosmos_errors.CosmosResourceNotFoundError):
        await container.read_item("no-such-item", partition_key="no-such-item")


async def test_a_missing_session_loads_as_none(store, session_id):
    assert await store.load(session_id) is None
    assert await store.get(session_id) is None


async def test_save_and_load_round_trip_including_a_registered_state_type(store, session_id):
    record = new_record(store, session_id, title="Trip")
    record.session.state["prefs"] = Preferences("pt")
    record.session.service_session_id = None
    saved = await store.save(record, etag=None)

    loaded = await store.load(session_id)

    assert loaded is not None and loaded.etag == saved.etag
    assert isinstance(loaded.session.state["prefs"], Preferences)
    assert loaded.session.state["prefs"].language == "pt"
    assert (loaded.title, loaded.mode, loaded.user_id, loaded.turns) == ("Trip", "local", store.user_id, 0)


async def test_the_document_carries_the_metadata_queries_use(store, container, session_id):
    await store.save(new_record(store, session_id, title="T"), etag=None)

    document = await container.read_item(session_id, partition_key=session_id)

    assert document["id"] == document["sessionId"] == session_id
    assert document["type"] == "session" and document["schemaVersion"] == 1
    assert document["userId"] == store.user_id and document["mode"] == "local"
    assert {"createdAt", "updatedAt", "turns", "title", "session"} <= document.keys()
    assert "ttl" not in document


async def test_retention_writes_a_ttl_on_every_save(store, container, session_id):
    retained = CosmosSessionStore(container, user_id=store.user_id, ttl_seconds=3600)
    saved = await retained.save(new_record(store, session_id), etag=None)
    await retained.save(saved, etag=saved.etag)

    document = await container.read_item(session_id, partition_key=session_id)

    assert document["ttl"] == 3600


async def test_a_stale_etag_is_a_conflict_and_the_stored_session_is_unchanged(store, session_id):
    first = await store.save(new_record(store, session_id), etag=None)
    first.turns = 1
    second = await store.save(first, etag=first.etag)

    first.turns = 99
    with pytest.raises(SessionConflictError):
        await store.save(first, etag=first.etag)

    current = await store.load(session_id)
    assert current is not None and current.turns == 1 and current.etag == second.etag


async def test_creating_an_existing_session_is_a_conflict(store, session_id):
    await store.save(new_record(store, session_id), etag=None)

    with pytest.raises(SessionExistsError):
        await store.save(new_record(store, session_id), etag=None)


async def test_another_users_session_is_not_found(store, session_id):
    await store.save(new_record(store, session_id), etag=None)
    other = store.for_user("someone-else")

    with pytest.raises(SessionNotFoundError):
        await other.load(session_id)
    assert await other.get(session_id) is None
    with pytest.raises(SessionNotFoundError):
        await other.remove(session_id)
    assert await store.load(session_id) is not None


async def test_delete_removes_the_session(store, session_id):
    await store.save(new_record(store, session_id), etag=None)

    assert await store.remove(session_id) is True
    assert await store.load(session_id) is None
    assert await store.remove(session_id) is False


@pytest.mark.parametrize("bad_id", ["", "a/b", "a b", "x" * 129, "naïve", "a?b", "../etc"])
async def test_illegal_session_ids_are_rejected_before_any_cosmos_call(store, bad_id):
    with pytest.raises(InvalidSessionIdError):
        await store.load(bad_id)


async def test_listing_pages_through_the_callers_sessions_newest_first(store):
    ids = [f"list-{uuid.uuid4().hex[:8]}-{n}" for n in range(5)]
    for session_id in ids:
        await store.save(new_record(store, session_id), etag=None)
    await store.for_user("intruder").save(
        SessionRecord.new(f"other-{uuid.uuid4().hex[:8]}", user_id="intruder", mode="local"), etag=None
    )

    first = await store.list_sessions(limit=2)
    second = await store.list_sessions(limit=2, continuation_token=first.continuation_token)
    third = await store.list_sessions(limit=2, continuation_token=second.continuation_token)

    listed = [s.id for page in (first, second, third) for s in page.sessions]
    assert listed == list(reversed(ids))
    assert first.continuation_token and second.continuation_token


async def test_a_garbled_continuation_token_is_a_bad_request(store):
    with pytest.raises(BadRequestError):
        await store.list_sessions(limit=2, continuation_token="%%%not-a-token")


async def test_the_framework_session_store_contract_get_set_delete(store, session_id):
    session = AgentSession(session_id=session_id)
    session.state["note"] = "kept"

    await store.set(session_id, session)
    await store.set(session_id, session)  # an update is a conditional replace, not a blind upsert
    restored = await store.get(session_id)
    await store.delete(session_id)

    assert restored is not None and restored.state["note"] == "kept"
    assert await store.get(session_id) is None


async def test_the_container_is_partitioned_by_session_id_and_indexes_only_query_fields(container):
    properties = await container.read()

    assert properties["partitionKey"]["paths"] == [PARTITION_KEY_PATH]
    included = {p["path"] for p in properties["indexingPolicy"]["includedPaths"]}
    assert included == {p["path"] for p in INDEXING_POLICY["includedPaths"]}


async def test_saving_a_session_deleted_meanwhile_is_a_conflict_not_a_resurrection(store, session_id):
    saved = await store.save(new_record(store, session_id), etag=None)
    await store.remove(session_id)

    with pytest.raises(SessionConflictError):
        await store.save(saved, etag=saved.etag)

    assert await store.load(session_id) is None
