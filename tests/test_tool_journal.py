"""The tool journal, in process: a turn whose tool had its effect but whose save never landed (the store
refused it, as a dead process never sends it) is retried; a keyed tool runs again with the same key, any
other is reported as unknown and not run again. The kill -9 proofs are in test_exactly_once.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from cosmos_history import build_agents, load_settings, run_turn
from cosmos_history.adapters.memory import MemoryDatabase, MemorySessions, MemoryTurnLease
from cosmos_history.domain.errors import StoreUnavailableError
from cosmos_history.domain.records import NO_ITEMS, SessionRecord, TurnItems
from cosmos_history.domain.results import TurnRequest
from cosmos_history.domain.service import Turns
from cosmos_history.domain.tool_journal import UNKNOWN_RESULT
from cosmos_history.domain.turn import TurnGuards

from .crash_agents.ledger import lines
from .fakes import RecordingChatClient


class FailingSaves(MemorySessions):
    """Memory sessions whose turn saves can be made to fail, as if the process died before sending them."""

    fail = False
    notes = 0

    async def note_started(self, record: SessionRecord) -> str:
        self.notes += 1
        return await super().note_started(record)

    async def save(self, record: SessionRecord, *, etag: str | None, items: TurnItems = NO_ITEMS) -> SessionRecord:
        if self.fail:
            raise StoreUnavailableError("the process died before its save")
        return await super().save(record, etag=etag, items=items)


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LEDGER_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture
def rig(offline_model: RecordingChatClient):
    database = MemoryDatabase()
    store = FailingSaves(database, user_id="alice")
    agents = build_agents(
        load_settings({"AGENTS_PACKAGE": "tests.crash_agents", "DEFAULT_AGENT": "ledger"}), offline_model
    )
    guards = TurnGuards(lease=MemoryTurnLease(database, seconds=10))

    async def turn(session_id: str, message: str = "", **options):
        return await run_turn(store, agents, session_id=session_id, message=message, guards=guards, **options)

    return store, turn


async def crashed_approval(rig, offline_model: RecordingChatClient, session_id: str, call: tuple[str, dict]) -> str:
    """A session whose approved call had its effect in an attempt that never saved; returns the approval id."""
    store, turn = rig
    offline_model.tool_call = call
    waiting = await turn(session_id, "please")
    offline_model.tool_call = None
    approval = waiting.approvals[0].id
    store.fail = True
    with pytest.raises(StoreUnavailableError):
        await turn(session_id, approvals=[(approval, True)])
    store.fail = False
    return approval


async def test_a_keyed_tool_runs_again_with_the_same_key_so_its_system_applies_it_once(
    rig, offline_model, ledger, session_id
):
    approval = await crashed_approval(rig, offline_model, session_id, ("pay", {"amount": 5, "ref": "p"}))

    done = await rig[1](session_id, approvals=[(approval, True)])

    attempts, payments = lines("attempts.jsonl"), lines("payments.jsonl")
    assert len(attempts) == 2 and attempts[0]["key"] == attempts[1]["key"]
    assert payments == [{"ref": "p", "key": attempts[0]["key"], "amount": 5}]
    assert [(c.name, c.result, c.status) for c in done.tool_calls] == [("pay", "Paid 5.", "completed")]


async def test_a_tool_without_a_key_is_not_run_again_and_its_outcome_is_unknown(rig, offline_model, ledger, session_id):
    approval = await crashed_approval(rig, offline_model, session_id, ("ring", {"times": 1, "ref": "r"}))

    done = await rig[1](session_id, approvals=[(approval, True)])

    assert lines("rings.jsonl") == [{"ref": "r", "times": 1}]
    assert [(c.name, c.result, c.status) for c in done.tool_calls] == [("ring", UNKNOWN_RESULT, "unknown")]
    told = [c.result for m in offline_model.calls[-1] for c in m.contents if c.type == "function_result"]
    assert told == [UNKNOWN_RESULT], "the model is told the outcome is unknown"
    record = await rig[0].load(session_id)
    assert record.tool_journal == [] and record.turns == 2


async def test_a_side_effect_tool_asked_for_again_by_the_model_is_not_run_again(rig, offline_model, ledger, session_id):
    store, turn = rig
    offline_model.tool_call = ("notify", {"text": "hello", "ref": "n"})
    store.fail = True
    with pytest.raises(StoreUnavailableError):
        await turn(session_id, "tell them")
    store.fail = False

    done = await turn(session_id, "tell them")

    assert lines("notifications.jsonl") == [{"ref": "n", "text": "hello"}]
    assert [(c.name, c.status) for c in done.tool_calls] == [("notify", "unknown")]


async def test_a_declined_approval_of_a_call_that_had_started_is_shown_as_unknown(
    rig, offline_model, ledger, session_id
):
    approval = await crashed_approval(rig, offline_model, session_id, ("ring", {"times": 2, "ref": "r"}))

    done = await rig[1](session_id, approvals=[(approval, False)])

    assert lines("rings.jsonl") == [{"ref": "r", "times": 2}]
    assert [(c.name, c.status) for c in done.tool_calls] == [("ring", "unknown")]


async def test_only_turns_that_run_a_tool_with_side_effects_write_the_journal_once_per_call(
    rig, offline_model, ledger, session_id
):
    store, turn = rig
    await turn(session_id, "hello")
    assert store.notes == 0
    offline_model.tool_call = ("notify", {"text": "hi", "ref": "n"})
    await turn(session_id, "tell them")

    record = await store.load(session_id)
    assert (
        store.notes == 1 and record.tool_journal == [] and lines("notifications.jsonl") == [{"ref": "n", "text": "hi"}]
    )


async def test_a_turn_that_stores_nothing_writes_no_journal(offline_model, ledger, session_id):
    store = FailingSaves(MemoryDatabase(), user_id="alice")
    agents = build_agents(
        load_settings({"AGENTS_PACKAGE": "tests.crash_agents", "DEFAULT_AGENT": "ledger"}), offline_model
    )
    offline_model.tool_call = ("notify", {"text": "hi", "ref": "n"})

    result = await Turns(store, agents).run(TurnRequest(session_id, "tell them", store=False), caller=store.user_id)

    assert [c.name for c in result.tool_calls] == ["notify"] and lines("notifications.jsonl") == [
        {"ref": "n", "text": "hi"}
    ]
    assert store.notes == 0 and await store.load(session_id) is None
