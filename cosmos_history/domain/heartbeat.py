"""Keeps a running turn's lease alive: renewed every third of its length while the model works.

A short lease lets a crashed instance's session accept turns again within seconds, and a renewal
lets a turn run longer than the lease. Renewing is the lease adapter's job (one conditional write);
when to renew, and what to do when it fails, is decided here, once for every adapter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cosmos_history.domain.ports import TurnLease

logger = logging.getLogger(__name__)


@dataclass
class LeaseHold:
    """A lease held by a running turn: its latest etag (renewals change it) and how often it was renewed."""

    etag: str
    renewals: int = 0


Pause = Callable[[float], Awaitable[None]]
"""How the heartbeat waits between renewals: ``asyncio.sleep``, or a test's clock that moves at once."""


@contextlib.asynccontextmanager
async def keep_renewed(
    lease: TurnLease, session_id: str, user_id: str, etag: str, *, pause: Pause = asyncio.sleep
) -> AsyncIterator[LeaseHold]:
    """Renew the lease every ``lease.seconds / 3`` until the block ends; the hold carries its latest etag,
    which the session records when the turn is saved (so the next turn still needs no read)."""
    hold = LeaseHold(etag)
    beats = _renew_until_cancelled(lease, session_id, user_id, hold, pause)
    task = asyncio.create_task(beats, name="lease heartbeat")
    try:
        yield hold
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _renew_until_cancelled(
    lease: TurnLease, session_id: str, user_id: str, hold: LeaseHold, pause: Pause
) -> None:
    while True:
        await pause(lease.seconds / 3)
        try:
            renewed = await lease.renew(session_id, user_id, hold.etag)
        except Exception as error:  # a passing outage: the next beat tries again, the turn goes on
            logger.info("Could not renew a turn lease: %s", type(error).__name__)
            continue
        if renewed is None:
            # Taken over after we missed renewals: the session's own etag still keeps both turns from
            # overwriting each other, so this turn runs on to its conditional save.
            logger.info("The turn lease of a running turn was taken over; renewals stop")
            return
        hold.etag = renewed
        hold.renewals += 1
