"""Time the tests move by hand: a clock for the adapters' expiries and the lease heartbeat's pause.

Leases, renewals and retention are tested by moving these, never by waiting: nothing here sleeps, and a
step returns as soon as what it stands for has happened, however loaded the machine is.
"""

from __future__ import annotations

import asyncio

HANG_GUARD = 60
"""Seconds after which a step that never comes fails the test instead of hanging it; nothing waits for them."""


class ManualClock:
    """A clock that moves only when the test says so."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class ManualHeartbeat:
    """The lease heartbeat's pause (``TurnGuards.pause``), driven by the test: a pause ends only when
    :meth:`beat` moves ``clock`` by the time it asked for, so a turn outlives its lease in no real time."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self._pauses: asyncio.Queue[tuple[float, asyncio.Future[None]]] = asyncio.Queue()
        self._waiting: tuple[float, asyncio.Future[None]] | None = None
        self.beats = 0

    async def pause(self, seconds: float) -> None:
        ended = asyncio.get_running_loop().create_future()
        self._pauses.put_nowait((seconds, ended))
        await ended

    async def beat(self) -> None:
        """Let the waiting pause's time pass, then wait until the heartbeat has acted on it (renewed, or tried
        to) and paused again."""
        async with asyncio.timeout(HANG_GUARD):
            waiting, self._waiting = self._waiting, None
            seconds, ended = waiting if waiting is not None and not waiting[1].done() else await self._next()
            self.clock.advance(seconds)
            ended.set_result(None)
            self.beats += 1
            self._waiting = await self._next()

    async def _next(self) -> tuple[float, asyncio.Future[None]]:
        """The next pause of a running heartbeat (those of heartbeats stopped meanwhile are skipped)."""
        while True:
            seconds, ended = await self._pauses.get()
            if not ended.done():
                return seconds, ended
