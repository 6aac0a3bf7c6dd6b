"""A short lease per session, claimed before the model is called and renewed while it works.

Optimistic concurrency on the session document already guarantees that no turn is
lost: of two racing turns only one save can succeed. The lease makes the loser fail
*before* it pays for a model call. It is a small item of its own in the session's
partition (id ``<sessionId>:lease``), so claiming it costs the same at turn 1 and
turn 1,000.

The claim needs no extra read in the steady state: each saved session document
records the etag its turn's lease claim produced (``leaseEtag``). The next turn
replaces the lease with If-Match on that etag. A second turn that read the same
session version sends the same If-Match and gets 412 at once. Only then is the
lease read, to tell a live holder (409 with Retry-After) from a crashed one whose
lease has expired (taken over with If-Match on the lease's current etag).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from azure.core import MatchConditions
from azure.cosmos import exceptions as cosmos_errors
from azure.cosmos.aio import ContainerProxy

from cosmos_history.adapters.cosmos.client import best_effort, store_errors, written_etag
from cosmos_history.domain.errors import TurnInProgressError

logger = logging.getLogger(__name__)

LEASE_TYPE = "lease"


def lease_id(session_id: str) -> str:
    return f"{session_id}:lease"


class TurnLease:
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

    @contextlib.asynccontextmanager
    async def heartbeat(self, session_id: str, user_id: str, lease_etag: str) -> AsyncIterator[LeaseHold]:
        """Renew the lease every :attr:`renew_every` seconds until the block ends; the hold carries the
        lease's latest etag, which the session document records when the turn is saved."""
        hold = LeaseHold(lease_etag)
        task = asyncio.create_task(self._renew_until_cancelled(session_id, user_id, hold), name="lease heartbeat")
        try:
            yield hold
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _renew_until_cancelled(self, session_id: str, user_id: str, hold: LeaseHold) -> None:
        while True:
            await asyncio.sleep(self.renew_every)
            body = self._body(session_id, user_id, expires_at=time.time() + self.seconds)
            try:
                with store_errors():
                    stored = await self._container.replace_item(
                        body["id"],
                        body,
                        etag=hold.etag,
                        match_condition=MatchConditions.IfNotModified,
                        no_response=True,
                    )
            except cosmos_errors.CosmosAccessConditionFailedError:
                # Taken over after we missed renewals: the session's own etag still keeps both turns from
                # overwriting each other, so this turn runs on to its conditional save.
                logger.info("The turn lease of a running turn was taken over; renewals stop")
                return
            except Exception as error:  # a passing outage: the next beat tries again, the turn goes on
                logger.info("Could not renew a turn lease: %s", type(error).__name__)
                continue
            hold.etag = written_etag(stored)
            hold.renewals += 1

    async def release(self, session_id: str, user_id: str, lease_etag: str) -> None:
        """Expire our claim at once (after a failed turn), so the next turn need not wait it out."""
        body = self._body(session_id, user_id, expires_at=0.0)
        with best_effort("release a turn lease"):
            await self._container.replace_item(
                body["id"], body, etag=lease_etag, match_condition=MatchConditions.IfNotModified, no_response=True
            )

    async def _take_over_if_expired(self, body: dict[str, Any]) -> str:
        try:
            current = await self._container.read_item(body["id"], partition_key=body["sessionId"])
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
        body: dict[str, Any] = {
            "id": lease_id(session_id),
            "sessionId": session_id,
            "type": LEASE_TYPE,
            "userId": user_id,
            "holder": uuid.uuid4().hex,
            "expiresAt": round(expires_at, 3),
        }
        if self.ttl_seconds is not None:
            body["ttl"] = self.ttl_seconds
        return body

    @staticmethod
    def _busy(remaining_seconds: float) -> TurnInProgressError:
        return TurnInProgressError(
            "Another turn on this session is in progress; retry when it has finished.",
            retry_after=max(1, math.ceil(remaining_seconds)),
        )


class LeaseHold:
    """A lease held by a running turn: its latest etag (renewals change it) and how often it was renewed."""

    def __init__(self, etag: str) -> None:
        self.etag = etag
        self.renewals = 0
