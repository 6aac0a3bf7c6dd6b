"""The comparison point: the same turn built on the framework's ``CosmosHistoryProvider``.

One item per message in a container partitioned by ``/session_id``; each turn the provider
queries the history before the model call, queries it again to drop messages it already
stored, then writes the new messages in a transactional batch. The local Cosmos DB cannot
run a batch sent by the Python SDK, so there :class:`BatchAsUpserts` runs the batch's
operations one by one and the counter books them as ONE round trip, as a real account would.
"""

from __future__ import annotations

import asyncio
from typing import Any

from agent_framework import Agent, AgentSession, Message
from agent_framework_azure_cosmos import CosmosHistoryProvider
from azure.cosmos import PartitionKey
from azure.cosmos.aio import ContainerProxy, CosmosClient

from cosmos_history import Settings

from .counting import one_round_trip
from .model import BenchChatClient

PROVIDER_CONTAINER = "provider-history"
PROVIDER_PARTITION_KEY = "/session_id"
#: Request header naming the provider container a benchmark request uses (see ``bench.provider_app``).
CONTAINER_HEADER = "x-bench-container"


class BatchAsUpserts:
    """A container client whose ``execute_item_batch`` sends the operations one at a time.

    Everything else is the real ``ContainerProxy``. Used only against the local Cosmos DB.
    """

    def __init__(self, container: ContainerProxy) -> None:
        self._container = container

    def __getattr__(self, name: str) -> Any:
        return getattr(self._container, name)

    async def execute_item_batch(
        self, batch_operations: list[tuple[str, tuple[Any, ...]]], partition_key: Any, **kwargs: Any
    ) -> list[dict[str, Any]]:
        with one_round_trip():  # sent concurrently: closer to one batch request's latency than one by one
            return list(await asyncio.gather(*(self._run(op, args, partition_key) for op, args in batch_operations)))

    async def _run(self, operation: str, arguments: tuple[Any, ...], partition_key: Any) -> dict[str, Any]:
        if operation == "upsert":
            return dict(await self._container.upsert_item(arguments[0]))
        if operation == "delete":
            await self._container.delete_item(arguments[0], partition_key=partition_key)
            return {}
        raise NotImplementedError(f"batch operation {operation!r}")


async def ensure_provider_container(client: CosmosClient, settings: Settings, name: str) -> ContainerProxy:
    """The provider's container, created as the provider itself would (``/session_id``, default indexing)."""
    database = await client.create_database_if_not_exists(settings.cosmos.database)
    return await database.create_container_if_not_exists(name, partition_key=PartitionKey(path=PROVIDER_PARTITION_KEY))


class ProviderTurns:
    """A turn handler equivalent to the backend's: one agent, history loaded and saved by the provider."""

    def __init__(self, container: ContainerProxy, settings: Settings, *, batch_supported: bool) -> None:
        self.container = container
        proxy: Any = container if batch_supported else BatchAsUpserts(container)
        self.provider = CosmosHistoryProvider(container_client=proxy)
        self.client = BenchChatClient()
        self.agent = Agent(
            client=self.client,
            name="assistant",
            instructions="You are a helpful assistant. Answer concisely.",
            context_providers=[self.provider],
            default_options={"store": False},
        )

    async def run_turn(self, session_id: str, message: str) -> str:
        """One turn: the session id names the partition, so no session document is needed."""
        response = await self.agent.run(message, session=AgentSession(session_id=session_id))
        return response.text

    async def seed(self, session_id: str, messages: list[Message]) -> None:
        """Store earlier messages in one save (the provider's own code path), to build long histories fast."""
        await self.provider.save_messages(session_id, messages)

    async def stored_bytes(self, session_id: str) -> int:
        """Bytes of every item in the session's partition, as stored (system properties included)."""
        query = self.container.query_items(
            "SELECT * FROM c WHERE c.session_id = @s",
            parameters=[{"name": "@s", "value": session_id}],
            partition_key=session_id,
        )
        return sum([len(_compact(item)) async for item in query])


def _compact(item: dict[str, Any]) -> bytes:
    import json

    return json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode()
