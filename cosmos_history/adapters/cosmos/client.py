"""One Cosmos DB client per worker process, and the container it needs.

Azure's guidance for Functions is to reuse one client across invocations: a
client per request pays TLS set-up, address resolution and metadata reads each
time. The container is created (if missing) once, at first use, on the running
event loop; requests never check it again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from azure.core.exceptions import AzureError, ClientAuthenticationError, ServiceRequestError, ServiceResponseError
from azure.core.pipeline.transport import AsyncHttpTransport
from azure.cosmos import PartitionKey
from azure.cosmos import exceptions as cosmos_errors
from azure.cosmos.aio import ContainerProxy, CosmosClient

from cosmos_history.domain.errors import StoreAccessError, StoreUnavailableError
from cosmos_history.settings import CosmosSettings
from cosmos_history.telemetry import cosmos_response_hook

logger = logging.getLogger(__name__)

# The SDK logs every request's headers at INFO; in Application Insights that is noise paid per GB.
for _name in ("azure.core.pipeline.policies.http_logging_policy", "azure.cosmos._cosmos_http_logging_policy"):
    logging.getLogger(_name).setLevel(logging.WARNING)
# A missing credential makes azure.identity log its whole credential chain on every request; the cause and its
# fix are logged once instead (see access_error).
logging.getLogger("azure.identity").setLevel(logging.ERROR)

#: Hierarchical partition key: a user's sessions share the prefix ``[userId]`` (listing them is a
#: single-partition query) and each session's items share ``[userId, sessionId]`` (docs/adr-partitioning.md).
PARTITION_KEY_PATHS = ["/userId", "/sessionId"]
PARTITION_KEY_KIND = "MultiHash"
#: The container layout before hierarchical keys; such a container must be migrated (MIGRATION_COMMAND).
OLD_PARTITION_KEY_PATHS = ["/sessionId"]
MIGRATION_COMMAND = "python -m cosmos_history.migrate"

#: Only the fields queries filter or sort on are indexed; message bodies are not, so a
#: write costs about the same request units at turn 1 and turn 1,000.
INDEXING_POLICY: dict[str, Any] = {
    "indexingMode": "consistent",
    "automatic": True,
    "includedPaths": [{"path": "/userId/?"}, {"path": "/type/?"}, {"path": "/updatedAt/?"}],
    "excludedPaths": [{"path": "/*"}, {"path": '/"_etag"/?'}],
}


def create_client(settings: CosmosSettings, *, transport: AsyncHttpTransport | None = None) -> CosmosClient:
    """Build the async client: the account key when given (emulator), else managed identity.

    TLS verification is turned off only for an emulator on this machine, whose
    certificate is self-signed. ``transport`` replaces the SDK's HTTP transport (tests
    inject faults there) while every other option stays as production sets it.
    """
    options: dict[str, Any] = {
        # Throttling (429) is retried by the SDK with the server's back-off hint; cap the total wait
        # so a turn fails with 503 instead of hanging.
        "retry_total": 9,
        "retry_backoff_max": 30,
        "connection_timeout": 10,
        # Charges each response's request units to the running turn step (a no-op outside turns).
        "raw_response_hook": response_hook,
    }
    if settings.is_local:
        options["connection_verify"] = False
    options["transport"] = transport if transport is not None else default_transport()
    if settings.key:
        return CosmosClient(settings.endpoint, credential=settings.key, **options)
    from azure.identity.aio import DefaultAzureCredential  # only needed (and imported) in Azure

    return _IdentityCosmosClient(settings.endpoint, DefaultAzureCredential(), **options)


def default_transport() -> AsyncHttpTransport:
    """The SDK's aiohttp transport, told to read proxy settings and ``.netrc`` only where there are any.

    With its default (``use_env_settings=True``) aiohttp looks both up again on every request, each in a
    worker thread: about a millisecond per Cosmos DB request on a busy host, before the request leaves.
    Whether any are set is decided once, here: a deployment behind a proxy (``HTTPS_PROXY`` and the like)
    or with a ``.netrc`` file keeps the per-request look-up exactly as before.
    """
    from azure.core.pipeline.transport import AioHttpTransport  # imports aiohttp: on the first request, not at start

    return AioHttpTransport(use_env_settings=environment_settings_present())


def environment_settings_present() -> bool:
    """Whether aiohttp's ``trust_env`` would find anything: a proxy variable, or a ``.netrc`` file."""
    import urllib.request  # aiohttp imports it anyway

    netrc = os.environ.get("NETRC") or str(Path.home() / ".netrc")
    return bool(urllib.request.getproxies_environment()) or Path(netrc).exists()


class _IdentityCosmosClient(CosmosClient):
    """A client that closes the credential it was built with (its sessions and token caches) too."""

    def __init__(self, url: str, credential: Any, **options: Any) -> None:
        super().__init__(url, credential=credential, **options)
        self._own_credential = credential

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            await self._own_credential.close()


async def ensure_container(client: CosmosClient, settings: CosmosSettings) -> ContainerProxy:
    """Create the database and container if missing and return the container.

    In Azure the Bicep deployment creates both and the identity's data-plane role may not allow
    creating them: then the existing container is used as it is.
    """
    database = client.get_database_client(settings.database)
    container = database.get_container_client(settings.container)
    if not settings.key:
        await check_layout(container, settings)
        return container
    database = await client.create_database_if_not_exists(settings.database)
    container = await database.create_container_if_not_exists(
        settings.container,
        partition_key=PartitionKey(path=PARTITION_KEY_PATHS, kind=PARTITION_KEY_KIND),
        indexing_policy=INDEXING_POLICY,
    )
    await check_layout(container, settings)
    logger.info("Cosmos container %s/%s ready", settings.database, settings.container)
    return container


class ContainerLayoutError(StoreAccessError):
    """The container is partitioned otherwise than the app needs (a deployment made before hierarchical
    keys): a 503 no retry can mend, whose detail names the migration. The app refuses to serve from it."""


async def check_layout(container: ContainerProxy, settings: CosmosSettings) -> None:
    """Refuse a container whose partition key is not ``PARTITION_KEY_PATHS``: every read would address
    the wrong partition. A missing container is left to the caller (it is created, or reported later)."""
    try:
        properties = await container.read()
    except cosmos_errors.CosmosResourceNotFoundError:
        return
    paths = list(properties.get("partitionKey", {}).get("paths", []))
    if paths != PARTITION_KEY_PATHS:
        raise layout_error(settings, paths)


def layout_error(settings: CosmosSettings, paths: list[str]) -> ContainerLayoutError:
    detail = (
        f"Cosmos DB container {settings.database}/{settings.container} is partitioned by {paths}, but this "
        f"version of the app needs the hierarchical key {PARTITION_KEY_PATHS}. Copy its items into a new "
        f"container with `{MIGRATION_COMMAND} --source {settings.container} --target <new container>` and "
        "point COSMOS_CONTAINER at the new one (README: Upgrading to per-user partitions)."
    )
    logger.error("%s", detail)
    return ContainerLayoutError(detail)


#: Cosmos DB's sub-status for "owner resource does not exist": the item's database or container is gone.
OWNER_MISSING_SUBSTATUS = "1003"


class ContainerMissingError(StoreUnavailableError):
    """The database or container does not exist (deleted after start-up, or an emulator restarted
    without its data). A 503: the runtime recreates it where it may (see ``Runtime.recover``)."""


def container_missing() -> ContainerMissingError:
    return ContainerMissingError(
        "The session store's database or container does not exist. It is recreated where the app may "
        "create it (a key is configured); in Azure, redeploy the infrastructure (azd provision). Retry later.",
        retry_after=2,
    )


def response_hook(pipeline_response: Any) -> None:
    """Runs on every Cosmos DB response: charges it to the running turn step, and turns "owner resource
    does not exist" into :class:`ContainerMissingError` before any caller can mistake it for a missing item."""
    cosmos_response_hook(pipeline_response)
    response = pipeline_response.http_response
    if response.status_code == 404 and response.headers.get("x-ms-substatus") == OWNER_MISSING_SUBSTATUS:
        raise container_missing()


NO_CREDENTIAL = (
    "The app has no credential for Cosmos DB. Set COSMOS_KEY for an emulator; in Azure, give the function app a "
    "managed identity (AZURE_CLIENT_ID for a user-assigned one) with the Cosmos DB Built-in Data Contributor role; "
    "locally against an Azure account, sign in with `az login`."
)
CREDENTIAL_REFUSED = (
    "Cosmos DB refused the app's credential. Check COSMOS_KEY, or that the managed identity has the Cosmos DB "
    "Built-in Data Contributor role on this account (role assignments take a few minutes to apply)."
)
_logged_causes: set[str] = set()


def access_error(detail: str, cause: BaseException) -> StoreAccessError:
    """A 503 naming the cause and its fix; logged once per cause, since every request would repeat it."""
    key = f"{type(cause).__name__}:{detail}"
    if key not in _logged_causes:
        _logged_causes.add(key)
        logger.error("%s (%s)", detail, type(cause).__name__)
    return StoreAccessError(detail)


@contextmanager
def store_errors() -> Iterator[None]:
    """Turn transport failures and exhausted throttling retries into a 503 the client can retry, and a
    missing or refused credential into a 503 that says how to fix it."""
    try:
        yield
    except ClientAuthenticationError as error:
        raise access_error(NO_CREDENTIAL, error) from error
    except (ServiceRequestError, ServiceResponseError) as error:
        raise StoreUnavailableError("The session store could not be reached. Retry later.", retry_after=5) from error
    except cosmos_errors.CosmosHttpResponseError as error:
        if error.status_code in (401, 403):
            raise access_error(CREDENTIAL_REFUSED, error) from error
        if error.status_code in (408, 429, 449, 500, 502, 503, 504) or error.status_code is None:
            raise StoreUnavailableError(
                "The session store is busy or unavailable. Retry later.", retry_after=5
            ) from error
        raise


def written_etag(response: Any) -> str:
    """The etag of an item just written with ``no_response=True``.

    Writes ask Cosmos DB not to echo the item back (``Prefer: return=minimal``): the echo would
    double the bytes every turn receives. The etag then comes from the response headers, exactly
    as sent (Azure's etags include their quotes, and If-Match must repeat them); servers that echo
    anyway (the local one) also carry it in the body.
    """
    headers = response.get_response_headers() if hasattr(response, "get_response_headers") else {}
    for name, value in headers.items():
        if name.lower() == "etag":
            return str(value)
    return str(response["_etag"])


def response_size(response: Any) -> int | None:
    """The body size Cosmos DB reported for a read (``Content-Length``), when it did."""
    headers = response.get_response_headers() if hasattr(response, "get_response_headers") else {}
    for name, value in headers.items():
        if name.lower() == "content-length" and str(value).isdigit():
            return int(value)
    return None


@contextmanager
def best_effort(what: str) -> Iterator[None]:
    """Clean-up writes whose failure must not replace the error being handled (a stale lease
    expires by itself; a stale idempotency result is recognised and ignored)."""
    try:
        yield
    except AzureError as error:
        logger.info("Could not %s: %s", what, type(error).__name__)
