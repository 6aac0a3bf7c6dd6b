"""A turn takes back the history window the previous commit on this instance wrote (same document version) instead
of restoring it, and gets exactly what restoring it gives; any other version, and anything a turn that did not
commit changed, is restored from the document (through the local Cosmos DB)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from agent_framework import AgentSession, ContextProvider, Message, SessionContext
from azure.cosmos.aio import ContainerProxy

from cosmos_history import build_agents, load_settings, run_turn
from cosmos_history.adapters.cosmos import items
from cosmos_history.adapters.cosmos.lease import CosmosTurnLease
from cosmos_history.adapters.cosmos.sessions import CosmosSessions
from cosmos_history.agents.catalog import Agents
from cosmos_history.domain.errors import ModelCallError, SessionConflictError, TurnInProgressError
from cosmos_history.domain.kept_windows import KeptWindows, SessionKey
from cosmos_history.domain.message_keys import message_key
from cosmos_history.domain.records import SessionRecord
from cosmos_history.domain.stored_forms import Kept, Window, restore, session_dict, written
from cosmos_history.domain.turn import TurnGuards
from cosmos_history.runtime import history_policy

from .fakes import RecordingChatClient
from .test_stored_forms import every_kind_of_message


class RecordingWindows(KeptWindows):
    """Kept windows that remember what each claim took (a hit, or ``None``)."""

    def __init__(self, **bounds: int) -> None:
        super().__init__(**bounds)
        self.taken: list[Window | None] = []

    def take(self, session: SessionKey, etag: str | None) -> Window | None:
        window = super().take(session, etag)
        self.taken.append(window)
        return window


@dataclass
class Instance:
    """One app instance's session services over the shared container: its own kept windows."""

    store: CosmosSessions
    guards: TurnGuards
    windows: RecordingWindows
    agents: Agents
    model: RecordingChatClient = field(default_factory=RecordingChatClient)

    async def turn(self, session_id: str, message: str) -> Any:
        settings = load_settings({})
        return await run_turn(
            self.store,
            self.agents,
            session_id=session_id,
            message=message,
            guards=self.guards,
            policy=history_policy(settings),
        )

    async def claim(self, session_id: str) -> SessionRecord:
        """The session as the next turn's claim reads it (the lease released again at once)."""
        assert self.guards.lease is not None
        claim = await self.guards.lease.claim(session_id, self.store.user_id)
        await self.guards.lease.release(session_id, self.store.user_id, claim.etag)
        assert claim.record is not None
        return claim.record


def instance(container: ContainerProxy, user_id: str) -> Instance:
    windows = RecordingWindows(max_bytes=1 << 20)
    model = RecordingChatClient()
    return Instance(
        CosmosSessions(container, user_id=user_id, windows=windows),
        TurnGuards(lease=CosmosTurnLease(container, seconds=10, windows=windows)),
        windows,
        build_agents(load_settings({}), model),
        model,
    )


@pytest.fixture
async def one(container, store) -> AsyncIterator[Instance]:
    yield instance(container, store.user_id)


def same_history(taken: SessionRecord, restored: SessionRecord) -> None:
    """Exactly what a fresh load gives: every message's attributes (types included), the session as the framework
    serializes it, and the document a save would write."""
    mine, theirs = (r.session.state["in_memory"]["messages"] for r in (taken, restored))
    assert [message_key(m) for m in mine] == [message_key(m) for m in theirs]
    assert all(key is not None for key in map(message_key, mine))
    assert json.dumps(taken.session.to_dict()) == json.dumps(restored.session.to_dict())
    assert json.dumps(session_dict(taken.session, taken.stored_forms)) == json.dumps(restored.session.to_dict())
    assert len(taken.stored_forms or ()) == len(restored.stored_forms or ())
    assert (taken.loaded_messages, taken.etag) == (restored.loaded_messages, restored.etag)


def kept_messages(window: Window | None) -> list[Kept]:
    assert window is not None
    return [kept for kept in window.kept if kept is not None]


async def seed(one: Instance, session_id: str) -> None:
    """A session whose history holds every kind of content a turn stores (written by a plain save)."""
    record = SessionRecord.new(session_id, user_id=one.store.user_id, mode="local")
    record.session.state["in_memory"] = {"messages": every_kind_of_message()}
    await one.store.save(record, etag=None)


@pytest.mark.integration
async def test_the_next_turn_takes_back_exactly_what_a_fresh_load_restores(one, session_id):
    await seed(one, session_id)
    for n in range(3):
        await one.turn(session_id, f"turn {n}")

    taken = await one.claim(session_id)
    restored = await one.store.load(session_id)

    window = one.windows.taken[-1]
    kept = kept_messages(window)
    assert len(kept) == len(every_kind_of_message()) + 4, "all but the last turn's two new messages were kept"
    messages = taken.session.state["in_memory"]["messages"]
    assert all(any(k.message is m for m in messages) for k in kept), "taken back, not restored"
    assert [w is not None for w in one.windows.taken] == [False, True, True, True], "the seed's save kept none"
    same_history(taken, restored)
    assert len(messages) == len(every_kind_of_message()) + 6


@pytest.mark.integration
async def test_turns_on_a_taken_back_window_save_what_turns_on_restored_ones_save(one, container, store, session_id):
    other = f"{session_id}-restored"
    cold = CosmosSessions(container, user_id=store.user_id)  # keeps nothing: every turn restores
    cold_guards = TurnGuards(lease=CosmosTurnLease(container, seconds=10))
    cold_agents = build_agents(load_settings({}), RecordingChatClient())  # its own replies, numbered alike
    for target in (session_id, other):
        await seed(one, target)
    for n in range(4):
        await one.turn(session_id, f"turn {n}")
        await run_turn(
            cold,
            cold_agents,
            session_id=other,
            message=f"turn {n}",
            guards=cold_guards,
            policy=history_policy(load_settings({})),
        )

    assert sum(window is not None for window in one.windows.taken) == 3
    mine, theirs = await one.store.load(session_id), await cold.load(other)
    assert json.dumps(mine.session.to_dict()["state"]) == json.dumps(theirs.session.to_dict()["state"])


@pytest.mark.integration
async def test_a_version_another_instance_wrote_is_never_served_from_the_window(one, container, store, session_id):
    other = instance(container, store.user_id)
    await one.turn(session_id, "first")
    await one.turn(session_id, "second")
    assert len(one.windows) == 1
    # Another instance rewrites the first message in place: the same number of messages, another version.
    record = await other.store.load(session_id)
    record.session.state["in_memory"]["messages"][0].contents[0].text = "rewritten elsewhere"
    await other.store.save(record, etag=record.etag)

    taken = await one.claim(session_id)

    assert one.windows.taken[-1] is None
    assert taken.session.state["in_memory"]["messages"][0].text == "rewritten elsewhere"
    same_history(taken, await one.store.load(session_id))


class ChangeThenFail(ContextProvider):
    """Changes the first loaded message in place, then makes the turn fail: ``how`` = "model" raises before the
    model answers; "lease" has another turn take the lease over, so the commit is refused (the document stays)."""

    def __init__(self, container: ContainerProxy, user_id: str, how: str) -> None:
        super().__init__("change-then-fail")
        self.container, self.user_id, self.how = container, user_id, how

    async def before_run(
        self, *, agent: Any, session: AgentSession, context: SessionContext, state: dict[str, Any]
    ) -> None:
        session.state["in_memory"]["messages"][0].contents[0].text = "changed by a turn that never committed"
        if self.how == "model":
            raise RuntimeError("the model call failed")
        partition = items.item_id(session.session_id)
        await self.container.patch_item(
            items.lease_id(partition),
            partition_key=items.partition_key(self.user_id, partition),
            patch_operations=[{"op": "set", "path": "/holder", "value": "another-turn"}],
        )


@pytest.mark.integration
@pytest.mark.parametrize("how", ["model", "lease"])
async def test_a_turn_that_did_not_commit_leaves_nothing_that_could_be_served(one, container, session_id, how):
    await one.turn(session_id, "first")
    await one.turn(session_id, "second")
    etag = (await one.store.load(session_id)).etag
    agent = one.agents["assistant"].by_mode["local"]
    agent.context_providers.append(ChangeThenFail(container, one.store.user_id, how))

    with pytest.raises(ModelCallError if how == "model" else SessionConflictError):
        await one.turn(session_id, "fails")
    agent.context_providers.pop()

    assert one.windows.taken[-1] is not None, "the failed turn had taken the window"
    assert len(one.windows) == 0, "and none was put back"
    if how == "lease":  # the lease another turn took over runs out
        partition = items.item_id(session_id)
        await container.patch_item(
            items.lease_id(partition),
            partition_key=items.partition_key(one.store.user_id, partition),
            patch_operations=[{"op": "set", "path": "/expiresAt", "value": 0}],
        )
    taken = await one.claim(session_id)
    assert taken.etag == etag, "the document is the version the failed turn read"
    assert one.windows.taken[-1] is None
    assert taken.session.state["in_memory"]["messages"][0].text == "first"
    same_history(taken, await one.store.load(session_id))


@pytest.mark.integration
async def test_racing_turns_on_two_instances_keep_every_accepted_turn(container, store, session_id):
    instances = [instance(container, store.user_id) for _ in range(2)]
    await instances[0].turn(session_id, "opening")
    accepted: list[str] = []
    for wave in range(4):
        racers = {f"racer {wave}.{n}": instances[n % 2] for n in range(4)}
        for one in instances:
            one.model.delay = 0.05
        results = await asyncio.gather(
            *(one.turn(session_id, message) for message, one in racers.items()), return_exceptions=True
        )
        for message, result in zip(racers, results, strict=True):
            if isinstance(result, BaseException):
                assert isinstance(result, (TurnInProgressError, SessionConflictError)), result
            else:
                accepted.append(message)

    record = await instances[0].store.load(session_id)
    users = [m.text for m in record.session.state["in_memory"]["messages"] if m.role == "user"]
    assert users == ["opening", *accepted]
    assert record.turns == 1 + len(accepted)
    for one in instances:
        taken = await one.claim(session_id)
        same_history(taken, await one.store.load(session_id))


def window(size: int) -> Window:
    return Window((), size)


def test_a_window_is_taken_once_and_only_for_its_own_version():
    windows = KeptWindows(max_bytes=100)
    kept = window(10)
    windows.keep(("u", "s"), "v2", kept)

    assert windows.take(("u", "s"), "v1") is None
    assert windows.take(("u", "s"), "v2") is None, "a claim of another version dropped it"
    windows.keep(("u", "s"), "v2", kept)
    assert windows.take(("u", "s"), "v2") is kept
    assert windows.take(("u", "s"), "v2") is None
    assert (len(windows), windows.memory_bytes) == (0, 0)


def test_a_session_keeps_only_its_newest_window():
    windows = KeptWindows(max_bytes=100)
    windows.keep(("u", "s"), "v1", window(10))
    windows.keep(("u", "s"), "v2", window(20))

    assert (len(windows), windows.memory_bytes) == (1, 20)
    assert windows.take(("u", "s"), "v1") is None


def test_windows_are_bounded_by_count_and_by_memory_the_least_recently_kept_going_first():
    windows = KeptWindows(max_bytes=100, max_windows=3)
    for n in range(4):
        windows.keep(("u", f"s{n}"), "v", window(10))
    assert len(windows) == 3
    assert windows.take(("u", "s0"), "v") is None

    windows.keep(("u", "big"), "v", window(90))
    assert windows.memory_bytes <= 100
    assert windows.take(("u", "big"), "v") is not None
    windows.keep(("u", "huge"), "v", window(101))
    assert windows.take(("u", "huge"), "v") is None, "a window over the whole bound is not kept"


def test_no_bytes_keeps_nothing():
    windows = KeptWindows(max_bytes=0)
    windows.keep(("u", "s"), "v", window(1))
    assert len(windows) == 0


def test_a_kept_message_changed_after_its_commit_is_restored_from_the_document():
    data = json.loads(json.dumps(seeded_session()))
    session, forms = restore(data)
    session.state["in_memory"]["messages"].append(Message(role="user", contents=["new"]))
    document, kept = written(session, forms)
    assert kept is not None
    first = kept.kept[0]
    assert first is not None
    first.message.contents[0].text = "changed after the commit"  # by code that still held it

    taken, taken_forms = restore(json.loads(json.dumps(document)), kept)

    messages = taken.state["in_memory"]["messages"]
    assert messages[0] is not first.message and messages[0].text == "Où est Lisbonne ? 🇵🇹"
    assert [m is k.message for m, k in zip(messages[1:], kept.kept[1:6], strict=False)] == [True] * 5
    assert json.dumps(session_dict(taken, taken_forms)) == json.dumps(taken.to_dict())


def seeded_session() -> dict[str, Any]:
    session = AgentSession(session_id="s")
    session.state["in_memory"] = {"messages": every_kind_of_message()}
    return session.to_dict()


def test_a_message_the_history_holds_twice_is_taken_back_once():
    data = json.loads(json.dumps(seeded_session()))
    session, forms = restore(data)
    messages = session.state["in_memory"]["messages"]
    messages.append(messages[0])  # the same object again (a provider re-adding it, say)
    document, kept = written(session, forms)

    taken, _ = restore(json.loads(json.dumps(document)), kept)

    again = taken.state["in_memory"]["messages"]
    assert again[0] is messages[0] and again[-1] is not again[0]
    assert again[-1].to_dict() == again[0].to_dict()


@pytest.mark.integration
async def test_a_taken_back_message_a_provider_changes_in_place_is_saved_changed(one, session_id):
    from .test_stored_forms import RedactFirstMessage

    for message in ("my card is 4111 1111 1111 1111", "second"):
        await one.turn(session_id, message)
    agent = one.agents["assistant"].by_mode["local"]
    agent.context_providers.append(RedactFirstMessage())
    try:
        await one.turn(session_id, "third")
    finally:
        agent.context_providers.pop()

    assert one.windows.taken[-1] is not None, "the third turn took its window back"
    restored = await one.store.load(session_id)
    assert restored.session.state["in_memory"]["messages"][0].text == "[redacted]"
    taken = await one.claim(session_id)
    assert taken.session.state["in_memory"]["messages"][0].text == "[redacted]"
    same_history(taken, restored)
