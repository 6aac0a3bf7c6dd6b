"""The background-turn queue: an Azure Storage queue on the host storage account.

Locally it is the storage emulator (a connection string in ``AzureWebJobsStorage``); in Azure the account's
queue endpoint with the app's managed identity, the identity-based connection the Functions host uses too.
Messages are base64 text, the encoding the host's queue trigger decodes by default (``messageEncoding``).
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import TextBase64EncodePolicy
from azure.storage.queue.aio import QueueClient

from cosmos_history.domain.errors import QueueUnavailableError
from cosmos_history.settings import QueueSettings

logger = logging.getLogger(__name__)
for _name in ("azure.core.pipeline.policies.http_logging_policy", "azure.storage.queue"):
    logging.getLogger(_name).setLevel(logging.WARNING)

#: The host retries a failed message; a send that cannot reach the queue is a 503 the client may retry.
_RETRY_AFTER_SECONDS = 5


class StorageJobQueue:
    """:class:`~cosmos_history.domain.ports.JobQueue` over one storage queue."""

    def __init__(self, client: QueueClient, *, create: bool = False, credential: Any = None) -> None:
        self._client = client
        self._create = create
        self._credential = credential

    @classmethod
    def from_settings(cls, settings: QueueSettings, queue: str | None = None) -> StorageJobQueue:
        """The queue ``queue`` (default: the background-turn queue) of the account ``settings`` names.

        With a connection string (the local emulator) a missing queue is created on first use; in Azure the
        deployment creates it and the identity may only send to it.
        """
        name = queue or settings.name
        encoding = TextBase64EncodePolicy()
        if settings.service_uri is not None:
            from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

            credential: Any = (
                ManagedIdentityCredential(client_id=settings.client_id)
                if settings.client_id
                else DefaultAzureCredential()
            )
            client = QueueClient(settings.service_uri, name, credential=credential, message_encode_policy=encoding)
            return cls(client, credential=credential)
        if settings.connection_string is None:
            raise ValueError("the queue settings name no storage account")
        client = QueueClient.from_connection_string(settings.connection_string, name, message_encode_policy=encoding)
        return cls(client, create=True)

    async def enqueue(self, job: dict[str, Any], *, delay_seconds: int = 0) -> None:
        text = json.dumps(job, separators=(",", ":"))
        delay = max(0, int(delay_seconds)) or None
        try:
            try:
                await self._client.send_message(text, visibility_timeout=delay)
            except ResourceNotFoundError:
                if not self._create:
                    raise
                with contextlib.suppress(ResourceExistsError):
                    await self._client.create_queue()
                await self._client.send_message(text, visibility_timeout=delay)
        except AzureError as error:
            logger.warning("The background queue could not be reached: %s", type(error).__name__)
            raise QueueUnavailableError(
                "The queue of background turns cannot be reached; nothing was queued.",
                retry_after=_RETRY_AFTER_SECONDS,
            ) from None

    async def close(self) -> None:
        await self._client.close()
        if self._credential is not None:
            await self._credential.close()
