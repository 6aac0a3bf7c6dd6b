"""The local Cosmos DB stand-in's patched behaviours, through the real ``azure-cosmos`` SDK.

``cosmos-emulator/patches/`` makes the stand-in cheaper per request (a query's code compiled once, a
conditional patch testing its one item instead of scanning the container, an atomic batch writing to an
overlay instead of copying the container): these tests pin what must not change with it. Conditional
writes, patches with a filter predicate, transactional batches that fail as a whole, and query results.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from azure.core import MatchConditions
from azure.cosmos import PartitionKey, exceptions
from azure.cosmos.aio import ContainerProxy

from cosmos_history import load_settings
from cosmos_history.adapters.cosmos.client import create_client


@pytest.fixture(scope="module")
async def items(cosmos_env: dict[str, str]) -> AsyncIterator[ContainerProxy]:
    """A container of its own, partitioned by ``/pk``."""
    settings = load_settings(cosmos_env)
    client = create_client(settings.cosmos)
    database = await client.create_database_if_not_exists(settings.cosmos.database)
    container = await database.create_container(f"standin-{uuid.uuid4().hex[:8]}", PartitionKey("/pk"))
    try:
        yield container
    finally:
        await database.delete_container(container.id)
        await client.close()


def _pk() -> str:
    return f"p-{uuid.uuid4().hex[:8]}"


async def _ids(container: ContainerProxy, pk: str) -> list[str]:
    """The partition's item ids in the order the stand-in returns them (no ORDER BY)."""
    return [item["id"] async for item in container.query_items("SELECT c.id FROM c", partition_key=pk)]


async def test_a_replace_with_a_stale_etag_is_refused_and_a_current_one_is_applied(items: ContainerProxy) -> None:
    pk = _pk()
    first = await items.create_item({"id": "doc", "pk": pk, "n": 1})
    second = await items.replace_item(
        "doc", {"id": "doc", "pk": pk, "n": 2}, etag=first["_etag"], match_condition=_if_match()
    )
    with pytest.raises(exceptions.CosmosAccessConditionFailedError):
        await items.replace_item(
            "doc", {"id": "doc", "pk": pk, "n": 3}, etag=first["_etag"], match_condition=_if_match()
        )
    assert (await items.read_item("doc", partition_key=pk))["n"] == 2
    await items.replace_item("doc", {"id": "doc", "pk": pk, "n": 4}, etag=second["_etag"], match_condition=_if_match())
    assert (await items.read_item("doc", partition_key=pk))["n"] == 4


def _if_match() -> MatchConditions:
    return MatchConditions.IfNotModified


async def test_a_patch_filter_predicate_is_evaluated_against_the_item_as_it_is_now(items: ContainerProxy) -> None:
    """The same predicate text, compiled once, still sees each new value (the parameter-free query is cached)."""
    pk = _pk()
    await items.create_item({"id": "lease", "pk": pk, "holderId": "none", "expiresAt": 0})
    for n in range(4):
        await items.patch_item(
            "lease",
            partition_key=pk,
            patch_operations=[{"op": "set", "path": "/expiresAt", "value": n + 1}],
            filter_predicate=f"from c where c.expiresAt = {n}",
        )
    with pytest.raises(exceptions.CosmosAccessConditionFailedError):
        await items.patch_item(
            "lease",
            partition_key=pk,
            patch_operations=[{"op": "set", "path": "/expiresAt", "value": 99}],
            filter_predicate="from c where c.expiresAt = 0",
        )
    stored = await items.read_item("lease", partition_key=pk)
    assert stored["expiresAt"] == 4
    # property names are matched with their case
    await items.patch_item(
        "lease",
        partition_key=pk,
        patch_operations=[{"op": "set", "path": "/holderId", "value": "ada"}],
        filter_predicate="from c where c.holderId = 'none' AND c.expiresAt < 5",
    )
    assert (await items.read_item("lease", partition_key=pk))["holderId"] == "ada"


async def test_a_patch_predicate_sees_only_its_own_item_not_one_with_its_id_in_another_partition(
    items: ContainerProxy,
) -> None:
    here, there = _pk(), _pk()
    await items.create_item({"id": "same", "pk": here, "state": "busy"})
    await items.create_item({"id": "same", "pk": there, "state": "free"})
    with pytest.raises(exceptions.CosmosAccessConditionFailedError):
        await items.patch_item(
            "same",
            partition_key=here,
            patch_operations=[{"op": "set", "path": "/state", "value": "taken"}],
            filter_predicate="from c where c.state = 'free'",
        )
    assert (await items.read_item("same", partition_key=here))["state"] == "busy"
    assert (await items.read_item("same", partition_key=there))["state"] == "free"


async def test_a_failing_batch_writes_nothing_and_leaves_the_partition_as_it_was(items: ContainerProxy) -> None:
    pk = _pk()
    for name in ("a", "b", "c"):
        await items.create_item({"id": name, "pk": pk, "v": 0})
    before_a = await items.read_item("a", partition_key=pk)
    order = await _ids(items, pk)
    operations: list[Any] = [
        ("replace", ("a", {"id": "a", "pk": pk, "v": 1}), {"if_match_etag": before_a["_etag"]}),
        ("create", ({"id": "new", "pk": pk, "v": 1},)),
        ("upsert", ({"id": "b", "pk": pk, "v": 1},)),
        ("patch", ("c", [{"op": "set", "path": "/v", "value": 1}]), {"filter_predicate": "from c where c.v = 7"}),
    ]
    with pytest.raises(exceptions.CosmosBatchOperationError) as failed:
        await items.execute_item_batch(operations, partition_key=pk)
    assert failed.value.error_index == 3
    assert [r["statusCode"] for r in failed.value.operation_responses] == [424, 424, 424, 412]
    after_a = await items.read_item("a", partition_key=pk)
    assert after_a["_etag"] == before_a["_etag"] and after_a["v"] == 0
    assert (await items.read_item("b", partition_key=pk))["v"] == 0
    with pytest.raises(exceptions.CosmosResourceNotFoundError):
        await items.read_item("new", partition_key=pk)
    assert await _ids(items, pk) == order  # the same items, in the same order
    await items.create_item({"id": "new", "pk": pk, "v": 2})  # its id was not left taken
    assert (await items.read_item("new", partition_key=pk))["v"] == 2


async def test_a_successful_batch_applies_every_operation_in_order(items: ContainerProxy) -> None:
    pk = _pk()
    await items.create_item({"id": "a", "pk": pk, "v": 0})
    await items.create_item({"id": "lease", "pk": pk, "holder": "me"})
    current = await items.read_item("a", partition_key=pk)
    results = await items.execute_item_batch(
        [
            ("read", ("a",)),
            ("replace", ("a", {"id": "a", "pk": pk, "v": 1}), {"if_match_etag": current["_etag"]}),
            (
                "patch",
                ("lease", [{"op": "set", "path": "/holder", "value": None}]),
                {"filter_predicate": "from c where c.holder = 'me'"},
            ),
            ("create", ({"id": "z", "pk": pk, "v": 1},)),
        ],
        partition_key=pk,
    )
    assert [r["statusCode"] for r in results] == [200, 200, 200, 201]
    assert results[0]["resourceBody"]["v"] == 0
    stored = await items.read_item("a", partition_key=pk)
    assert stored["v"] == 1 and stored["_etag"] == results[1]["eTag"]
    assert (await items.read_item("lease", partition_key=pk))["holder"] is None
    assert sorted(await _ids(items, pk)) == ["a", "lease", "z"]


async def test_queries_answer_each_request_with_its_own_parameters_and_partition(items: ContainerProxy) -> None:
    """One query text, compiled once, run with different parameters and partitions."""
    first, second = _pk(), _pk()
    for pk, values in ((first, [3, 1, 2]), (second, [5, 4])):
        for v in values:
            await items.create_item({"id": f"i{v}", "pk": pk, "v": v})
    query = "SELECT c.id, c.v FROM c WHERE c.v >= @low ORDER BY c.v DESC"
    for pk, low, expected in ((first, 2, [3, 2]), (first, 1, [3, 2, 1]), (second, 5, [5]), (second, 0, [5, 4])):
        found = [
            item["v"]
            async for item in items.query_items(query, parameters=[{"name": "@low", "value": low}], partition_key=pk)
        ]
        assert found == expected
    count = [n async for n in items.query_items("SELECT VALUE COUNT(1) FROM c", partition_key=second)]
    assert count == [2]


@pytest.mark.parametrize(
    ("predicate", "applies"),
    [
        ("from c where c.expiresAt < 1733291234.500 OR c.holder = 'ab12'", True),  # a lease's claim
        ("from c where c.expiresAt < 10.5 OR c.holder = 'someone else'", False),
        ('from c where c.count = -3 AND c.name = "Ada Lovelace"', True),  # negative, double-quoted
        ("from c where c.count = -3 AND c.name = 'ada lovelace'", False),  # strings compare with their case
        ("from c where c.tags[0] = 'x' AND c.count < 0", True),  # brackets: run as sent
        ("from c where c.tags[1] = 'x'", False),
        ("from c where c.name IN ('Bob', 'Ada Lovelace')", True),
        ("from c where c.note = 'it\\'s'", True),  # an escape: run as sent
        ("from c where c.note = 'its'", False),
        ("from c where STARTSWITH(c.name, 'Ada') AND c.ratio = 0.25", True),
        ("from c where c.ratio = 0.5", False),
        ("from c where c.city = 'Zürich' AND c.count < 0", True),  # beyond ASCII inside a string
        ("from c where c.city = 'Zurich'", False),
    ],
)
async def test_a_patch_predicate_with_literals_decides_as_it_reads(
    items: ContainerProxy, predicate: str, applies: bool
) -> None:
    """Literals become parameters of one compiled query in the stand-in; the outcome must be what the text says."""
    pk = _pk()
    await items.create_item(
        {
            "id": "x",
            "pk": pk,
            "expiresAt": 1733291234.75,
            "holder": "ab12",
            "count": -3,
            "name": "Ada Lovelace",
            "tags": ["x", "y"],
            "note": "it's",
            "ratio": 0.25,
            "city": "Zürich",
        }
    )
    patch = [{"op": "set", "path": "/touched", "value": True}]
    if applies:
        await items.patch_item("x", partition_key=pk, patch_operations=patch, filter_predicate=predicate)
        assert (await items.read_item("x", partition_key=pk))["touched"] is True
    else:
        with pytest.raises(exceptions.CosmosAccessConditionFailedError):
            await items.patch_item("x", partition_key=pk, patch_operations=patch, filter_predicate=predicate)
        assert "touched" not in await items.read_item("x", partition_key=pk)
