"""What only the Cosmos DB adapter does: its item format, ids, retention and container, through the real SDK."""

from __future__ import annotations

import base64
import json

import pytest
from agent_framework import AgentSession
from azure.cosmos import exceptions as cosmos_errors

from cosmos_history import SessionRecord
from cosmos_history.adapters.cosmos import items
from cosmos_history.adapters.cosmos.client import INDEXING_POLICY, PARTITION_KEY_PATHS
from cosmos_history.adapters.cosmos.sessions import CosmosSessions, CosmosSessionStore
from cosmos_history.domain.errors import BadRequestError

pytestmark = pytest.mark.integration


def new_record(store: CosmosSessions, session_id: str, **kwargs) -> SessionRecord:
    return SessionRecord.new(session_id, user_id=store.user_id, mode=kwargs.pop("mode", "local"), **kwargs)


async def test_a_missing_item_read_answers_404_not_500(container):
    """The local server's patch: a point read of a missing item is a 404 (it answered 500 unpatched)."""
    with pytest.raises(cosmos_errors.CosmosResourceNotFoundError):
        await container.read_item("no-such-item", partition_key=["nobody", "no-such-item"])


async def test_the_document_carries_the_metadata_queries_use(store, container, session_id):
    await store.save(new_record(store, session_id, title="T"), etag=None)

    document = await container.read_item(session_id, partition_key=[store.user_id, session_id])

    assert document["id"] == document["sessionId"] == session_id
    assert document["type"] == "session" and document["schemaVersion"] == 1
    assert document["userId"] == store.user_id and document["mode"] == "local"
    assert {"createdAt", "updatedAt", "turns", "title", "session"} <= document.keys()
    assert "ttl" not in document


async def test_retention_writes_a_ttl_on_every_save(store, container, session_id):
    retained = CosmosSessions(container, user_id=store.user_id, ttl_seconds=3600)
    saved = await retained.save(new_record(store, session_id), etag=None)
    await retained.save(saved, etag=saved.etag)

    document = await container.read_item(session_id, partition_key=[store.user_id, session_id])

    assert document["ttl"] == 3600


@pytest.mark.parametrize(
    "token",
    [
        "%%%not-a-token",
        base64.urlsafe_b64encode(b"2026-12-03T10:00:00.000000Z").decode(),  # a listing token of the former format
        base64.urlsafe_b64encode(b"c1:").decode(),
        base64.urlsafe_b64encode(b"c1:" + base64.b64encode(json.dumps({"v": 99}).encode())).decode(),
    ],
)
async def test_a_continuation_token_the_store_did_not_issue_is_a_bad_request(store, token):
    await store.save(new_record(store, "one"), etag=None)

    with pytest.raises(BadRequestError):
        await store.list_sessions(limit=2, continuation_token=token)


async def test_the_container_is_partitioned_by_user_then_session_and_indexes_only_query_fields(container):
    properties = await container.read()

    assert properties["partitionKey"]["paths"] == ["/userId", "/sessionId"] == PARTITION_KEY_PATHS
    assert properties["partitionKey"]["kind"] == "MultiHash"
    included = {p["path"] for p in properties["indexingPolicy"]["includedPaths"]}
    assert included == {p["path"] for p in INDEXING_POLICY["includedPaths"]}


# --- ids -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("plain", ["s-1", "A.b:c_d-e", "x" * 128, "..."])
def test_ids_of_the_http_character_set_are_their_own_item_id_so_existing_documents_load(plain):
    assert items.item_id(plain) == plain


@pytest.mark.parametrize(
    "key", ["tenant/user", "two words", "café", "telegram:123:456?x#y", ".", "..", "a\\b", "é" * 128]
)
def test_any_other_id_maps_reversibly_to_a_safe_item_id(key):
    encoded = items.item_id(key)

    assert items.session_key(encoded) == key
    assert items.checked_path(encoded) == encoded and encoded not in (".", "..")


@pytest.mark.parametrize("path", [".", "..", "", "a/b", "a?b", "a#b", "a\\b"])
def test_a_request_for_an_item_path_the_sdk_would_normalise_is_refused(path):
    with pytest.raises(ValueError, match="normalised"):
        items.checked_path(path)


async def test_dot_dot_is_a_session_of_its_own_and_deleting_it_leaves_the_container(container, store):
    store_api = CosmosSessionStore(container, user_id=store.user_id)
    await store_api.set("..", AgentSession(session_id=".."))
    await store_api.set("neighbour-of-dots", AgentSession(session_id="n"))

    await store_api.delete("..")

    assert await store_api.get("..") is None
    assert (await store_api.get("neighbour-of-dots")) is not None, "the container and its other sessions remain"


async def test_an_unsafe_id_is_listed_under_the_id_it_was_saved_with(container, store):
    await CosmosSessionStore(container, user_id=store.user_id).set("tenant/user café", AgentSession())

    page = await store.list_sessions(limit=10)

    assert [s.id for s in page.sessions] == ["tenant/user café"]


@pytest.mark.parametrize("bad_id", ["", "x" * 129])
async def test_an_empty_or_too_long_id_is_a_value_error_before_any_request(bad_id):
    untouchable = CosmosSessions(container=None)  # type: ignore[arg-type]  # any request would fail differently

    with pytest.raises(ValueError, match="session_id"):
        await untouchable.load(bad_id)
    with pytest.raises(ValueError, match="session_id"):
        await untouchable.delete(bad_id)
