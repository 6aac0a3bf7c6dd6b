"""Shared fixtures: one local Cosmos DB per test run (started and stopped here) and app runtimes."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.cosmos.aio import ContainerProxy

from cosmos_history import Runtime, build_agents, build_runtime, load_settings
from cosmos_history.adapters.cosmos.sessions import CosmosSessions
from cosmos_history.adapters.memory import MemorySessions
from cosmos_history.agents.catalog import Agents
from devtools.local_cosmos import EMULATOR_KEY, free_port, local_cosmos
from devtools.local_storage import local_storage

from .apphost import registered_functions
from .fake_openai import FakeOpenAI, fake_openai_server
from .fakes import RecordingChatClient
from .mcp_server import RecordingMCP, mcp_server

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="session")
def cosmos_env() -> Iterator[dict[str, str]]:
    """Settings pointing at a local Cosmos DB this run owns, with a database of its own.

    The settings go into ``os.environ`` as well, before ``function_app`` is imported (it reads them).
    """
    ARTIFACTS.mkdir(exist_ok=True)
    with local_cosmos(free_port(), log_path=ARTIFACTS / "local-cosmos.log") as endpoint:
        env = {
            "COSMOS_ENDPOINT": endpoint,
            "COSMOS_KEY": EMULATOR_KEY,
            "COSMOS_DATABASE": f"test-{uuid.uuid4().hex[:8]}",
            "COSMOS_CONTAINER": "sessions",
            "MODEL_PROVIDER": "offline",
        }
        saved = {name: os.environ.get(name) for name in env}
        os.environ.update(env)
        try:
            yield env
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


@pytest.fixture(scope="session")
def storage_env() -> Iterator[dict[str, str]]:
    """The host storage setting pointing at a local storage emulator (queues) this run owns, started the first
    time a test needs it; each test names queues of its own (``BACKGROUND_QUEUE``)."""
    ARTIFACTS.mkdir(exist_ok=True)
    with local_storage(free_port(), log_path=ARTIFACTS / "local-storage.log") as connection:
        yield {"AzureWebJobsStorage": connection}


@pytest.fixture(scope="session")
async def runtime(cosmos_env: dict[str, str]) -> AsyncIterator[Runtime]:
    """The real runtime (real Cosmos store) with a recording fake model."""
    settings = load_settings(cosmos_env)
    built = await build_runtime(settings, agents=build_agents(settings, RecordingChatClient()))
    yield built
    await built.close()


@pytest.fixture(scope="session")
def functions(runtime: Runtime) -> dict[str, Any]:
    """The project's route table registered on an app served by the test runtime, by function name."""
    return registered_functions(runtime)


@pytest.fixture
def model(runtime: Runtime) -> Iterator[RecordingChatClient]:
    """The runtime's recording model, reset for each test."""
    client = runtime.agents["assistant"].by_mode["local"].client
    assert isinstance(client, RecordingChatClient)
    client.reset()
    yield client
    client.reset()


@pytest.fixture
def offline_model() -> RecordingChatClient:
    """A recording model of the test's own, for tests that build their agents without the shared runtime."""
    return RecordingChatClient()


@pytest.fixture
def memory_store() -> MemorySessions:
    """Alice's sessions in memory, for turn tests that need no Cosmos DB."""
    return MemorySessions(user_id="alice")


@pytest.fixture
def memory_agents(offline_model: RecordingChatClient) -> Agents:
    """The app's default agents on the test's own recording model, for turn tests that need no Cosmos DB."""
    return build_agents(load_settings({}), offline_model)


@pytest.fixture(scope="module")
def fake_model() -> Iterator[FakeOpenAI]:
    """The fake OpenAI service (the only thing mocked end to end), one per test module."""
    with fake_openai_server() as fake:
        yield fake


@pytest.fixture(autouse=True)
def calm_fake_model(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test using the fake OpenAI service starts and ends with it calm (:meth:`FakeOpenAI.reset`)."""
    if "fake_model" not in request.fixturenames:
        yield
        return
    fake: FakeOpenAI = request.getfixturevalue("fake_model")
    fake.reset()
    yield
    fake.reset()


@pytest.fixture
def gate(fake_model: FakeOpenAI) -> Iterator[threading.Event]:
    """Holds every answer of the fake service until the test sets it (a model slower than any client's timeout)."""
    fake_model.gate = threading.Event()
    yield fake_model.gate
    fake_model.gate.set()
    fake_model.gate = None


@pytest.fixture(scope="module")
def mcp() -> Iterator[RecordingMCP]:
    """A local MCP server recording every tool call, one per test module."""
    with mcp_server() as server:
        yield server


@pytest.fixture
def container(runtime: Runtime) -> ContainerProxy:
    return runtime.store.container


@pytest.fixture
def store(runtime: Runtime) -> CosmosSessions:
    """A store acting for a user of its own, so tests never see each other's sessions."""
    return runtime.store.for_user(f"user-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def session_id() -> str:
    return f"s-{uuid.uuid4().hex[:12]}"
