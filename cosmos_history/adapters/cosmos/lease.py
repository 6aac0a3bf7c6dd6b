"""A short lease per session, claimed in the same request that reads the session, renewed while the
model works, released by the turn's commit.

Optimistic concurrency on the session document already guarantees that no turn is lost: of two
racing turns only one save can succeed. The lease makes the loser fail *before* it pays for a model
call. It is a small item of its own in the session's partition ``[userId, sessionId]`` (id
``<sessionId>:lease``, the same item every version of the app wrote), so claiming and renewing it
costs the same at turn 1 and turn 1,000, and a turn that fails leaves the session document untouched.

A claim is one transactional batch: read the session document, and patch the lease with the filter
predicate "expired" (a free lease is one whose ``expiresAt`` has passed: released ones hold 0, a
crashed turn's runs out). A live lease fails the patch (412) and so the whole batch: the racer is
refused with Retry-After, before any model call. The turn's commit releases the lease in its own
batch (:mod:`.commit`), so a steady turn makes two requests. See ``docs/adr-turn-storage.md``.

When this instance's last commit on the session kept the document it wrote (:mod:`cosmos_history.domain.kept_windows`),
the claim's read asks for the document only if it changed (``If-None-Match`` with that version's etag). Cosmos DB
answers an unchanged document with 304 and no body, which does not fail the batch (only a status of 400 or more
does); the claim then takes the record from the kept document instead of receiving and parsing it again. Should the
kept version be gone by then (another claim of this process took it), the document is read on its own. A service
that refuses the conditional batch (any error but the known ones and throttling) gets the claim again without the
condition, and this lease sends it no more (:attr:`CosmosTurnLease.conditional`): at most one extra request a process.

A claim's token (``LeaseClaim.etag``) is its holder id: renewals and the release are conditional on
the lease still naming it, so a renewal whose answer was lost does not cost the turn its commit, and
a lease another turn took over (after missed renewals) fails this turn's commit.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable
from typing import Any

from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError
from azure.cosmos import exceptions as cosmos_errors
from azure.cosmos.aio import ContainerProxy

from cosmos_history.adapters.cosmos import items
from cosmos_history.adapters.cosmos.client import best_effort, response_size, store_errors
from cosmos_history.adapters.cosmos.commit import RELEASE, held_by
from cosmos_history.domain.errors import SessionNotFoundError, TurnInProgressError
from cosmos_history.domain.kept_windows import KeptWindows
from cosmos_history.domain.records import LeaseClaim

#: Claims tried before a lease that keeps changing hands is reported busy (bounded, never a loop).
_ATTEMPTS = 3
#: Statuses that say nothing about the conditional read (throttled, timed out, gone, unavailable: the SDK has
#: retried them already): a claim that meets one fails as it would without the condition, which stays on.
_TRANSIENT = frozenset({408, 410, 429, 449, 503})

logger = logging.getLogger(__name__)


class CosmosTurnLease:
    """Claims, renews and releases the lease of one session for one turn. A claim that reads the very version a
    commit of this instance wrote takes that commit's kept history window (``windows``, shared with the store's
    :class:`~.sessions.CosmosSessions`) instead of restoring it (:mod:`cosmos_history.domain.kept_windows`)."""

    def __init__(
        self,
        container: ContainerProxy,
        *,
        seconds: int,
        ttl_seconds: int | None = None,
        clock: Callable[[], float] = time.time,
        windows: KeptWindows | None = None,
    ) -> None:
        self._container = container
        self.seconds = seconds
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self.windows = windows
        self.conditional = windows is not None
        """Whether a claim may read the session only if it changed since the version kept here (see the module)."""

    @property
    def renew_every(self) -> float:
        """Seconds between renewals: three chances to renew before the lease would run out."""
        return self.seconds / 3

    async def claim(self, session_id: str, user_id: str) -> LeaseClaim:
        """Claim the lease and read the session in one request (see the module docstring).

        Raises:
            TurnInProgressError: another turn holds a live lease on this session; nothing was written.
            SessionNotFoundError: the item under the caller's key is not the caller's session.
            StoreUnavailableError: Cosmos DB could not be reached or kept throttling.
        """
        partition = items.item_id(session_id)
        holder = uuid.uuid4().hex
        with store_errors():
            for attempt in range(_ATTEMPTS):
                try:
                    claim = await self._claim(partition, user_id, holder)
                except (ServiceRequestError, ServiceResponseError):
                    if attempt == _ATTEMPTS - 1:
                        raise
                    continue  # a lost answer: sending the claim again is safe (its own holder still matches)
                if claim is not None:
                    return claim
        raise self._busy(self.renew_every)

    async def _claim(self, partition: str, user_id: str, holder: str) -> LeaseClaim | None:
        """One attempt; ``None`` when the lease or the session changed meanwhile (try again)."""
        now = self._clock()
        free = {"filter_predicate": _free(now, holder)}
        take = ("patch", (items.lease_id(partition), self._taken(holder, now)), free)
        kept = self._kept_etag(user_id, partition)
        unless = {"if_none_match_etag": kept} if kept is not None else {}
        try:
            results = await self._batch(partition, user_id, [("read", (items.checked_path(partition),), unless), take])
        except (cosmos_errors.CosmosBatchOperationError, cosmos_errors.CosmosHttpResponseError) as failed:
            if isinstance(failed, cosmos_errors.CosmosBatchOperationError):
                if (failed.error_index, failed.status_code) == (0, 404):  # no session yet: a first turn
                    return await self._claim_alone(partition, user_id, holder, now)
                if (failed.error_index, failed.status_code) == (1, 404):  # a session no turn ran on yet
                    return await self._create_with_read(partition, user_id, holder, now)
                if (failed.error_index, failed.status_code) == (1, 412):  # a live lease
                    return await self._refused(partition, user_id)
            if kept is None or failed.status_code in _TRANSIENT:
                raise
            return await self._unconditionally(failed, partition, user_id, holder)
        return await self._claimed(partition, user_id, holder, results, kept)

    def _kept_etag(self, user_id: str, partition: str) -> str | None:
        """The version whose document this instance kept (the claim's read asks only for another one), if any."""
        if self.windows is None or not self.conditional:
            return None
        return self.windows.document_etag((user_id, partition))

    async def _unconditionally(
        self, failed: HttpResponseError, partition: str, user_id: str, holder: str
    ) -> LeaseClaim | None:
        """The service refused the claim that carried the condition: claim again without it, as every claim of this
        lease will from now on (a batch is all or nothing; should this one have taken the lease after all, with its
        answer lost, the same holder takes it again)."""
        logger.warning(
            "Cosmos DB refused a claim reading the session only if changed (%s, status %s); claims read it whole "
            "from now on",
            type(failed).__name__,
            failed.status_code,
        )
        self.conditional = False
        return await self._claim(partition, user_id, holder)

    async def _create_with_read(self, partition: str, user_id: str, holder: str, now: float) -> LeaseClaim | None:
        body = self._item(partition, user_id, holder, now + self.seconds)
        try:
            results = await self._batch(
                partition, user_id, [("read", (items.checked_path(partition),)), ("create", (body,))]
            )
        except cosmos_errors.CosmosBatchOperationError as failed:
            if failed.error_index in (0, 1) and failed.status_code in (404, 409):
                return None  # the session went, or another turn created the lease first
            raise
        return await self._claimed(partition, user_id, holder, results)

    async def _claim_alone(self, partition: str, user_id: str, holder: str, now: float) -> LeaseClaim | None:
        """The lease of a session that does not exist yet: its first turn creates the document."""
        try:
            await self._container.create_item(
                self._item(partition, user_id, holder, now + self.seconds), no_response=True
            )
            return LeaseClaim(holder, None)
        except cosmos_errors.CosmosResourceExistsError:
            pass
        try:
            await self._container.patch_item(
                items.lease_id(partition),
                partition_key=items.partition_key(user_id, partition),
                patch_operations=self._taken(holder, now),
                filter_predicate=_free(now, holder),
                no_response=True,
            )
        except cosmos_errors.CosmosAccessConditionFailedError:
            return await self._refused(partition, user_id)
        except cosmos_errors.CosmosResourceNotFoundError:
            return None
        return LeaseClaim(holder, None)

    async def _claimed(
        self, partition: str, user_id: str, holder: str, results: Any, sent: str | None = None
    ) -> LeaseClaim | None:
        """The claim's record: from the document read, or, when the read answered that version ``sent`` is
        unchanged (304, no body), from the document kept for it."""
        key = (user_id, partition)
        read = results[0]
        if sent is not None and int(read.get("statusCode", 0)) == 304:
            version = self.windows.take_version(key, sent) if self.windows is not None else None
            if version is not None:
                assert version.document is not None  # take_version returns only versions kept with their document
                document, size, window = version.document, version.document_bytes, version.window
            else:  # taken meanwhile by another claim of this process (which then failed): read it on its own
                document = await self._read(partition, user_id)
                if document is None:
                    return None  # deleted meanwhile: try again
                size, window = response_size(document), None
        else:
            document, size = read["resourceBody"], response_size(results)
            window = self.windows.take(key, document.get("_etag")) if self.windows is not None else None
        try:
            record = items.owned_record(document, user_id, size=size, window=window)
        except SessionNotFoundError:
            await self.release(items.session_key(partition), user_id, holder)
            raise
        return LeaseClaim(holder, record)

    async def _read(self, partition: str, user_id: str) -> dict[str, Any] | None:
        try:
            document: dict[str, Any] = await self._container.read_item(
                items.checked_path(partition), partition_key=items.partition_key(user_id, partition)
            )
        except cosmos_errors.CosmosResourceNotFoundError:
            return None
        return document

    async def _refused(self, partition: str, user_id: str) -> None:
        """A live lease: refused with the time it has left; ``None`` when it was freed meanwhile."""
        try:
            current = await self._container.read_item(
                items.lease_id(partition), partition_key=items.partition_key(user_id, partition)
            )
        except cosmos_errors.CosmosResourceNotFoundError:
            return None
        remaining = float(current.get("expiresAt", 0)) - self._clock()
        if remaining > 0:
            raise self._busy(min(remaining, self.renew_every))
        return None

    async def renew(self, session_id: str, user_id: str, lease_etag: str) -> str | None:
        """Extend our claim by a whole lease; ``None`` when another turn took it over meanwhile.

        Conditional on the claim's holder, not on the item's etag: a renewal whose answer was lost leaves
        the claim ours (the next renewal, and the commit's release, still match it)."""
        operations = [{"op": "set", "path": "/expiresAt", "value": round(self._clock() + self.seconds, 3)}]
        with store_errors():
            try:
                await self._patch(session_id, user_id, operations, lease_etag)
            except (cosmos_errors.CosmosAccessConditionFailedError, cosmos_errors.CosmosResourceNotFoundError):
                return None
        return lease_etag

    async def release(self, session_id: str, user_id: str, lease_etag: str) -> None:
        """Expire our claim at once (a turn that ends without a commit), so the next turn need not wait it out."""
        with best_effort("release a turn lease"):
            await self._patch(session_id, user_id, RELEASE, lease_etag)

    async def _patch(self, session_id: str, user_id: str, operations: list[dict[str, Any]], holder: str) -> Any:
        partition = items.item_id(session_id)
        return await self._container.patch_item(
            items.lease_id(partition),
            partition_key=items.partition_key(user_id, partition),
            patch_operations=operations,
            filter_predicate=held_by(holder),
            no_response=True,
        )

    async def _batch(self, partition: str, user_id: str, operations: list[Any]) -> Any:
        return await self._container.execute_item_batch(
            operations, partition_key=items.partition_key(user_id, partition)
        )

    def _taken(self, holder: str, now: float) -> list[dict[str, Any]]:
        return [
            {"op": "set", "path": "/expiresAt", "value": round(now + self.seconds, 3)},
            {"op": "set", "path": "/holder", "value": holder},
        ]

    def _item(self, partition: str, user_id: str, holder: str, expires_at: float) -> dict[str, Any]:
        return items.lease_item(partition, user_id, self.ttl_seconds, holder=holder, expires_at=expires_at)

    @staticmethod
    def _busy(remaining_seconds: float) -> TurnInProgressError:
        return TurnInProgressError(
            "Another turn on this session is in progress; retry when it has finished.",
            retry_after=max(1, math.ceil(remaining_seconds)),
        )


def _free(now: float, holder: str) -> str:
    """The filter predicate of a lease this claim may take: expired (a released one holds 0), or already
    taken by this very claim (its request sent again after a lost answer). ``holder`` is hex: safe inline."""
    return f"FROM c WHERE c.expiresAt < {now:.3f} OR c.holder = '{holder}'"
