"""A claim asks for the session document only if it changed since the version this instance's last commit kept:
an unchanged document comes back as 304 with no body and the record is rebuilt from the kept document, exactly
as a fresh load gives it; a changed one is read and served from its answer; a kept version gone meanwhile is read
on its own; a service that refuses the condition gets unconditional claims from then on (the real SDK, the local
Cosmos DB, faults injected in the SDK's transport)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from agent_framework import Message

from cosmos_history import Settings, build_agents, load_settings, run_turn
from cosmos_history.adapters.cosmos.client import create_client, ensure_container
from cosmos_history.adapters.cosmos.lease import CosmosTurnLease
from cosmos_history.adapters.cosmos.sessions import CosmosSessions
from cosmos_history.domain.compaction import summary_of
from cosmos_history.domain.errors import ModelCallError
from cosmos_history.domain.kept_windows import KeptWindows
from cosmos_history.domain.records import SessionRecord, TurnItems
from cosmos_history.domain.stored_forms import Window
from cosmos_history.domain.turn import TurnGuards
from cosmos_history.runtime import history_policy, session_services

from .fakes import RecordingChatClient
from .faults import DelegatingTransport, Fault, FaultInjectingTransport, _InjectedResponse, batch_operations
from .test_kept_windows import same_history

pytestmark = pytest.mark.integration


@dataclass
class Exchange:
    """One transactional batch: the operations sent, and each operation's answer (``None``: injected fault)."""

    operations: list[dict[str, Any]]
    answers: list[dict[str, Any]] | None

    @property
    def is_claim(self) -> bool:
        return [op["operationType"] for op in self.operations] == ["Read", "Patch"]

    @property
    def condition(self) -> str | None:
        return self.operations[0].get("ifNoneMatch")


@dataclass
class BatchRecorder(DelegatingTransport):
    """The app's transport (with its fault injection) recording every batch and its answer, and every request."""

    inner: FaultInjectingTransport = field(default_factory=FaultInjectingTransport)
    batches: list[Exchange] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)
    hold: asyncio.Event | None = None
    """When set up, the next conditional claim waits for it before it is sent (and ``held`` is set)."""
    held: asyncio.Event = field(default_factory=asyncio.Event)
    refuse_read: int | None = None
    """When set, the next conditional claim is answered 207 Multi-Status, its read failed with this status."""

    async def send(self, request: Any, **kwargs: Any) -> Any:
        operations = batch_operations(request)
        if self.refuse_read is not None and conditional_read(request):
            answers = [{"statusCode": self.refuse_read, "requestCharge": 0}, {"statusCode": 424, "requestCharge": 0}]
            self.refuse_read = None
            self.requests.append((request.method, request.url))
            self.batches.append(Exchange(operations, None))
            return _InjectedResponse(request, 207, {}, json.dumps(answers).encode())
        if self.hold is not None and operations and operations[0].get("ifNoneMatch"):
            hold, self.hold = self.hold, None
            self.held.set()
            await hold.wait()
        self.requests.append((request.method, request.url))
        injected = len(self.inner.sent)
        response = await self.inner.send(request, **kwargs)
        if operations:
            reached = len(self.inner.sent) > injected
            if reached:
                await response.load_body()
            self.batches.append(Exchange(operations, json.loads(response.body()) if reached else None))
        return response

    def claims(self) -> list[Exchange]:
        return [exchange for exchange in self.batches if exchange.is_claim]


@dataclass
class Host:
    store: CosmosSessions
    guards: TurnGuards
    wire: BatchRecorder
    settings: Settings
    model: RecordingChatClient = field(default_factory=RecordingChatClient)

    @property
    def lease(self) -> CosmosTurnLease:
        assert isinstance(self.guards.lease, CosmosTurnLease)
        return self.guards.lease

    async def turn(self, session_id: str, message: str, **kwargs: Any) -> Any:
        """A turn of a local-mode session (the mode a new session gets here)."""
        kwargs.setdefault("mode", "local")
        agents = build_agents(self.settings, self.model)
        policy = history_policy(self.settings)
        return await run_turn(
            self.store, agents, session_id=session_id, message=message, guards=self.guards, policy=policy, **kwargs
        )

    async def claim(self, session_id: str) -> SessionRecord:
        """The session as the next turn's claim reads it (the lease released again at once)."""
        claim = await self.lease.claim(session_id, self.store.user_id)
        await self.lease.release(session_id, self.store.user_id, claim.etag)
        assert claim.record is not None
        return claim.record


@pytest.fixture
async def host(cosmos_env) -> AsyncIterator[Host]:
    """The runtime's own store and lease (sharing their kept windows) over a client whose transport records."""
    settings = load_settings({**cosmos_env, "TURN_TIMEOUT_SECONDS": "600"})
    wire = BatchRecorder()
    client = create_client(settings.cosmos, transport=wire)
    try:
        store, guards = session_services(await ensure_container(client, settings.cosmos), settings)
        yield Host(store.for_user(f"u-{uuid.uuid4().hex[:6]}"), guards, wire, settings)
    finally:
        await client.close()


async def test_a_steady_turn_makes_two_requests_and_its_claim_receives_no_document(host, session_id):
    for n in range(3):
        await host.turn(session_id, f"warm-up {n} " + "word " * 60)
    turns, mark, batches = 6, len(host.wire.requests), len(host.wire.batches)

    for n in range(turns):
        await host.turn(session_id, f"steady {n} " + "word " * 60)

    assert (len(host.wire.requests) - mark) / turns == 2.00
    claims = [exchange for exchange in host.wire.batches[batches:] if exchange.is_claim]
    assert len(claims) == turns
    for claim in claims:
        assert claim.condition is not None
        assert claim.answers is not None
        read, take = claim.answers
        assert (read["statusCode"], take["statusCode"]) == (304, 200)
        assert "resourceBody" not in read, "the unchanged document is not sent again"


async def test_the_record_from_an_unchanged_claim_is_what_a_fresh_load_gives(host, session_id, cosmos_env):
    small = dataclasses.replace(host, settings=load_settings({**cosmos_env, "MAX_INPUT_TOKENS": "2000"}))
    for n in range(12):  # the small budget archives and summarises on the way
        await small.turn(session_id, f"turn {n} " + "word " * 80)

    taken = await host.claim(session_id)
    restored = await host.store.load(session_id)

    assert host.wire.claims()[-1].answers[0]["statusCode"] == 304  # type: ignore[index]
    assert restored is not None and restored.archive.starts and summary_of(restored)
    same_history(taken, restored)
    assert json.dumps(taken.session.to_dict()) == json.dumps(restored.session.to_dict())
    for name in ("etag", "title", "turns", "archive", "recent_keys", "created_at", "updated_at", "mode", "agent"):
        assert getattr(taken, name) == getattr(restored, name), name
    assert taken.tool_journal == restored.tool_journal and taken.key == restored.key
    assert taken.loaded_bytes is not None and restored.loaded_bytes is not None
    assert 0.9 * restored.loaded_bytes <= taken.loaded_bytes <= restored.loaded_bytes


async def test_what_the_committing_turn_changes_after_its_commit_is_never_served(host, session_id, cosmos_env):
    small = dataclasses.replace(host, settings=load_settings({**cosmos_env, "MAX_INPUT_TOKENS": "2000"}))
    for n in range(8):
        await small.turn(session_id, f"turn {n} " + "word " * 80)
    claim = await host.lease.claim(session_id, host.store.user_id)
    assert claim.record is not None and claim.record.archive.starts
    claim.record.session.state["in_memory"]["messages"].append(Message(role="user", contents=["committed"]))
    saved = await host.store.save(claim.record, etag=claim.record.etag, items=TurnItems(lease_etag=claim.etag))
    # Code still holding the committed record changes it in place: nothing of it is in the kept document.
    saved.archive.starts.append(10_000)
    saved.archive.tokens.append(1)
    saved.session.state["in_memory"]["messages"].append(Message(role="user", contents=["after the commit"]))
    saved.session.state["in_memory"]["messages"][0].contents[0].text = "changed after the commit"
    saved.recent_keys.clear()

    taken = await host.claim(session_id)

    assert host.wire.claims()[-1].answers[0]["statusCode"] == 304  # type: ignore[index]
    restored = await host.store.load(session_id)
    assert restored is not None
    same_history(taken, restored)
    assert taken.archive == restored.archive and 10_000 not in taken.archive.starts
    assert taken.session.state["in_memory"]["messages"][-1].text == "committed"


async def test_a_version_another_instance_wrote_is_read_and_served_from_the_answer(host, session_id):
    for n in range(3):
        await host.turn(session_id, f"turn {n}")
    elsewhere = CosmosSessions(host.store.container, user_id=host.store.user_id)  # another instance: keeps nothing
    record = await elsewhere.load(session_id)
    assert record is not None
    record.title = "renamed elsewhere"
    record.session.state["in_memory"]["messages"][0].contents[0].text = "rewritten elsewhere"
    await elsewhere.save(record, etag=record.etag)

    taken = await host.claim(session_id)

    read = host.wire.claims()[-1]
    assert read.condition is not None and read.answers is not None and read.answers[0]["statusCode"] == 200
    assert taken.title == "renamed elsewhere"
    assert taken.session.state["in_memory"]["messages"][0].text == "rewritten elsewhere"
    same_history(taken, await host.store.load(session_id))


async def test_an_unchanged_version_whose_kept_document_another_claim_took_meanwhile_is_read(host, session_id):
    for n in range(3):
        await host.turn(session_id, f"turn {n}")
    gate = host.wire.hold = asyncio.Event()
    first = asyncio.create_task(host.lease.claim(session_id, host.store.user_id))
    held = asyncio.create_task(host.wire.held.wait())  # its claim asks for the kept version only if changed
    await asyncio.wait([held, first], return_when=asyncio.FIRST_COMPLETED)
    assert held.done() and not first.done(), "the claim carried the condition and is held before it is sent"
    host.model.fail_with = RuntimeError("the model call failed")
    with pytest.raises(ModelCallError):  # took the kept version (304), failed, released the lease: nothing kept
        await host.turn(session_id, "fails")
    host.model.fail_with = None
    assert host.wire.claims()[-1].answers[0]["statusCode"] == 304  # type: ignore[index]
    mark = len(host.wire.requests)

    gate.set()
    claim = await first

    assert host.wire.claims()[-1].answers[0]["statusCode"] == 304  # type: ignore[index]
    assert [method for method, _ in host.wire.requests[mark:]] == ["POST", "GET"], "the claim, then a plain read"
    await host.lease.release(session_id, host.store.user_id, claim.etag)
    assert claim.record is not None
    same_history(claim.record, await host.store.load(session_id))


@pytest.mark.parametrize("status", [400, 500, "read 400"])
async def test_a_service_refusing_the_conditional_claim_gets_unconditional_claims_from_then_on(
    host, session_id, status
):
    for n in range(3):
        await host.turn(session_id, f"turn {n}")
    if isinstance(status, int):  # the whole batch refused
        host.wire.inner.faults.append(Fault(conditional_read, status))
    else:  # the batch answered, its conditional read failed (so the lease's patch did not run: 424)
        host.wire.refuse_read = 400
    mark = len(host.wire.requests)

    result = await host.turn(session_id, "refused, then claimed whole")

    assert result.turn == 4
    assert host.lease.conditional is False
    assert len(host.wire.requests) - mark == 3, "the refused claim, the claim again without it, the commit"
    more = len(host.wire.batches)
    for n in range(2):
        await host.turn(session_id, f"after {n}")
    later = [exchange for exchange in host.wire.batches[more:] if exchange.is_claim]
    assert len(later) == 2 and all(exchange.condition is None for exchange in later)
    same_history(await host.claim(session_id), await host.store.load(session_id))


async def test_throttling_of_a_conditional_claim_leaves_the_condition_on(host, session_id):
    for n in range(3):
        await host.turn(session_id, f"turn {n}")
    host.wire.inner.faults.append(Fault(lambda request: bool(batch_operations(request)), 429, times=1))

    await host.turn(session_id, "throttled once")

    assert host.lease.conditional is True
    assert host.wire.claims()[-1].answers[0]["statusCode"] == 304  # type: ignore[index]


async def test_another_user_with_the_same_session_id_is_never_offered_the_kept_document(host, session_id):
    for n in range(3):
        await host.turn(session_id, f"turn {n}")
    stranger = Host(host.store.for_user(f"u-{uuid.uuid4().hex[:6]}"), host.guards, host.wire, host.settings)

    result = await stranger.turn(session_id, "mine")

    assert result.turn == 1
    assert all(exchange.condition is None for exchange in host.wire.claims()[-1:])
    assert host.store.windows is not None and host.store.windows.document_etag((host.store.user_id, session_id))


def test_a_kept_document_counts_in_the_memory_bound_and_is_given_up_first():
    windows = KeptWindows(max_bytes=1000)
    window = Window((), 100)
    windows.keep(("u", "s"), "v1", window, document={"id": "s"}, document_bytes=200)
    assert windows.memory_bytes == 100 + 3 * 200 and windows.document_etag(("u", "s")) == "v1"

    windows.keep(("u", "s"), "v2", window, document={"id": "s"}, document_bytes=400)  # 1,300 with the document
    assert windows.memory_bytes == 100 and windows.document_etag(("u", "s")) is None
    assert windows.take_version(("u", "s"), "v2") is None, "the window alone is kept"


def test_a_kept_version_is_taken_once_and_only_for_its_own_etag():
    windows = KeptWindows(max_bytes=1000)
    window, document = Window((), 10), {"id": "s"}
    windows.keep(("u", "s"), "v1", window, document=document, document_bytes=10)

    assert windows.document_etag(("u", "s")) == "v1", "learning the etag removes nothing"
    assert windows.document_etag(("other", "s")) is None
    assert windows.take_version(("u", "s"), "v0") is None
    windows.keep(("u", "s"), "v1", window, document=document, document_bytes=10)
    version = windows.take_version(("u", "s"), "v1")
    assert version is not None and version.document is document and version.window is window
    assert windows.take_version(("u", "s"), "v1") is None and (len(windows), windows.memory_bytes) == (0, 0)


def conditional_read(request: Any) -> bool:
    operations = batch_operations(request)
    return bool(operations) and "ifNoneMatch" in operations[0]
