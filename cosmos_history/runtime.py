"""What an app builds once and reuses for every invocation: settings, the Cosmos client, the store,
the turn guards and the agents.

The Cosmos client, container and agents are built at the first request, on the worker's running
event loop, because the async Cosmos client binds to that loop (:class:`LazyRuntime`). Tests and the
benchmark hand an app a runtime they built themselves (:class:`ReadyRuntime`).

The workflow runs and the background turns are subsystems a plain turn never touches: they (and their modules)
are built on first use (:attr:`Runtime.workflows`, :attr:`Runtime.background`), so a cold start does not import
them (bench/optimisations.md).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from azure.core.pipeline.transport import AsyncHttpTransport
from azure.cosmos.aio import ContainerProxy, CosmosClient

from cosmos_history.adapters.cosmos.archive import RecentChunks
from cosmos_history.adapters.cosmos.client import ContainerMissingError, create_client, ensure_container, store_errors
from cosmos_history.adapters.cosmos.idempotency import CosmosReplayCache
from cosmos_history.adapters.cosmos.lease import CosmosTurnLease
from cosmos_history.adapters.cosmos.responses import CosmosResponseLog
from cosmos_history.adapters.cosmos.sessions import CosmosSessions
from cosmos_history.adapters.cosmos.turns import CosmosTurnLog
from cosmos_history.agents.catalog import Agents, build_agents
from cosmos_history.domain.budget import HistoryBudget
from cosmos_history.domain.errors import AgentsUnavailableError, SettingsError
from cosmos_history.domain.kept_windows import KeptWindows
from cosmos_history.domain.policy import HistoryPolicy
from cosmos_history.domain.service import Turns
from cosmos_history.domain.supervisor import TurnSupervisor
from cosmos_history.domain.turn import NO_GUARDS, TurnGuards
from cosmos_history.settings import Settings
from cosmos_history.telemetry import configure_telemetry

if TYPE_CHECKING:
    from cosmos_history.domain.background import BackgroundTurns
    from cosmos_history.domain.ports import JobQueue, ResponseLog, SessionRepository
    from cosmos_history.domain.turn_records import TurnLog
    from cosmos_history.domain.workflows import WorkflowRuns
    from cosmos_history.workflows.discovery import WorkflowModule

logger = logging.getLogger(__name__)


@dataclass
class Runtime:
    """What an app's functions share: settings, store, agents, guards, the turn service and the subsystems
    built on first use."""

    settings: Settings
    store: SessionRepository
    agents: Agents
    guards: TurnGuards = NO_GUARDS
    cosmos_client: CosmosClient | None = None
    """Set when the runtime built the client itself, and so must close it."""
    repair: Callable[[], Awaitable[object]] | None = None
    """Recreates the database and container; ``None`` where the app may not create them (Azure RBAC)."""
    responses: ResponseLog | None = None
    """Stored objects of the OpenAI-compatible endpoint; ``None`` keeps none (it then stores no turn)."""
    turn_log: TurnLog | None = None
    """Records and events of streamed (and queued) turns; ``None`` keeps none (they are then not addressable)."""
    _repairing: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    supervisor: TurnSupervisor = field(default_factory=TurnSupervisor, repr=False)
    """The turns (and the work that follows them) running in this runtime; drained as the host shuts down."""
    jobs: JobQueue | None = None
    """The queue of background turns; ``None`` where the app has no host storage connection."""
    build_workflows: Callable[[], WorkflowRuns] | None = field(default=None, repr=False)
    """Builds the app's workflows and their runs (:attr:`workflows`, on first use); ``None`` in runtimes built
    without them (tests of other parts)."""
    policy: HistoryPolicy = field(init=False, repr=False)
    """A new session's mode and the document's budget, built once from the settings (:func:`history_policy`)."""
    turns: Turns = field(init=False, repr=False)
    """The one turn service every trigger and protocol calls, built once from the store, agents, guards and policy."""
    _workflows: WorkflowRuns | None = field(default=None, init=False, repr=False)
    _workflows_error: str | None = field(default=None, init=False, repr=False)
    _background: BackgroundTurns | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.policy = history_policy(self.settings)
        self.turns = Turns(
            self.store,
            self.agents,
            self.guards,
            supervisor=self.supervisor,
            log=self.turn_log,
            flush_seconds=self.settings.events_flush_ms / 1000,
            poll_seconds=self.settings.events_poll_ms / 1000,
            policy=self.policy,
        )

    @property
    def workflows(self) -> WorkflowRuns | None:
        """The app's workflows and their runs, built at the first use; ``None`` in a runtime built without them.

        Raises:
            AgentsUnavailableError: a workflow module is broken (the detail names its file and the cause); logged
                once, at the first use, and raised at every use after it (until the app restarts).
        """
        if self._workflows is None and self.build_workflows is not None:
            if self._workflows_error is None:
                try:
                    self._workflows = self.build_workflows()
                except SettingsError as error:
                    self._workflows_error = str(error).rstrip(".")
                    # A configuration error, not a request's: its text names a file and a cause, never user input.
                    logger.error("The workflows cannot be loaded, so workflow requests answer 503: %s", error)
            if self._workflows_error is not None:
                raise AgentsUnavailableError(
                    f"The app's workflows could not be loaded: {self._workflows_error}. "
                    "Fix the workflow module or setting and restart the app."
                )
        return self._workflows

    @property
    def background(self) -> BackgroundTurns | None:
        """Queued turns (``"background": true``), built at the first use; ``None`` without a queue or a turn log."""
        if self._background is None and self.turn_log is not None and self.jobs is not None:
            from cosmos_history.domain.background import BackgroundTurns

            self._background = BackgroundTurns(self.turns, self.turn_log, self.jobs)
        return self._background

    async def recover(self, error: BaseException) -> None:
        """Give the runtime a chance to mend what made a request fail: a database or container deleted
        after start-up is recreated once (the request itself still answered 503; the next one works)."""
        if not isinstance(error, ContainerMissingError) or self.repair is None or self._repairing.locked():
            return
        async with self._repairing:
            try:
                with store_errors():
                    await self.repair()
            except Exception as failure:  # the client already has its 503; the next request tries again
                logger.warning("Could not recreate the Cosmos DB container: %s", type(failure).__name__)
            else:
                logger.warning("The Cosmos DB database or container was missing and has been recreated")

    async def close(self) -> None:
        if self.jobs is not None and hasattr(self.jobs, "close"):
            await self.jobs.close()
        queue = self._workflows.queue if self._workflows is not None else None
        if queue is not None and hasattr(queue, "close"):
            await queue.close()
        if self.cosmos_client is not None:
            await self.cosmos_client.close()


async def build_runtime(
    settings: Settings,
    *,
    agents: Agents | None = None,
    client: CosmosClient | None = None,
    transport: AsyncHttpTransport | None = None,
    workflows: Mapping[str, WorkflowModule] | None = None,
) -> Runtime:
    """Connect to Cosmos DB (creating the container when allowed) and build the agents (the workflows, ``workflows``
    or those discovered, at their first use: :func:`build_workflows`).

    A ``client`` passed in stays the caller's to close; one built here (with ``transport`` in the
    SDK's transport slot, when given) is closed by the runtime.
    """
    agents = agents if agents is not None else build_agents(settings)
    owned = client is None
    cosmos = create_client(settings.cosmos, transport=transport) if client is None else client
    try:
        with store_errors():
            container = await ensure_container(cosmos, settings.cosmos)
    except BaseException:
        if owned:
            await cosmos.close()
        raise
    store, guards = session_services(container, settings)
    repair = functools.partial(ensure_container, cosmos, settings.cosmos) if settings.cosmos.key else None
    responses = CosmosResponseLog(container, ttl_seconds=settings.session_ttl_seconds)
    owner = cosmos if owned else None
    turn_log = CosmosTurnLog(
        container, ttl_seconds=settings.session_ttl_seconds, event_ttl_seconds=settings.events_ttl_seconds
    )
    return Runtime(
        settings,
        store,
        agents,
        guards,
        cosmos_client=owner,
        repair=repair,
        responses=responses,
        turn_log=turn_log,
        jobs=job_queue(settings),
        build_workflows=functools.partial(build_workflows, settings, agents, container, workflows),
    )


def build_workflows(
    settings: Settings,
    agents: Agents,
    container: ContainerProxy,
    modules: Mapping[str, WorkflowModule] | None = None,
) -> WorkflowRuns:
    """The app's workflow runs over ``container``: ``modules``, or those ``WORKFLOWS_PACKAGE`` holds (discovered and
    checked now). Called on the first use of :attr:`Runtime.workflows`, so neither the workflow modules nor the
    workflow subsystem are imported by a cold start (its first plain turn needs none of them).

    Raises:
        SettingsError: a workflow module is broken (``WorkflowLoadError`` names its file).
    """
    from cosmos_history.adapters.cosmos.workflow_events import CosmosRunEvents
    from cosmos_history.adapters.cosmos.workflows import CosmosWorkflowRuns
    from cosmos_history.workflows.service import discover, queue_name, workflow_runs

    return workflow_runs(
        modules if modules is not None else discover(settings, agents),
        CosmosWorkflowRuns(container, ttl_seconds=settings.session_ttl_seconds),
        job_queue(settings, queue_name(settings)),
        CosmosRunEvents(container, event_ttl_seconds=settings.events_ttl_seconds),
        settings,
    )


def job_queue(settings: Settings, queue: str | None = None) -> JobQueue | None:
    """The background-turn queue the settings name (or ``queue`` of their account; the SDK imported only then),
    or ``None``."""
    if not settings.queue.configured:
        return None
    from cosmos_history.adapters.queue import StorageJobQueue

    return StorageJobQueue.from_settings(settings.queue, queue)


def history_policy(settings: Settings) -> HistoryPolicy:
    """The domain's history policy as the settings configure it: the default mode and the document's budget."""
    budget = HistoryBudget(
        max_bytes=settings.max_session_bytes,
        max_messages=settings.max_history_messages,
        max_tokens=settings.compaction.document_tokens,
    )
    return HistoryPolicy(settings.history_mode, budget)


def session_services(container: ContainerProxy, settings: Settings) -> tuple[CosmosSessions, TurnGuards]:
    """The store and turn guards over one container, configured from settings (the history policy is the
    runtime's: :func:`history_policy`)."""
    ttl = settings.session_ttl_seconds
    cache = settings.session_cache_bytes  # each of the two caches: the windows and the chunks they just moved out
    windows = KeptWindows(max_bytes=cache) if cache else None
    store = CosmosSessions(container, ttl_seconds=ttl, recent=RecentChunks(max_bytes=cache), windows=windows)
    guards = TurnGuards(
        lease=CosmosTurnLease(container, seconds=settings.turn_lease_seconds, ttl_seconds=ttl, windows=windows),
        replays=CosmosReplayCache(container, ttl_seconds=settings.idempotency_ttl_seconds),
        model_timeout_seconds=settings.turn_timeout_seconds,
    )
    return store, guards


class RuntimeSource(Protocol):
    """Where an app's functions get their runtime from."""

    settings: Settings

    async def get(self) -> Runtime: ...

    async def close(self) -> None: ...


class ReadyRuntime:
    """A runtime built by the caller (tests, benchmarks), who also closes it."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.settings = runtime.settings

    async def get(self) -> Runtime:
        return self.runtime

    async def close(self) -> None:
        """Nothing to do: the runtime belongs to whoever built it."""


Builder = Callable[[Settings], Awaitable[Runtime]]


class LazyRuntime:
    """Builds the runtime on first use, once, on the running event loop; closes what it built.

    :meth:`load_agents` builds the agents earlier, when the app starts: a broken agent module is then
    logged once, naming its file and the cause, and every request answers 503 with that cause
    (:class:`AgentsUnavailableError`) instead of failing on its own. The workflows are not loaded then: a broken
    workflow module is reported the same way at the first use of the workflows (:attr:`Runtime.workflows`), and
    only workflow requests and jobs answer 503.
    """

    def __init__(self, settings: Settings, *, build: Builder = build_runtime, telemetry: bool = True) -> None:
        self.settings = settings
        self._build = build
        self._telemetry = telemetry
        self._runtime: Runtime | None = None
        self._lock: asyncio.Lock | None = None
        self._agents: Agents | None = None
        self._agents_error: str | None = None

    def load_agents(self) -> bool:
        """Build the app's agents now (start-up); returns whether they could be built."""
        try:
            self._agents = build_agents(self.settings)
        except SettingsError as error:
            self._fail(error)
        return self._agents_error is None

    def _fail(self, error: SettingsError) -> None:
        self._agents_error = str(error)
        # A configuration error, not a request's: its text names a file and a cause, never user input.
        logger.error("The agents cannot be loaded, so every API request answers 503: %s", error, exc_info=error)

    async def get(self) -> Runtime:
        if self._agents_error is not None:
            raise self._unavailable()
        if self._runtime is not None:
            return self._runtime
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._runtime is None:
                if self._telemetry:
                    configure_telemetry(self.settings.telemetry)
                self._runtime = await self._built()
        return self._runtime

    async def _built(self) -> Runtime:
        if self._build is not build_runtime:
            return await self._build(self.settings)
        try:
            return await build_runtime(self.settings, agents=self._agents)
        except SettingsError as error:  # agents not loaded at start-up, and broken
            self._fail(error)
            raise self._unavailable() from None

    def _unavailable(self) -> AgentsUnavailableError:
        return AgentsUnavailableError(
            f"The app's agents could not be loaded at start-up: {self._agents_error.rstrip('.')}. "
            "Fix the agent module or setting and restart the app."
        )

    async def close(self, *, drain_seconds: float = 30.0) -> None:
        """Let streamed turns whose clients left finish saving (within ``drain_seconds``), then close."""
        if self._runtime is not None:
            try:
                async with asyncio.timeout(drain_seconds):
                    await self._runtime.supervisor.drain()
            except TimeoutError:
                pass
        runtime, self._runtime = self._runtime, None
        if runtime is not None:
            await runtime.close()
