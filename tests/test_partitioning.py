"""Every request is a single-partition operation: the hierarchical key ``[userId, sessionId]``.

What the SDK sends is recorded at its transport (:mod:`bench.partitions`): the same headers reach
Azure, so the routing they show holds there. What the local stand-in cannot show is Azure's request
charge; that the listing's cost follows the user's sessions is shown by its scope (one request to one
effective-partition-key range, the same whatever else the container holds) and priced in
``docs/adr-partitioning.md``.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from azure.cosmos import PartitionKey
from azure.cosmos import exceptions as cosmos_errors
from azure.cosmos.aio import ContainerProxy

from bench.partitions import ScopeLog, ScopeRecordingTransport, partitions_touched
from cosmos_history import Runtime, SessionRecord, build_agents, build_runtime, load_settings
from cosmos_history.adapters.cosmos import items
from cosmos_history.adapters.cosmos.client import PARTITION_KEY_KIND, PARTITION_KEY_PATHS
from devtools.local_cosmos import EMULATOR_DIR

from .apphost import registered_functions
from .fakes import RecordingChatClient
from .http_calls import call, post_message, request

pytestmark = pytest.mark.integration

HIERARCHICAL = PartitionKey(path=PARTITION_KEY_PATHS, kind=PARTITION_KEY_KIND)


@pytest.fixture(scope="module")
async def recorded(cosmos_env: dict[str, str]) -> AsyncIterator[tuple[Runtime, ScopeLog]]:
    """A runtime on the test container whose client records the scope of every request it sends."""
    log = ScopeLog()
    settings = load_settings(cosmos_env)
    runtime = await build_runtime(
        settings, agents=build_agents(settings, RecordingChatClient()), transport=ScopeRecordingTransport(log)
    )
    yield runtime, log
    await runtime.close()


def prefix_range(user_id: str) -> tuple[str, str]:
    """The effective-partition-key range of the key prefix ``[user_id]``, as the SDK computes it."""
    epk = HIERARCHICAL._get_epk_range_for_prefix_partition_key([user_id])
    return str(epk.min), str(epk.max)


async def save_sessions(
    container: ContainerProxy, users: list[str], count: int, *, updated_at: str | None = None
) -> None:
    """``count`` session documents of each of ``users``, written directly (many at a time)."""
    records = [
        SessionRecord.new(f"s-{n}-{uuid.uuid4().hex[:6]}", user_id=user, mode="local")
        for user in users
        for n in range(count)
    ]
    for record in records:
        record.updated_at = updated_at or record.updated_at
    for start in range(0, len(records), 100):
        batch = records[start : start + 100]
        await asyncio.gather(*(container.create_item(items.session_document(r, None)) for r in batch))


# --- the local stand-in's patch --------------------------------------------------------------------


@pytest.mark.parametrize("key", [["u"], ["user-1", "s-1"], ["日本語" * 10, "~" + "x" * 200], ["a", ""]])
def test_the_local_server_computes_the_same_effective_partition_keys_as_the_sdk(key):
    script = (
        "const m = require('./node_modules/@vercel/cosmosdb-server/lib/utils/effective-partition-key.js');"
        "process.stdout.write(m.effectivePartitionKey(JSON.parse(process.argv[1])));"
    )
    node = subprocess.run(
        ["node", "-e", script, json.dumps(key)], cwd=EMULATOR_DIR, capture_output=True, text=True, check=True
    )

    assert node.stdout == HIERARCHICAL._get_effective_partition_key_string(key)


async def test_a_prefix_query_reads_only_the_prefixs_items_even_without_a_filter(container, session_id):
    mine, theirs = f"prefix-{session_id}", f"other-{session_id}"
    await save_sessions(container, [mine], 3)
    await save_sessions(container, [theirs], 3)

    found = [item async for item in container.query_items("SELECT c.userId FROM c", partition_key=[mine])]

    assert [item["userId"] for item in found] == [mine] * 3


async def test_a_full_key_query_reads_only_its_logical_partition(container, session_id):
    for user in ("ann", "bea"):
        await container.create_item({"id": session_id, "userId": user, "sessionId": session_id, "type": "t"})
        await container.create_item({"id": f"{session_id}:x", "userId": user, "sessionId": session_id, "type": "t"})

    found = [i async for i in container.query_items("SELECT c.id, c.userId FROM c", partition_key=["bea", session_id])]

    assert sorted((i["id"], i["userId"]) for i in found) == [(session_id, "bea"), (f"{session_id}:x", "bea")]


async def test_the_same_item_id_under_two_users_is_two_items(container, session_id):
    for user in ("ann", "bea"):
        await container.create_item({"id": session_id, "userId": user, "sessionId": session_id, "n": user})

    await container.delete_item(session_id, partition_key=["ann", session_id])

    assert (await container.read_item(session_id, partition_key=["bea", session_id]))["n"] == "bea"
    with pytest.raises(cosmos_errors.CosmosResourceNotFoundError):
        await container.read_item(session_id, partition_key=["ann", session_id])


# --- the listing -----------------------------------------------------------------------------------


async def test_listing_is_one_single_partition_request_whose_scope_does_not_grow_with_other_users(recorded):
    runtime, log = recorded
    user = f"lister-{uuid.uuid4().hex[:8]}"
    store = runtime.store.for_user(user)
    await save_sessions(runtime.store.container, [user], 3)
    await save_sessions(runtime.store.container, [f"few-{user}"], 10)

    async def listing() -> tuple[list[str], list[Any]]:
        mark = log.mark()
        page = await store.list_sessions(limit=20)
        return [s.id for s in page.sessions], log.since(mark)

    few_ids, few_scopes = await listing()
    await save_sessions(runtime.store.container, [f"crowd-{n}-{user}" for n in range(500)], 4)  # 2,000 sessions
    many_ids, many_scopes = await listing()

    assert len(few_ids) == 3 and many_ids == few_ids
    assert len(many_scopes) == 1 and many_scopes == few_scopes
    (scope,) = many_scopes
    assert scope.operation == "query" and scope.kind == "range" and scope.epk == prefix_range(user)
    assert partitions_touched(many_scopes) == 1


async def test_listing_pages_never_skip_or_repeat_sessions_updated_in_the_same_instant(recorded):
    runtime, _ = recorded
    user = f"same-instant-{uuid.uuid4().hex[:8]}"
    await save_sessions(runtime.store.container, [user], 23, updated_at="2026-12-03T10:00:00.000000Z")
    store = runtime.store.for_user(user)

    seen: list[str] = []
    token: str | None = None
    for _ in range(20):
        page = await store.list_sessions(limit=4, continuation_token=token)
        seen += [s.id for s in page.sessions]
        token = page.continuation_token
        if token is None:
            break

    assert len(seen) == 23 and len(set(seen)) == 23


async def test_every_route_touches_one_partition_per_request(recorded, session_id):
    runtime, log = recorded
    functions = registered_functions(runtime)
    user = f"router-{session_id}"
    calls: dict[str, Any] = {
        "create": lambda: call(
            functions, "create_session_route", request("POST", "/api/sessions", body={"id": session_id}, user=user)
        ),
        "turn": lambda: post_message(functions, session_id, "hello", user=user),
        "list": lambda: call(functions, "list_sessions_route", request("GET", "/api/sessions", user=user)),
        "get": lambda: call(functions, "get_session_route", request("GET", "/", route={"id": session_id}, user=user)),
        "messages": lambda: call(
            functions, "list_messages_route", request("GET", "/", route={"id": session_id}, user=user)
        ),
        "response": lambda: call(
            functions,
            "create_response_route",
            request("POST", "/api/v1/responses", body={"model": "assistant", "input": "hi"}, user=user),
        ),
        "delete": lambda: call(
            functions, "delete_session_route", request("DELETE", "/", route={"id": session_id}, user=user)
        ),
    }

    touched = {}
    for name, make in calls.items():
        mark = log.mark()
        status, _, _ = await make()
        assert status < 300, name
        touched[name] = partitions_touched(log.since(mark))

    assert touched == dict.fromkeys(calls, 1)
