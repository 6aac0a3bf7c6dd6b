"""The queue functions of background turns: the worker that runs a queued turn, and the one that ends a turn
whose job the queue gave up on (its poison queue).

``function_app.py`` registers :func:`background_triggers` with the app; the Functions host (the local host
in development, see ``devtools/queue_runner.py``) polls the queues, retries a job whose function raised and
moves it to ``<queue>-poison`` after ``maxDequeueCount`` deliveries (host.json, 5 by default).
"""

from __future__ import annotations

import logging

from cosmos_history import telemetry
from cosmos_history.settings import Settings
from cosmos_history.triggers import Job, QueueTrigger

logger = logging.getLogger(__name__)


async def run_background_turn(job: Job) -> None:
    """Run one queued turn (retried by the queue while it fails for a passing reason)."""
    background = job.runtime.background if job.runtime is not None else None
    if background is None:
        raise RuntimeError("a background job reached an app without background turns")
    body = job.body if isinstance(job.body, dict) else {}
    with telemetry.linked_job("background turn", body.get("trace")):
        await background.run(body)


async def fail_background_turn(job: Job) -> None:
    """End the turn of a job the queue gave up on: ``failed``, saying so (the session takes the next message)."""
    background = job.runtime.background if job.runtime is not None else None
    if background is None:
        raise RuntimeError("a background job reached an app without background turns")
    await background.give_up(job.body if isinstance(job.body, dict) else {})


def background_triggers(settings: Settings) -> list[QueueTrigger]:
    """The two queue functions, on the queues the settings name."""
    return [
        QueueTrigger("background_turn", settings.queue.name, run_background_turn),
        QueueTrigger("background_turn_poison", settings.queue.poison_name, fail_background_turn),
    ]
