"""The session store disappearing or refusing the app, over real sockets: a 503 problem that says why,
never a 500, and the app recovers without a restart where it can."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from azure.cosmos import CosmosClient

from .apphost import app_host
from .conftest import ARTIFACTS

pytestmark = pytest.mark.integration

HEADERS = {"X-User-Id": "outage-user"}


@pytest.fixture
def own_database(cosmos_env) -> Iterator[dict[str, str]]:
    """Settings naming a database of this test's own, which it may delete."""
    env = {**cosmos_env, "COSMOS_DATABASE": f"outage-{uuid.uuid4().hex[:8]}"}
    yield env
    with CosmosClient(env["COSMOS_ENDPOINT"], env["COSMOS_KEY"], connection_verify=False) as client:
        client.delete_database(env["COSMOS_DATABASE"]) if database_exists(client, env) else None


def database_exists(client: CosmosClient, env: dict[str, str]) -> bool:
    return any(db["id"] == env["COSMOS_DATABASE"] for db in client.list_databases())


def delete(env: dict[str, str], what: str) -> None:
    with CosmosClient(env["COSMOS_ENDPOINT"], env["COSMOS_KEY"], connection_verify=False) as client:
        database = client.get_database_client(env["COSMOS_DATABASE"])
        if what == "container":
            database.delete_container(env["COSMOS_CONTAINER"])
        else:
            client.delete_database(env["COSMOS_DATABASE"])


def assert_store_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert "does not exist" in response.json()["detail"]
    assert response.headers["Retry-After"].isdigit()


@pytest.mark.parametrize("what", ["container", "database"])
def test_a_store_deleted_after_start_up_is_503_then_recreated(own_database, what):
    with app_host(own_database, log_path=ARTIFACTS / "apphost.log") as base:
        first = httpx.post(f"{base}/sessions/before/messages", json={"message": "hello"}, headers=HEADERS)
        delete(own_database, what)

        health = httpx.get(f"{base}/health", headers=HEADERS)
        listing = httpx.get(f"{base}/sessions", headers=HEADERS)
        turn = httpx.post(f"{base}/sessions/after/messages", json={"message": "again"}, headers=HEADERS)

    assert first.status_code == 200
    assert_store_unavailable(health)
    assert listing.status_code == 200 and listing.json()["sessions"] == []
    assert turn.status_code == 200 and turn.json()["turn"] == 1


def test_a_listing_on_a_deleted_container_is_503_not_500(own_database):
    with app_host(own_database, log_path=ARTIFACTS / "apphost.log") as base:
        httpx.post(f"{base}/sessions/before/messages", json={"message": "hello"}, headers=HEADERS)
        delete(own_database, "container")

        listing = httpx.get(f"{base}/sessions", headers=HEADERS)
        again = httpx.get(f"{base}/sessions", headers=HEADERS)

    assert_store_unavailable(listing)
    assert again.status_code == 200


def test_a_turn_on_a_deleted_container_is_503_and_the_next_turn_lands(own_database):
    with app_host(own_database, log_path=ARTIFACTS / "apphost.log") as base:
        httpx.post(f"{base}/sessions/before/messages", json={"message": "hello"}, headers=HEADERS)
        delete(own_database, "container")

        refused = httpx.post(f"{base}/sessions/s/messages", json={"message": "one"}, headers=HEADERS)
        landed = httpx.post(f"{base}/sessions/s/messages", json={"message": "one"}, headers=HEADERS)

    assert_store_unavailable(refused)
    assert landed.status_code == 200 and landed.json()["turn"] == 1


@pytest.fixture
def no_credential(cosmos_env, monkeypatch) -> dict[str, str]:
    """An Azure-looking account (on a loopback address nothing listens on) with no key, and a credential
    chain narrowed to environment variables that are not set: nothing can authenticate, and nothing leaves
    this machine."""
    from devtools.local_cosmos import free_port

    for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_USERNAME", "AZURE_PASSWORD"):
        monkeypatch.delenv(name, raising=False)  # the host process inherits this environment
    return {
        **cosmos_env,
        "COSMOS_ENDPOINT": f"https://127.0.0.2:{free_port()}/",
        "COSMOS_KEY": "",
        "AZURE_TOKEN_CREDENTIALS": "EnvironmentCredential",
    }


def test_without_a_credential_every_request_is_a_503_naming_the_fix_and_the_cause_is_logged_once(no_credential):
    log = ARTIFACTS / f"no-credential-{uuid.uuid4().hex[:6]}.log"
    with app_host(no_credential, log_path=log, ready=lambda status: status == 503) as base:
        answers = [
            httpx.get(f"{base}/health", headers=HEADERS),
            httpx.get(f"{base}/sessions", headers=HEADERS),
            httpx.post(f"{base}/sessions/s/messages", json={"message": "hi"}, headers=HEADERS),
            httpx.get(f"{base}/sessions", headers=HEADERS),
        ]
    logged = log.read_text()

    for answer in answers:
        assert answer.status_code == 503 and answer.headers["content-type"] == "application/problem+json"
        assert "COSMOS_KEY" in answer.json()["detail"] and "managed identity" in answer.json()["detail"]
        assert "Retry-After" not in answer.headers, "retrying cannot help until the configuration changes"
    assert logged.count("devtools.devhost: COSMOS_ENDPOINT is") == 1, "make run says it at start-up"
    assert logged.count("cosmos_history.adapters.cosmos.client: The app has no credential") == 1, logged
    assert "DefaultAzureCredential failed" not in logged
