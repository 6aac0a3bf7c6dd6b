"""Stored response objects of the OpenAI-compatible endpoint: one item per turn, in the session's partition.

A turn writes its response in its commit, with the session document (one transactional batch:
:mod:`.commit`). They share the session's ``ttl`` and are removed with the session (its delete takes
every item of the partition). Reads name the caller's partition ``[userId, sessionId]``, so another user's response
is not found; the owner's id in the item is checked as well (defence in depth).
"""

from __future__ import annotations

from typing import Any

from azure.cosmos import exceptions as cosmos_errors
from azure.cosmos.aio import ContainerProxy

from cosmos_history.adapters.cosmos import items
from cosmos_history.adapters.cosmos.client import store_errors


class CosmosResponseLog:
    def __init__(self, container: ContainerProxy, *, ttl_seconds: int | None) -> None:
        self._container = container
        self._ttl = ttl_seconds

    async def record(self, session_id: str, user_id: str, turn: int, response: dict[str, Any]) -> None:
        item = items.response_item(items.item_id(session_id), user_id, turn, response, self._ttl)
        with store_errors():
            await self._container.upsert_item(item, no_response=True)

    async def find(self, session_id: str, user_id: str, turn: int) -> dict[str, Any] | None:
        item = await self._read(session_id, user_id, turn)
        if item is None or item.get("userId") != user_id:
            return None
        response: dict[str, Any] = item["response"]
        return response

    async def delete(self, session_id: str, user_id: str, turn: int) -> bool:
        item = await self._read(session_id, user_id, turn)
        if item is None or item.get("userId") != user_id:
            return False
        with store_errors():
            try:
                await self._container.delete_item(
                    item["id"], partition_key=items.partition_key(user_id, item["sessionId"])
                )
            except cosmos_errors.CosmosResourceNotFoundError:
                return False
        return True

    async def _read(self, session_id: str, user_id: str, turn: int) -> dict[str, Any] | None:
        partition = items.item_id(session_id)
        with store_errors():
            try:
                return await self._container.read_item(
                    items.response_item_id(partition, turn), partition_key=items.partition_key(user_id, partition)
                )
            except cosmos_errors.CosmosResourceNotFoundError:
                return None
