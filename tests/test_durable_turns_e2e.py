"""Durable turns end to end: two app processes (local hosts) on the same local Cosmos DB, a streamed turn
on one, its events resumed, read and cancelled through the other, over real sockets; the fake OpenAI
service streams slowly (or stops mid-reply until the test lets it go on)."""

from __future__ import annotations

import io
import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from azure.cosmos import CosmosClient

from devtools.chat import ChatClient, print_reply

from .apphost import two_app_hosts
from .conftest import ARTIFACTS
from .dropping_proxy import dropping_proxy

pytestmark = pytest.mark.integration

Event = tuple[str, str, Any]  # (id, name, data)
USER = {"x-user-id": "ada"}


@pytest.fixture(scope="module")
def hosts(cosmos_env, fake_model) -> Iterator[tuple[str, str]]:
    """Two app processes against the same Cosmos DB: "here" runs the turns, "there" serves everything else."""
    with two_app_hosts({**cosmos_env, **fake_model.app_settings()}, logs=ARTIFACTS / "apphost-durable") as both:
        yield both


def new_id() -> str:
    return f"dt-{uuid.uuid4().hex[:10]}"


def sse(lines: Iterator[str]) -> Iterator[Event]:
    """Server-Sent Events with their ids."""
    event_id, name, data = "", "message", []
    for line in lines:
        if not line:
            if data:
                yield event_id, name, json.loads("\n".join(data))
            event_id, name, data = "", "message", []
        elif line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


def deltas(events: list[Event]) -> str:
    return "".join(data["text"] for _, name, data in events if name == "delta")


def stored_reply(base: str, session: str) -> str:
    messages = httpx.get(f"{base}/sessions/{session}", headers=USER).json()["messages"]
    return [m["text"] for m in messages if m["role"] == "assistant"][-1]


def test_a_dropped_stream_resumes_on_another_process_with_exactly_the_missing_events(hosts, fake_model):
    here, there = hosts
    session = new_id()
    fake_model.chunk_delay = 0.2
    message = "tell me a story of eight or nine words please"

    url = f"{here}/sessions/{session}/messages"
    with httpx.stream("POST", url, json={"message": message, "stream": True}, headers=USER, timeout=30) as response:
        location = response.headers["content-location"]
        events = sse(response.iter_lines())
        before = [next(events), next(events), next(events)]
    # The connection is closed mid-reply: the turn goes on in the first process.

    last_id = before[-1][0]
    with httpx.stream(
        "GET", f"{there}{location.removeprefix('/api')}/events", headers={**USER, "last-event-id": last_id}, timeout=60
    ) as resumed:
        assert resumed.status_code == 200 and resumed.headers["content-type"].startswith("text/event-stream")
        after = list(sse(resumed.iter_lines()))

    assert location == f"/api/sessions/{session}/turns/1" and last_id == "1:3"
    assert [event_id for event_id, _, _ in after] == [f"1:{n}" for n in range(4, 4 + len(after))]
    assert after[-1][1] == "done" and all(name == "delta" for _, name, _ in before + after[:-1])
    reply = deltas(before + after)
    assert reply == after[-1][2]["reply"] == stored_reply(there, session)
    assert message in reply


def test_a_finished_turn_replays_whole_and_reads_as_completed_on_another_process(hosts):
    here, there = hosts
    session = new_id()
    with httpx.stream(
        "POST", f"{here}/sessions/{session}/messages", json={"message": "hi", "stream": True}, headers=USER
    ) as response:
        live = list(sse(response.iter_lines()))

    replay = httpx.get(f"{there}/sessions/{session}/turns/1/events", headers=USER, timeout=30)
    turn = httpx.get(f"{there}/sessions/{session}/turns/1", headers=USER)

    assert list(sse(iter(replay.text.split("\n")))) == live
    assert turn.status_code == 200
    assert turn.json() == {**live[-1][2], "reason": None, "recorded": True}


def test_a_turn_is_the_owners_only(hosts):
    here, there = hosts
    session = new_id()
    httpx.post(f"{here}/sessions/{session}/messages", json={"message": "hi", "stream": True}, headers=USER).read()

    for path in ("", "/events"):
        other = httpx.get(f"{there}/sessions/{session}/turns/1{path}", headers={"x-user-id": "mallory"})
        assert other.status_code == 404 and other.headers["content-type"] == "application/problem+json"
    cancel = httpx.post(f"{there}/sessions/{session}/turns/1/cancel", headers={"x-user-id": "mallory"})
    assert cancel.status_code == 404 and cancel.headers["content-type"] == "application/problem+json"


def test_cancel_on_another_process_stops_a_running_turn_and_the_next_message_works(hosts, fake_model):
    here, there = hosts
    session = new_id()
    fake_model.pause_after, fake_model.released = 1, threading.Event()  # never released: only the cancel ends it

    url = f"{here}/sessions/{session}/messages"
    with httpx.stream("POST", url, json={"message": "a long answer please", "stream": True}, headers=USER) as live:
        events = sse(live.iter_lines())
        first = next(events)
        cancelled = httpx.post(f"{there}/sessions/{session}/turns/1/cancel", headers=USER, timeout=30)
        rest = list(events)
    fake_model.pause_after = None

    assert first[1] == "delta"
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert rest[-1][1] == "error" and rest[-1][2]["type"].endswith(":turn-cancelled")
    turn = httpx.get(f"{there}/sessions/{session}/turns/1", headers=USER).json()
    assert turn["status"] == "cancelled" and turn["reason"]
    again = httpx.post(f"{there}/sessions/{session}/turns/1/cancel", headers=USER)
    assert again.status_code == 409 and again.json()["type"].endswith(":turn-finished")
    nxt = httpx.post(f"{there}/sessions/{session}/messages", json={"message": "and now?"}, headers=USER, timeout=30)
    assert nxt.status_code == 200 and nxt.json()["turn"] == 2
    messages = httpx.get(f"{there}/sessions/{session}", headers=USER).json()["messages"]
    assert [m["text"] for m in messages if m["role"] == "user"] == ["and now?"], "the cancelled message is not kept"


def test_events_past_their_retention_answer_410_while_the_turn_stays_readable(hosts, cosmos_env):
    """The local Cosmos DB stores ``ttl`` but never expires items: the test removes the stored batches, as
    Cosmos DB does when their ``ttl`` passes."""
    here, there = hosts
    session = new_id()
    httpx.post(f"{here}/sessions/{session}/messages", json={"message": "hi", "stream": True}, headers=USER).read()
    removed = remove_event_batches(cosmos_env, "ada", session)

    gone = httpx.get(f"{there}/sessions/{session}/turns/1/events", headers=USER)
    turn = httpx.get(f"{there}/sessions/{session}/turns/1", headers=USER)

    assert removed >= 1
    assert gone.status_code == 410 and gone.headers["content-type"] == "application/problem+json"
    assert gone.json()["type"].endswith(":events-gone")
    assert turn.status_code == 200 and turn.json()["status"] == "completed"


def test_a_plain_turn_writes_no_turn_items(hosts, cosmos_env):
    here, _ = hosts
    session = new_id()

    answer = httpx.post(f"{here}/sessions/{session}/messages", json={"message": "hi"}, headers=USER, timeout=30)
    turn = httpx.get(f"{here}/sessions/{session}/turns/1", headers=USER)
    events = httpx.get(f"{here}/sessions/{session}/turns/1/events", headers=USER)

    assert answer.status_code == 200 and items_of(cosmos_env, "ada", session, ("turn", "events")) == []
    assert turn.json()["status"] == "completed" and turn.json()["recorded"] is False
    assert turn.json()["reply"] == answer.json()["reply"]
    assert events.status_code == 404


def items_of(env: dict[str, str], user: str, session: str, types: tuple[str, ...]) -> list[dict[str, Any]]:
    with CosmosClient(env["COSMOS_ENDPOINT"], env["COSMOS_KEY"], connection_verify=False) as client:
        container = client.get_database_client(env["COSMOS_DATABASE"]).get_container_client(env["COSMOS_CONTAINER"])
        found = container.query_items(
            "SELECT * FROM c WHERE c.userId = @user AND c.sessionId = @session",
            parameters=[{"name": "@user", "value": user}, {"name": "@session", "value": session}],
            partition_key=[user, session],
        )
        return [item for item in found if item["type"] in types]


def remove_event_batches(env: dict[str, str], user: str, session: str) -> int:
    batches = items_of(env, user, session, ("events",))
    with CosmosClient(env["COSMOS_ENDPOINT"], env["COSMOS_KEY"], connection_verify=False) as client:
        container = client.get_database_client(env["COSMOS_DATABASE"]).get_container_client(env["COSMOS_CONTAINER"])
        for item in batches:
            container.delete_item(item["id"], partition_key=[user, session])
    return len(batches)


def test_the_terminal_client_resumes_a_dropped_stream_and_prints_the_whole_reply(hosts, fake_model):
    here, _ = hosts
    fake_model.chunk_delay = 0.1
    session = new_id()
    with dropping_proxy(here, events=2) as proxy:
        client = ChatClient(proxy.url.removesuffix("/api"), user="ada")
        try:
            out = io.StringIO()
            done = print_reply(client.send(session, "one two three four five six"), out)
        finally:
            client.close()

    assert proxy.dropped == 1, "the first stream was cut after two events"
    assert done is not None and done["status"] == "completed"
    assert done["reply"] in out.getvalue() and done["reply"] == stored_reply(here, session)


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/turns/0", {}),
        ("/turns/abc", {}),
        ("/turns/1/events?after=-1", {}),
        ("/turns/1/events", {"last-event-id": "2:5"}),  # an event of another turn
        ("/turns/1/events", {"last-event-id": "not-an-id"}),
    ],
)
def test_a_malformed_turn_or_event_id_is_a_400_problem(hosts, path, headers):
    here, _ = hosts
    session = new_id()
    httpx.post(f"{here}/sessions/{session}/messages", json={"message": "hi", "stream": True}, headers=USER).read()

    answer = httpx.get(f"{here}/sessions/{session}{path}", headers={**USER, **headers})

    assert answer.status_code == 400 and answer.headers["content-type"] == "application/problem+json"


def test_after_resumes_like_last_event_id(hosts):
    here, there = hosts
    session = new_id()
    with httpx.stream(
        "POST", f"{here}/sessions/{session}/messages", json={"message": "hi there", "stream": True}, headers=USER
    ) as response:
        live = list(sse(response.iter_lines()))

    by_query = list(
        sse(iter(httpx.get(f"{there}/sessions/{session}/turns/1/events?after=1", headers=USER).text.split("\n")))
    )
    by_header = httpx.get(f"{there}/sessions/{session}/turns/1/events", headers={**USER, "last-event-id": "1"}).text

    assert by_query == live[1:] and list(sse(iter(by_header.split("\n")))) == live[1:]
