"""Upgrading a deployment of the older layout: the app refuses the old container, and the migration
copies it into the new one (resumable, idempotent, counted), after which every conversation is served."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from azure.cosmos import PartitionKey
from azure.cosmos.aio import ContainerProxy, CosmosClient

from cosmos_history import build_agents, build_runtime, load_settings
from cosmos_history.adapters.cosmos.client import (
    INDEXING_POLICY,
    MIGRATION_COMMAND,
    OLD_PARTITION_KEY_PATHS,
    ContainerLayoutError,
    create_client,
)
from cosmos_history.domain.errors import ErrorKind
from cosmos_history.migrate import Checkpoint, copy_items, count_by_type, migrate

from .apphost import registered_functions
from .conftest import ROOT
from .fakes import RecordingChatClient
from .http_calls import call, post_message, request

pytestmark = pytest.mark.integration

USERS = ("ada", "bob", "cy")


@pytest.fixture(scope="module")
async def client(cosmos_env: dict[str, str]) -> AsyncIterator[CosmosClient]:
    cosmos = create_client(load_settings(cosmos_env).cosmos)
    yield cosmos
    await cosmos.close()


def app_env(cosmos_env: dict[str, str], container: str) -> dict[str, str]:
    """Settings small enough that long sessions archive their oldest turns into chunk items."""
    return {**cosmos_env, "COSMOS_CONTAINER": container, "MAX_SESSION_BYTES": "20000", "MAX_HISTORY_MESSAGES": "10"}


async def snapshot(functions: dict[str, Any], user: str, session_ids: list[str]) -> dict[str, Any]:
    """What the API shows one user: the listing, and each session with its whole history (archive included)."""
    _, listing, _ = await call(functions, "list_sessions_route", request("GET", "/api/sessions", user=user))
    shown: dict[str, Any] = {"list": sorted(s["id"] for s in listing["sessions"])}
    for session_id in session_ids:
        route = {"id": session_id}
        shown[session_id] = (
            (await call(functions, "get_session_route", request("GET", "/", route=route, user=user)))[1],
            (await call(functions, "list_messages_route", request("GET", "/", route=route, user=user)))[1],
        )
    return shown


@pytest.fixture(scope="module")
async def old_deployment(cosmos_env: dict[str, str], client: CosmosClient) -> dict[str, Any]:
    """A container of the older layout (``/sessionId``), holding what the app stores: sessions of several
    users (two each; the old layout had one namespace of session ids), archive chunks, leases, idempotency records
    and a stored Responses object. The item bodies are the app's (their format did not change); only the
    container's partition key is the old one. Returns the old container's name and what the API showed."""
    made = f"made-{uuid.uuid4().hex[:6]}"
    settings = load_settings(app_env(cosmos_env, made))
    runtime = await build_runtime(settings, agents=build_agents(settings, RecordingChatClient()))
    functions = registered_functions(runtime)
    sessions = {user: [f"{user}-a-{made}", f"{user}-b-{made}"] for user in USERS}
    for user, ids in sessions.items():
        for n in range(12 if user == "ada" else 2):
            await post_message(
                functions, ids[0], f"{user} {n} " + "x" * 800, user=user, headers={"idempotency-key": f"k{n}"}
            )
        await post_message(functions, ids[1], f"{user} second", user=user)
    await call(
        functions,
        "create_response_route",
        request(
            "POST",
            "/api/v1/responses",
            body={"model": "assistant", "input": "hi", "conversation": f"conv-{made}"},
            user="bob",
        ),
    )
    sessions["bob"].append(f"conv-{made}")
    shown = {user: await snapshot(functions, user, ids) for user, ids in sessions.items()}
    await runtime.close()

    database = client.get_database_client(cosmos_env["COSMOS_DATABASE"])
    old_name = f"old-{made}"
    old = await database.create_container(
        old_name, partition_key=PartitionKey(path=OLD_PARTITION_KEY_PATHS[0]), indexing_policy=INDEXING_POLICY
    )
    made_container = database.get_container_client(made)
    async for item in made_container.query_items("SELECT * FROM c"):
        await old.create_item({k: v for k, v in item.items() if not k.startswith("_")})
    await database.delete_container(made)
    kinds = await count_by_type(old)
    assert {"session", "archive", "lease", "idempotency", "response"} <= set(kinds)
    return {"container": old_name, "sessions": sessions, "shown": shown, "kinds": kinds}


async def test_the_app_refuses_an_old_layout_container_and_names_the_migration(cosmos_env, old_deployment):
    settings = load_settings(app_env(cosmos_env, old_deployment["container"]))

    with pytest.raises(ContainerLayoutError) as refused:
        await build_runtime(settings, agents=build_agents(settings, RecordingChatClient()))

    assert MIGRATION_COMMAND in refused.value.detail and refused.value.kind is ErrorKind.UNAVAILABLE
    assert refused.value.retry_after is None


async def test_migrated_conversations_are_served_as_before_and_continue(cosmos_env, client, old_deployment):
    target = f"new-{uuid.uuid4().hex[:6]}"
    settings = load_settings(app_env(cosmos_env, target))

    checkpoint, verification = await migrate(settings.cosmos, old_deployment["container"], target, client=client)

    assert verification.complete and verification.source == verification.target == old_deployment["kinds"]
    assert checkpoint.copied == sum(old_deployment["kinds"].values()) and checkpoint.skipped == 0
    runtime = await build_runtime(settings, agents=build_agents(settings, RecordingChatClient()))
    functions = registered_functions(runtime)
    for user, ids in old_deployment["sessions"].items():
        assert await snapshot(functions, user, ids) == old_deployment["shown"][user]
    status, body, _ = await post_message(functions, old_deployment["sessions"]["ada"][0], "and now?", user="ada")
    assert status == 200 and body["turn"] == 13, body
    await runtime.close()


class Interrupted(Exception):
    """Stands for the process dying after a checkpoint was written."""


async def test_an_interrupted_copy_resumes_from_its_checkpoint_and_a_rerun_changes_nothing(
    cosmos_env, client, old_deployment, tmp_path
):
    database = client.get_database_client(cosmos_env["COSMOS_DATABASE"])
    source = database.get_container_client(old_deployment["container"])
    target_name = f"resumed-{uuid.uuid4().hex[:6]}"
    settings = replace(load_settings(cosmos_env).cosmos, container=target_name)
    path = tmp_path / "checkpoint.json"
    saves = 0

    def crash_after_two_pages(checkpoint: Checkpoint) -> None:
        nonlocal saves
        checkpoint.save(path)
        saves += 1
        if saves == 3:  # the feed ranges, then two pages
            raise Interrupted

    await migrate(settings, old_deployment["container"], target_name, client=client, verify_only=True)
    target = database.get_container_client(target_name)
    with pytest.raises(Interrupted):
        await copy_items(
            source,
            target,
            Checkpoint(old_deployment["container"], target_name),
            save=crash_after_two_pages,
            page_size=5,
        )
    halfway = Checkpoint.load(path, old_deployment["container"], target_name)
    assert halfway.copied == 10 and sum((await count_by_type(target)).values()) == 10

    resumed = await copy_items(source, target, halfway, save=lambda c: c.save(path), page_size=5)
    total = sum(old_deployment["kinds"].values())
    assert resumed.copied == total, "a resumed copy continues after the last saved page"
    before = await items_of(target)

    _, again = await migrate(settings, old_deployment["container"], target_name, client=client)

    assert again.complete and again.target == old_deployment["kinds"]
    assert await items_of(target) == before


async def items_of(container: ContainerProxy) -> dict[tuple[str, str, str], dict[str, Any]]:
    found = container.query_items("SELECT * FROM c")
    return {
        (i["userId"], i["sessionId"], i["id"]): {k: v for k, v in i.items() if not k.startswith("_")}
        async for i in found
    }


def test_the_command_copies_and_reports_counts_and_fails_on_an_incomplete_target(cosmos_env, old_deployment, tmp_path):
    target = f"cli-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, **cosmos_env}
    command = [
        sys.executable,
        "-m",
        "cosmos_history.migrate",
        "--source",
        old_deployment["container"],
        "--target",
        target,
    ]

    verify_first = subprocess.run([*command, "--verify-only"], cwd=ROOT, env=env, capture_output=True, text=True)
    copied = subprocess.run(
        [*command, "--checkpoint", str(tmp_path / "cp.json")], cwd=ROOT, env=env, capture_output=True, text=True
    )

    assert verify_first.returncode == 1 and "INCOMPLETE" in verify_first.stdout
    assert copied.returncode == 0, copied.stderr
    assert (
        f"session: source {old_deployment['kinds']['session']}, target {old_deployment['kinds']['session']}"
        in copied.stdout
    )
    assert json.loads(Path(tmp_path / "cp.json").read_text())["copied"] == sum(old_deployment["kinds"].values())
