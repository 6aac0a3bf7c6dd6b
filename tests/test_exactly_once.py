"""Exactly once across a crash, proven with ``kill -9`` of a real app process between a tool's effect and the
session's save, over and over: a keyed tool's effect lands exactly once, any other tool's at most once (its
outcome then shows as unknown), and the session takes the next message.

Every round starts one call of each kind on its own session, in both history modes (the fake OpenAI service
behind the Responses client) and through the OpenAI-compatible endpoint, lets every tool record its effect
(in files: outside the app process), and kills the process while each waits after its effect (each tells
the test on a FIFO: no sleeps). Then a new process takes the retries. One Cosmos DB serves every round.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from azure.cosmos import CosmosClient

from cosmos_history.adapters.cosmos.items import LEASE_TYPE
from devtools.chat import ChatClient, print_history
from devtools.devhost import RunningHost, running_host

from .conftest import ARTIFACTS
from .crash_agents.ledger import lines

pytestmark = pytest.mark.integration

KILLS = int(os.environ.get("CRASH_KILLS", "10"))
USER = {"x-user-id": "crash-tester"}
REACH_TIMEOUT = 120.0
"""A bound on waiting for the tools to reach their crash point (seconds); reaching it is the signal, not this."""

Answer = tuple[int, dict[str, Any], dict[str, str]]


@dataclass
class Call:
    """One call in flight when the process dies: its session, its tool and ``ref``, and the request to retry."""

    kind: str
    """``<mode> <tool>`` for the native API, ``v1 <tool>`` for the OpenAI-compatible endpoint."""
    tool: str
    ref: str
    send: Callable[[str], Answer]
    """The request that runs the tool (the approval's answer, or the message), sent to a base URL."""
    follow_up: Callable[[str, dict[str, Any]], Answer]
    """The next message of the session, given the retried request's answer."""
    session: str | None = None


def native(base: str, method: str, path: str, body: dict[str, Any] | None = None, **headers: str) -> Answer:
    response = httpx.request(method, f"{base}{path}", json=body, headers={**USER, **headers}, timeout=60)
    return response.status_code, response.json(), dict(response.headers)


def v1(base: str, body: dict[str, Any]) -> Answer:
    """A Responses request through the official SDK (no retries of its own: the test decides)."""
    api = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", default_headers=USER, max_retries=0)
    try:
        raw = api.responses.with_raw_response.create(**body)
    except openai.APIStatusError as error:
        return error.status_code, error.response.json(), dict(error.response.headers)
    return raw.http_response.status_code, raw.http_response.json(), dict(raw.http_response.headers)


def command(tool: str, ref: str) -> str:
    arguments = {"pay": {"amount": 5}, "ring": {"times": 1}, "notify": {"text": "hello"}}[tool]
    return f"/{tool} {json.dumps({**arguments, 'ref': ref})}"


def native_call(base: str, mode: str, tool: str, round_: int) -> Call:
    """A native session in ``mode`` about to run ``tool``: an approval tool's request is asked for here."""
    ref = f"{mode}-{tool}-{round_}-{uuid.uuid4().hex[:6]}"
    session = f"once-{ref}"
    key = {"idempotency-key": f"k-{ref}"}

    def follow_up(url: str, _: dict[str, Any]) -> Answer:
        return native(url, "POST", f"/sessions/{session}/messages", {"message": "thanks"})

    if tool == "notify":
        body = {"message": command(tool, ref), "mode": mode, "agent": "ledger"}
        return Call(
            f"{mode} {tool}",
            tool,
            ref,
            lambda url: native(url, "POST", f"/sessions/{session}/messages", body, **key),
            follow_up,
            session,
        )
    status, asked, _ = native(
        base, "POST", f"/sessions/{session}/messages", {"message": command(tool, ref), "mode": mode, "agent": "ledger"}
    )
    assert status == 200 and asked["status"] == "awaiting_approval", asked
    answers = {"approvals": [{"id": asked["approvals"][0]["id"], "approved": True}]}
    return Call(
        f"{mode} {tool}",
        tool,
        ref,
        lambda url: native(url, "POST", f"/sessions/{session}/approvals", answers, **key),
        follow_up,
        session,
    )


def v1_call(base: str, tool: str, round_: int) -> Call:
    """A conversation of the OpenAI-compatible endpoint waiting for approval of ``tool``."""
    ref = f"v1-{tool}-{round_}-{uuid.uuid4().hex[:6]}"
    status, asked, _ = v1(base, {"model": "ledger", "input": command(tool, ref)})
    assert status == 200, asked
    request = next(item for item in asked["output"] if item["type"] == "mcp_approval_request")
    answer = {"type": "mcp_approval_response", "approval_request_id": request["id"], "approve": True}
    body = {"model": "ledger", "input": [answer], "previous_response_id": asked["id"]}

    def follow_up(url: str, done: dict[str, Any]) -> Answer:
        return v1(url, {"model": "ledger", "input": "thanks", "previous_response_id": done["id"]})

    return Call(f"v1 {tool}", tool, ref, lambda url: v1(url, body), follow_up)


class Crashes:
    """The ledger directory, and app processes that are killed and started again on one Cosmos DB."""

    def __init__(self, env: dict[str, str], directory: Path) -> None:
        self.directory = directory
        self.env = {
            **env,
            "LEDGER_DIR": str(directory),
            "AGENTS_PACKAGE": "tests.crash_agents",
            "DEFAULT_AGENT": "ledger",
            "TURN_LEASE_SECONDS": "3",
        }

    def app(self) -> Iterator[RunningHost]:
        return running_host(self.env, log_path=ARTIFACTS / "apphost-exactly-once.log")

    def expire_leases(self) -> None:
        """Expire every turn lease the killed process held, as if ``TURN_LEASE_SECONDS`` had passed since the kill,
        so a retry is not left to wait them out in real time (that a crashed turn's lease expires and frees its
        session is tests/test_reliability.py's to prove)."""
        env = self.env
        with CosmosClient(env["COSMOS_ENDPOINT"], env["COSMOS_KEY"], connection_verify=False) as client:
            container = client.get_database_client(env["COSMOS_DATABASE"]).get_container_client(env["COSMOS_CONTAINER"])
            held = container.query_items(
                "SELECT c.id, c.sessionId FROM c WHERE c.type = @type AND c.userId = @user AND c.expiresAt > 0",
                parameters=[{"name": "@type", "value": LEASE_TYPE}, {"name": "@user", "value": USER["x-user-id"]}],
                enable_cross_partition_query=True,
            )
            for lease in list(held):
                container.patch_item(
                    lease["id"],
                    partition_key=[USER["x-user-id"], lease["sessionId"]],
                    patch_operations=[{"op": "set", "path": "/expiresAt", "value": 1}],
                )

    def kill_between_effect_and_save(self, host: RunningHost, calls: list[Call]) -> None:
        """Send every call; once each tool recorded its effect and waits, ``kill -9`` the process."""
        for call in calls:
            os.mkfifo(self.directory / f"reached-{call.ref}")
            (self.directory / f"armed-{call.ref}").touch()
        with ThreadPoolExecutor(2 * len(calls)) as pool:
            sent = {pool.submit(call.send, host.base): call for call in calls}
            reached = {pool.submit(self._wait_reached, call.ref): call for call in calls}
            try:
                self._wait_all_reached(sent, reached)
            finally:
                host.process.kill()  # SIGKILL: no cleanup, no save
                host.process.wait()
                for call in calls:  # a reader still waiting (a failed round) is let go
                    self._release(call.ref)
            for future in sent:
                with pytest.raises((httpx.TransportError, openai.APIConnectionError)):
                    future.result()

    def _wait_reached(self, ref: str) -> str:
        with open(self.directory / f"reached-{ref}", encoding="utf-8") as fifo:
            return fifo.read()

    def _wait_all_reached(self, sent: dict[Future[Answer], Call], reached: dict[Future[str], Call]) -> None:
        pending: set[Future[Any]] = set(reached)
        deadline = time.monotonic() + REACH_TIMEOUT
        while pending:
            done, _ = wait(
                pending | set(sent), timeout=max(0.0, deadline - time.monotonic()), return_when=FIRST_COMPLETED
            )
            finished = [f for f in done if f in sent]
            assert not finished, f"{sent[finished[0]].kind} answered before its tool reached the crash point: " + (
                str(finished[0].result()) if finished[0].exception() is None else repr(finished[0].exception())
            )
            assert done, f"no tool reached its crash point in {REACH_TIMEOUT:.0f} s"
            for future in done:
                assert future.result() == "effect recorded\n"
            pending -= done

    def _release(self, ref: str) -> None:
        with contextlib.suppress(OSError):  # no reader left
            os.close(os.open(self.directory / f"reached-{ref}", os.O_WRONLY | os.O_NONBLOCK))

    def effects(self, call: Call) -> list[dict[str, Any]]:
        name = {"pay": "payments.jsonl", "ring": "rings.jsonl", "notify": "notifications.jsonl"}[call.tool]
        return [entry for entry in lines(name, self.directory) if entry["ref"] == call.ref]

    def attempts(self, call: Call) -> list[dict[str, Any]]:
        return [entry for entry in lines("attempts.jsonl", self.directory) if entry["ref"] == call.ref]


def retried(call: Call, base: str) -> Answer:
    """The call sent again to the new process (the dead process's turn leases were expired first)."""
    return call.send(base)


def tool_status(call: Call, body: dict[str, Any]) -> tuple[str, Any]:
    """The retried call's tool status and result, as the API shows them."""
    if call.kind.startswith("v1"):
        item = next(i for i in body["output"] if i["type"] == "mcp_call" and i["name"] == call.tool)
        return ("unknown", item["error"]) if item["status"] == "incomplete" else ("completed", item["output"])
    shown = [c for c in body["toolCalls"] if c["name"] == call.tool]
    assert len(shown) == 1, body
    return shown[0]["status"], shown[0]["result"]


def terminal_history(base: str, session: str) -> str:
    """The session as the terminal client prints it."""
    client, out = ChatClient(base, user=USER["x-user-id"]), io.StringIO()
    try:
        print_history(client.session(session), out)
    finally:
        client.close()
    return out.getvalue()


def check(crashes: Crashes, call: Call, base: str) -> str:
    """Retry ``call`` on the new process and check its tool's effects and status; returns the status."""
    status, done, headers = retried(call, base)
    assert status == 200, (call.kind, done, headers)
    outcome, result = tool_status(call, done)
    if call.tool == "pay":
        attempts = crashes.attempts(call)
        assert len(attempts) == 2 and attempts[0]["key"] == attempts[1]["key"], (call.kind, attempts)
        assert len(crashes.effects(call)) == 1, (call.kind, "exactly one payment")
        assert (outcome, result) == ("completed", "Paid 5."), call.kind
    else:
        assert len(crashes.effects(call)) == 1, (call.kind, "at most one effect (and it had one)")
        assert outcome == "unknown" and "Outcome unknown" in str(result), (call.kind, done)
    status, after, _ = call.follow_up(base, done)
    assert status == 200 and after["status"] == "completed", (call.kind, after)
    if call.session is not None and call.kind.startswith("local"):
        history = native(base, "GET", f"/sessions/{call.session}/messages")[1]["messages"]
        assert [e["status"] for e in history if e.get("type") == "tool_result"] == [outcome], (call.kind, history)
        assert ("outcome unknown" in terminal_history(base, call.session)) == (outcome == "unknown")
    return outcome


def test_a_kill_between_a_tools_effect_and_the_save_never_runs_it_twice(cosmos_env, fake_model, tmp_path):
    model = {
        **fake_model.app_settings(),
        "MODEL_API": "responses",
    }
    crashes = Crashes({**cosmos_env, **model}, tmp_path)
    seen: dict[str, list[str]] = {}
    app = crashes.app()
    host = app.__enter__()
    try:
        with ThreadPoolExecutor(8) as pool:  # the sessions of a round are independent: set up and checked at once
            for round_ in range(KILLS):
                made = [
                    pool.submit(native_call, host.base, mode, tool, round_)
                    for mode in ("local", "service")
                    for tool in ("pay", "ring", "notify")
                ]
                made += [pool.submit(v1_call, host.base, tool, round_) for tool in ("pay", "ring")]
                calls = [future.result() for future in made]

                crashes.kill_between_effect_and_save(host, calls)
                crashes.expire_leases()
                app.__exit__(None, None, None)
                app = crashes.app()
                host = app.__enter__()

                checked = [pool.submit(check, crashes, call, host.base) for call in calls]
                for call, outcome in zip(calls, checked, strict=True):
                    seen.setdefault(call.kind, []).append(outcome.result())
    finally:
        app.__exit__(None, None, None)

    kinds = [f"{mode} {tool}" for mode in ("local", "service") for tool in ("pay", "ring", "notify")]
    assert {kind: len(outcomes) for kind, outcomes in seen.items()} == dict.fromkeys(
        [*kinds, "v1 pay", "v1 ring"], KILLS
    )
