"""The local host's queue triggers: what the Functions host's queue listener does, for development and tests.

For each queue-triggered function of the app a poller receives messages (each hidden from other pollers
for ``lease_seconds``, renewed while the function runs), hands the decoded body to the function as an
``azure.functions.QueueMessage`` with its ``dequeue_count``, deletes the message when the function returns,
makes it visible again after ``visibilityTimeout`` when it raises, and moves it to ``<queue>-poison``
once it has failed ``maxDequeueCount`` times: the rules of the host's queue extension, read from host.json
(``extensions.queues``). A process killed mid-function leaves its message hidden until the lease runs out;
then another poller gets it with a higher ``dequeue_count``, as in Azure (where the lease is 10 minutes).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.core.exceptions import AzureError, ResourceExistsError
from azure.functions.queue import QueueMessage
from azure.storage.queue.aio import QueueClient, QueueServiceClient

from devtools.local_storage import DEVELOPMENT_STORAGE, connection_string

logger = logging.getLogger("devtools.queues")


@dataclass(frozen=True)
class QueueOptions:
    """``extensions.queues`` of host.json, with the host's defaults (polling kept short for development)."""

    max_dequeue_count: int = 5
    visibility_timeout: float = 0.0
    """How long a failed message stays hidden before its retry."""
    batch_size: int = 16
    max_polling_interval: float = 2.0
    """The host backs off to a minute; locally a turn should not wait that long for its poller."""

    @classmethod
    def from_host_json(cls, path: Path = Path("host.json")) -> QueueOptions:
        queues = {}
        if path.is_file():
            queues = json.loads(path.read_text(encoding="utf-8")).get("extensions", {}).get("queues", {})
        defaults = cls()
        return cls(
            max_dequeue_count=int(queues.get("maxDequeueCount", defaults.max_dequeue_count)),
            visibility_timeout=_seconds(queues.get("visibilityTimeout"), defaults.visibility_timeout),
            batch_size=int(queues.get("batchSize", defaults.batch_size)),
            max_polling_interval=min(
                _seconds(queues.get("maxPollingInterval"), defaults.max_polling_interval),
                defaults.max_polling_interval,
            ),
        )


def _seconds(value: Any, default: float) -> float:
    """A host.json duration: ``"hh:mm:ss"`` or milliseconds."""
    if value is None:
        return default
    if isinstance(value, int | float):
        return float(value) / 1000
    hours, minutes, seconds = (float(part) for part in str(value).split(":"))
    return hours * 3600 + minutes * 60 + seconds


@dataclass(frozen=True)
class QueueFunction:
    name: str
    queue: str
    connection: str
    function: Callable[..., Any]


def queue_functions(registered: list[func.FunctionBuilder]) -> list[QueueFunction]:
    """The queue-triggered ones of the app's functions, with the queue and the connection setting their bindings
    name."""
    found = []
    for function in registered:
        trigger = function.get_trigger()
        if trigger is not None and trigger.get_binding_name() == "queueTrigger":
            connection = getattr(trigger, "connection", None) or "AzureWebJobsStorage"
            found.append(
                QueueFunction(
                    function.get_function_name(), trigger.queue_name, connection, function.get_user_function()
                )
            )
    return found


def resolve_connection(setting: str) -> str | None:
    """The connection string the setting names (``UseDevelopmentStorage=true``: the emulator's default port)."""
    value = os.environ.get(setting) or None
    if value is not None and value.strip().lower() == DEVELOPMENT_STORAGE.lower():
        return connection_string(10001)
    return value


class QueueRunner:
    """Polls the queues of ``functions`` and runs each message as the Functions host would."""

    def __init__(self, functions: list[QueueFunction], options: QueueOptions, *, lease_seconds: float = 600) -> None:
        self.functions = functions
        self.options = options
        self.lease_seconds = lease_seconds
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for function in self.functions:
            connection = resolve_connection(function.connection)
            if connection is None:
                logger.warning("%s is not run: the setting %s is not set", function.name, function.connection)
                continue
            self._tasks.append(asyncio.create_task(self._poll(function, connection), name=f"queue:{function.name}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _poll(self, function: QueueFunction, connection: str) -> None:
        service = QueueServiceClient.from_connection_string(connection)
        async with service:
            queue = service.get_queue_client(function.queue)
            poison = service.get_queue_client(f"{function.queue}-poison")
            for client in (queue, poison):
                with contextlib.suppress(ResourceExistsError):
                    await client.create_queue()
            idle = 0.1
            running: set[asyncio.Task[None]] = set()
            try:
                while True:
                    # As the host: a new batch once at most half of the last one still runs (newBatchThreshold).
                    received = []
                    if len(running) <= self.options.batch_size // 2:
                        try:
                            received = await self._receive(queue, self.options.batch_size - len(running))
                        except AzureError as error:  # the emulator restarting: poll again later
                            logger.warning("Polling %s failed: %s", function.queue, type(error).__name__)
                    for message in received:
                        running.add(asyncio.create_task(self._run(function, queue, poison, message)))
                    idle = 0.1 if received else min(idle * 2, self.options.max_polling_interval)
                    if running:
                        finished, _ = await asyncio.wait(running, timeout=idle, return_when=asyncio.FIRST_COMPLETED)
                        running -= finished
                    else:
                        await asyncio.sleep(idle)
            finally:
                for task in running:
                    task.cancel()

    async def _receive(self, queue: QueueClient, count: int) -> list[Any]:
        pages = queue.receive_messages(
            messages_per_page=count,
            max_messages=count,
            visibility_timeout=max(1, round(self.lease_seconds)),
        )
        return [message async for message in pages]

    async def _run(self, function: QueueFunction, queue: QueueClient, poison: QueueClient, message: Any) -> None:
        receipt = [message.pop_receipt]
        done = asyncio.Event()
        renewing = asyncio.create_task(self._renew(queue, message.id, receipt, done))
        try:
            await function.function(_queue_message(message), context=_Context(str(uuid.uuid4()), function.name))
        except Exception as error:  # the host logs it and retries the message
            logger.info("%s raised %s", function.name, type(error).__name__)
            failed: BaseException | None = error
        else:
            failed = None
        finally:
            done.set()  # a renewal in flight completes first: its new pop receipt is the one to use
            await renewing
        try:
            if failed is None:
                await queue.delete_message(message.id, receipt[0])
            elif message.dequeue_count >= self.options.max_dequeue_count:
                logger.warning("%s moved message %s to %s", function.name, message.id, poison.queue_name)
                await poison.send_message(message.content)
                await queue.delete_message(message.id, receipt[0])
            else:
                logger.info("%s failed (%s): message %s is retried", function.name, type(failed).__name__, message.id)
                await queue.update_message(
                    message.id, receipt[0], visibility_timeout=round(self.options.visibility_timeout)
                )
        except AzureError as error:  # taken over after its lease ran out, or the emulator went away
            logger.warning(
                "Message %s of %s could not be settled: %s", message.id, function.queue, type(error).__name__
            )

    async def _renew(self, queue: QueueClient, message_id: str, receipt: list[str], done: asyncio.Event) -> None:
        """Keep the message hidden while its function runs, as the host does (every half lease)."""
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.lease_seconds / 2):
                    await done.wait()
            if done.is_set():
                return
            try:
                updated = await queue.update_message(
                    message_id, receipt[0], visibility_timeout=max(1, round(self.lease_seconds))
                )
            except AzureError as error:
                logger.warning("Message %s could not be kept hidden: %s", message_id, type(error).__name__)
                return
            receipt[0] = updated.pop_receipt


@dataclass(frozen=True)
class _Context:
    invocation_id: str
    function_name: str
    function_directory: str = "."
    trace_context: Any = None
    retry_context: Any = None


def _queue_message(message: Any) -> QueueMessage:
    """The message as the worker binds it: the body base64-decoded (the host's default ``messageEncoding``)."""
    raw = message.content if isinstance(message.content, str) else message.content.decode()
    try:
        body = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        body = raw.encode()
    return QueueMessage(
        id=message.id,
        body=body,
        dequeue_count=message.dequeue_count,
        expiration_time=message.expires_on,
        insertion_time=message.inserted_on,
        time_next_visible=message.next_visible_on,
        pop_receipt=message.pop_receipt,
    )
