"""Triggers other than HTTP: a queue message reaches the same runtime, the same turn service and the same
error rules as an HTTP request.

A :class:`QueueTrigger` names a queue and a handler of :class:`Job`; :func:`cosmos_history.app.create_app`
registers it with the v2 model's ``queue_trigger``. The handler gets the message and the runtime's turn
service, not the store: like every adapter it only builds a :class:`~cosmos_history.domain.results.TurnRequest`.
Errors follow what a retry can achieve: the host retries a message whose handler raised (and moves it to the
poison queue after ``maxDequeueCount`` tries), so an unexpected error, or a :class:`ProblemError` that is not the
caller's fault, is raised again, while the caller's (bad input, a conflict no retry fixes) is logged and the
message dropped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import azure.functions as func

from cosmos_history.domain.errors import ProblemError
from cosmos_history.domain.service import Turns
from cosmos_history.runtime import Runtime, RuntimeSource
from cosmos_history.settings import Settings
from cosmos_history.telemetry import request_context

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """One queue message for a handler: its JSON body and the runtime's turn service."""

    message_id: str
    body: Any
    turns: Turns
    settings: Settings
    dequeue_count: int = 1
    """How many times the queue has delivered this message (1 the first time; the host gives up after
    ``maxDequeueCount``)."""
    runtime: Runtime | None = None
    """The whole runtime, for handlers that need more than the turn service (the turn log, the queue)."""


JobHandler = Callable[[Job], Awaitable[None]]


@dataclass(frozen=True)
class QueueTrigger:
    """One queue-triggered function: ``handler`` runs for each message of ``queue``."""

    name: str
    queue: str
    handler: JobHandler
    connection: str = "AzureWebJobsStorage"
    """The app setting naming the storage account (the host reads it, never this app)."""


def queue_function(trigger: QueueTrigger, runtime: RuntimeSource) -> Callable[..., Awaitable[None]]:
    """Wrap ``trigger``'s handler as an Azure Functions queue function served by ``runtime``.

    The signature is exactly what the worker binds: the message, and the context whose invocation id
    stamps the log records (optional, so tests may pass only the message).
    """

    async def function(message: func.QueueMessage, context: func.Context = None) -> None:  # type: ignore[assignment]
        invocation = str(getattr(context, "invocation_id", None) or message.id or "")
        with request_context(invocation, None):
            await _handle(message)

    async def _handle(message: func.QueueMessage) -> None:
        built: Runtime | None = None
        try:
            body = json.loads(message.get_body())
        except (ValueError, UnicodeDecodeError, RecursionError):
            logger.error("%s dropped a message that is not JSON", trigger.name)
            return
        try:
            built = await runtime.get()
            count = int(getattr(message, "dequeue_count", None) or 1)
            await trigger.handler(Job(str(message.id or ""), body, built.turns, built.settings, count, built))
        except ProblemError as error:
            if built is not None:
                await built.recover(error)
            if error.kind.caller_fault and error.retry_after is None:
                # No retry can succeed: dropping the message is the answer (types only, never its text).
                logger.warning("%s dropped a message: %s", trigger.name, error.title)
                return
            logger.warning("%s failed, the host retries: %s", trigger.name, error.title)
            raise
        except Exception as error:
            logger.error("Unhandled %s in %s", type(error).__name__, trigger.name)
            logger.debug("%s failure details", trigger.name, exc_info=error)
            raise

    function.__name__ = function.__qualname__ = trigger.name
    function.__doc__ = trigger.handler.__doc__
    return function
