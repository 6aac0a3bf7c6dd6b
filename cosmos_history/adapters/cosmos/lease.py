"""A short lease per session, claimed before the model is called and renewed while it works.

Optimistic concurrency on the session document already guarantees that no turn is
lost: of two racing turns only one save can succeed. The lease makes the loser fail
*before* it pays for a model call. It is a small item of its own in the session's
partition ``[userId, sessionId]`` (id ``<sessionId>:lease``), so claiming it costs the same at turn 1 and
turn 1,000.

The claim needs no extra read in the steady state: each saved session document
records the etag its turn's lease claim produced (``leaseEtag``). The next turn
replaces the lease with If-Match on that etag. A second turn that read the same
session version sends the same If-Match and gets 412 at once. Only then is the
lease read, to tell a live holder (409 with Retry-After) from a crashed one whose
lease has expired (taken over with If-Match on the lease's current etag).
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from typing import Any

from azure.core import MatchConditions
from azure.cosmos import exceptions as cosmos_errors
from azure.cosmos.aio import ContainerProxy

from cosmos_history.adapters.cosmos import items
from cosmos_history.adapters.cosmos.client import best_effort, store_errors, written_etag
from cosmos_history.domain.errors import TurnInProgressError

logger = logging.getLogger(__name__)


class CosmosTurnLease:
    """Claims and releases the lease of one session for one turn."""

    def __init__(self, container: ContainerProxy, *, seconds: int, ttl_seconds: int | None = None) -> None:
        self._container = container
        self.seconds = seconds
        self.ttl_seconds = ttl_seconds

    async def claim(self, session_id: str, user_id: str, *, known_etag: str | None) -> str:
        """Claim the lease for one turn; returns the lease's new etag (to be stored with the session).

        Raises:
            TurnInProgressError: another turn holds a live lease on this session.
            StoreUnavailableError: Cosmos DB could not be reached or kept throttling.
        """
        with store_errors():
            return await self._claim(session_id, user_id, known_etag)

    async def _claim(self, session_id: str, user_id: str, known_etag: str | None) -> str:
        body = self._body(session_id, user_id, expires_at=time.time() + self.seconds)
        try:
            if known_etag is None:
                stored = await self._container.create_item(body, no_response=True)
            else:
                stored = await self._container.replace_item(
                    body["id"], body, etag=known_etag, match_condition=MatchConditions.IfNotModified, no_response=True
                )
            return written_etag(stored)
        except (cosmos_errors.CosmosResourceExistsError, cosmos_errors.CosmosAccessConditionFailedError):
            return await self._take_over_if_expired(body)
        except cosmos_errors.CosmosResourceNotFoundError:
            # The lease item vanished (retention expired it, or it was never written): start afresh.
            return await self._claim(session_id, user_id, None)

    @property
    def renew_every(self) -> float:
        """Seconds between renewals: three chances to renew before the lease would run out."""
        return self.seconds / 3

    async def renew(self, session_id: str, user_id: str, lease_etag: str) -> str | None:
        """Extend our claim by a whole lease; ``None`` when another turn took it over meanwhile."""
        body = self._body(session_id, user_id, expires_at=time.time() + self.seconds)
        with store_errors():
            try:
                stored = await self._container.replace_item(
                    body["id"], body, etag=lease_etag, match_condition=MatchConditions.IfNotModified, no_response=True
                )
            except cosmos_errors.CosmosAccessConditionFailedError:
                return None
        return written_etag(stored)

    async def release(self, session_id: str, user_id: str, lease_etag: str) -> None:
        """Expire our claim at once (after a failed turn), so the next turn need not wait it out."""
        body = self._body(session_id, user_id, expires_at=0.0)
        with best_effort("release a turn lease"):
            await self._container.replace_item(
                body["id"], body, etag=lease_etag, match_condition=MatchConditions.IfNotModified, no_response=True
            )

    async def _take_over_if_expired(self, body: dict[str, Any]) -> str:
        try:
            current = await self._container.read_item(
                body["id"], partition_key=items.partition_key(body["userId"], body["sessionId"])
            )
        except cosmos_errors.CosmosResourceNotFoundError:
            current = None
        if current is None:
            try:
                stored = await self._container.create_item(body, no_response=True)
                return written_etag(stored)
            except cosmos_errors.CosmosResourceExistsError:
                raise self._busy(self.renew_every) from None
        remaining = float(current.get("expiresAt", 0)) - time.time()
        if remaining > 0:
            raise self._busy(min(remaining, self.renew_every))
        try:
            stored = await self._container.replace_item(
                body["id"], body, etag=current["_etag"], match_condition=MatchConditions.IfNotModified, no_response=True
            )
        except cosmos_errors.CosmosAccessConditionFailedError:
            raise self._busy(self.renew_every) from None
        return written_etag(stored)

    def _body(self, session_id: str, user_id: str, *, expires_at: float) -> dict[str, Any]:
        partition = items.item_id(session_id)
        return {
            **items.envelope(items.LEASE_TYPE, items.lease_id(partition), partition, user_id, self.ttl_seconds),
            "holder": uuid.uuid4().hex,
            "expiresAt": round(expires_at, 3),
        }

    @staticmethod
    def _busy(remaining_seconds: float) -> TurnInProgressError:
        return TurnInProgressError(
            "Another turn on this session is in progress; retry when it has finished.",
            retry_after=max(1, math.ceil(remaining_seconds)),
        )
