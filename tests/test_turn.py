"""The turn, as a service function: unit tests with an in-memory store and a recording model."""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest
from agent_framework import Content

from cosmos_history import (
    SessionConflictError,
    build_agents,
    load_settings,
    run_turn,
    run_turn_stream,
)
from cosmos_history.adapters.memory import MemoryDatabase, MemoryReplayCache, MemorySessions, MemoryTurnLease
from cosmos_history.domain.archive import history_messages
from cosmos_history.domain.errors import (
    ModeConflictError,
    ModelCallError,
    StoreUnavailableError,
    ThreadExpiredError,
    TurnInProgressError,
    ValidationError,
)
from cosmos_history.domain.events import TextDelta
from cosmos_history.domain.records import title_from
from cosmos_history.domain.results import TurnRequest
from cosmos_history.domain.service import Turns
from cosmos_history.domain.streaming import TextDeltas
from cosmos_history.domain.turn import TurnGuards
from cosmos_history.models.errors import model_call_error

from .clock import ManualClock, ManualHeartbeat
from .fakes import RecordingChatClient
from .faults import intercept, raising


async def test_first_turn_creates_the_session_and_returns_the_reply(memory_store, memory_agents, offline_model):
    result = await run_turn(memory_store, memory_agents, session_id="s1", message="Hello there")

    assert (result.session_id, result.reply, result.turn, result.mode) == ("s1", "reply 1", 1, "local")
    assert (result.agent, result.status, result.tool_calls) == ("assistant", "completed", ())
    stored = await memory_store.load("s1")
    assert stored is not None and stored.turns == 1 and stored.title == "Hello there"


async def test_second_turn_sends_the_first_turn_to_the_model(memory_store, memory_agents, offline_model):
    await run_turn(memory_store, memory_agents, session_id="s1", message="first")
    await run_turn(memory_store, memory_agents, session_id="s1", message="second")

    assert offline_model.texts(-1) == [("user", "first"), ("assistant", "reply 1"), ("user", "second")]


async def test_local_mode_asks_the_service_not_to_store(memory_store, memory_agents, offline_model):
    await run_turn(memory_store, memory_agents, session_id="s1", message="hi")

    assert offline_model.options[-1].get("store") is False


async def test_service_mode_sends_only_the_new_message(memory_store, memory_agents, offline_model):
    await run_turn(memory_store, memory_agents, session_id="s1", message="first", mode="service")
    await run_turn(memory_store, memory_agents, session_id="s1", message="second")

    assert offline_model.texts(-1) == [("user", "second")]
    assert offline_model.options[-1].get("store") is True


async def test_failed_model_call_leaves_the_session_unchanged(memory_store, memory_agents, offline_model):
    await run_turn(memory_store, memory_agents, session_id="s1", message="first")
    before = await memory_store.load("s1")
    offline_model.fail_with = RuntimeError("model down")

    with pytest.raises(ModelCallError):
        await run_turn(memory_store, memory_agents, session_id="s1", message="second")

    after = await memory_store.load("s1")
    assert after is not None and before is not None
    assert after.etag == before.etag and after.session.to_dict() == before.session.to_dict()


async def test_failed_first_turn_creates_nothing(memory_store, memory_agents, offline_model):
    offline_model.fail_with = RuntimeError("model down")

    with pytest.raises(ModelCallError):
        await run_turn(memory_store, memory_agents, session_id="s1", message="first")

    assert await memory_store.load("s1") is None


async def test_a_turn_racing_another_is_rejected_not_merged(memory_store, memory_agents, offline_model):
    await run_turn(memory_store, memory_agents, session_id="s1", message="first")

    def someone_else_writes_after(load):
        async def load_then_someone_else_writes(session_id: str):
            record = await load(session_id)
            other = await load(session_id)
            assert other is not None
            other.turns += 1
            await memory_store.save(other, etag=other.etag)
            return record

        return load_then_someone_else_writes

    with intercept(memory_store, "load", someone_else_writes_after), pytest.raises(SessionConflictError):
        await run_turn(memory_store, memory_agents, session_id="s1", message="loser")


async def test_asking_for_the_other_mode_is_a_conflict(memory_store, memory_agents):
    await run_turn(memory_store, memory_agents, session_id="s1", message="first", mode="local")

    with pytest.raises(ModeConflictError):
        await run_turn(memory_store, memory_agents, session_id="s1", message="again", mode="service")


async def test_service_mode_is_refused_when_the_model_api_is_chat_completions(memory_store, offline_model):
    memory_agents = build_agents(load_settings({"MODEL_API": "chat"}), offline_model)

    with pytest.raises(ValidationError):
        await run_turn(memory_store, memory_agents, session_id="s1", message="hi", mode="service")


async def test_two_users_with_the_same_session_id_have_two_separate_sessions(
    memory_agents, memory_store, offline_model
):
    await run_turn(memory_store, memory_agents, session_id="s1", message="alice's secret")
    mallory = memory_store.for_user("mallory")

    await run_turn(mallory, memory_agents, session_id="s1", message="hijack")

    assert all("alice's secret" not in message.text for message in offline_model.calls[-1])
    alices, mallorys = await memory_store.load("s1"), await mallory.load("s1")
    assert alices is not None and alices.turns == 1 and alices.user_id == memory_store.user_id
    assert mallorys is not None and mallorys.turns == 1 and mallorys.user_id == "mallory"
    assert "alice's secret" in [m.text for m in history_messages(alices.session.state)]
    assert "alice's secret" not in [m.text for m in history_messages(mallorys.session.state)]


def test_title_is_the_first_words_cut_at_a_word_boundary():
    assert title_from("  Plan   a trip\nto Lisbon ") == "Plan a trip to Lisbon"
    long = title_from("word " * 40)
    assert len(long) <= 61 and long.endswith("…") and not long[:-1].endswith(" ")


# --- streamed turns ------------------------------------------------------------------------------


async def test_a_streamed_turn_yields_deltas_that_add_up_to_the_saved_reply(memory_store, memory_agents, offline_model):
    turn = await run_turn_stream(memory_store, memory_agents, session_id="s1", message="Hello")

    pieces = [event.text async for event in turn.events() if isinstance(event, TextDelta)]
    result = await turn.result()

    assert "".join(pieces) == result.reply == "reply 1" and len(pieces) == 2
    stored = await memory_store.load("s1")
    assert stored is not None and stored.turns == 1
    again = await run_turn(memory_store, memory_agents, session_id="s1", message="again")
    assert (again.session_id, again.turn, again.reply) == ("s1", 2, "reply 2")
    assert offline_model.texts(-1) == [("user", "Hello"), ("assistant", "reply 1"), ("user", "again")]


class CountingUpdates(RecordingChatClient):
    """Streams without pausing between updates (as a model's buffered stream reads) and counts what it yielded."""

    def __init__(self) -> None:
        super().__init__()
        self.yielded = 0

    async def _stream(self, text: str):  # type: ignore[override]
        async for update in super()._stream(text):
            self.yielded += 1
            yield update


async def test_a_streamed_retry_is_known_as_a_replay_as_soon_as_it_starts(memory_store, memory_agents, guards):
    first = await run_turn_stream(
        memory_store, memory_agents, session_id="s1", message="hi", idempotency_key="K", guards=guards
    )
    assert [event async for event in first.events()] and not first.replayed()

    again = await run_turn_stream(
        memory_store, memory_agents, session_id="s1", message="hi", idempotency_key="K", guards=guards
    )

    assert again.replayed(), "known before its stored reply is read (an HTTP answer's headers need it)"
    assert "".join([e.text async for e in again.events() if isinstance(e, TextDelta)]) == "reply 1"


async def test_a_streamed_delta_reaches_the_reader_before_the_model_stream_is_read_on(memory_store):
    model = CountingUpdates()
    model.reply_template = "one two three four"
    turn = await run_turn_stream(memory_store, build_agents(load_settings({}), model), session_id="s1", message="Hello")

    seen = [(event.text, model.yielded) async for event in turn.events() if isinstance(event, TextDelta)]

    # The framework reads one update ahead; without the hand-over the first delta waited for the last update.
    assert seen[0] == ("one ", 2)
    assert [text for text, _ in seen] == ["one ", "two ", "three ", "four"]


async def test_a_streamed_turn_is_saved_even_when_its_reader_is_cancelled(memory_store, memory_agents, offline_model):
    offline_model.delay = 0.05
    turns = Turns(memory_store, memory_agents)
    turn = await turns.stream(TurnRequest("s1", "Hello"), caller=memory_store.user_id)

    reading = asyncio.Event()

    async def read_then_leave() -> None:
        async for _ in turn.events():
            reading.set()
            await asyncio.Event().wait()  # the client stops reading; its response is then cancelled

    reader = asyncio.create_task(read_then_leave())
    await reading.wait()
    reader.cancel()
    async with asyncio.timeout(5):
        await turns.supervisor.drain()

    stored = await memory_store.load("s1")
    assert stored is not None and stored.turns == 1


async def test_a_model_failing_before_its_first_update_fails_the_stream_before_it_starts(
    memory_store, memory_agents, offline_model
):
    offline_model.fail_with = RuntimeError("model down")

    with pytest.raises(ModelCallError):
        await run_turn_stream(memory_store, memory_agents, session_id="s1", message="Hello")

    assert await memory_store.load("s1") is None


async def test_checks_that_need_no_model_fail_a_streamed_turn_before_the_model_is_called(
    memory_store, memory_agents, offline_model
):
    await run_turn(memory_store, memory_agents, session_id="s1", message="first", mode="local")

    with pytest.raises(ModeConflictError):
        await run_turn_stream(memory_store, memory_agents, session_id="s1", message="again", mode="service")
    assert len(offline_model.calls) == 1


def test_a_replace_update_adds_only_the_text_not_sent_yet():
    text = TextDeltas()

    sent = [
        *text.feed([Content.from_text("answer ", merge_mode="append")]),
        *text.feed([Content.from_text("2", merge_mode="append")]),
        *text.feed([Content.from_text("answer 2 to: x", merge_mode="replace")]),
        *text.feed([Content.from_text("answer 2 to: x", merge_mode="replace")]),
    ]

    assert sent == ["answer ", "2", " to: x"]


def openai_error(status: int, code: str | None, param: str | None) -> openai.APIStatusError:
    request = httpx.Request("POST", "http://127.0.0.1/v1/responses")
    body = {"message": "Previous response not found.", "type": "invalid_request_error", "param": param, "code": code}
    cls = openai.NotFoundError if status == 404 else openai.BadRequestError
    return cls("not found", response=httpx.Response(status, request=request), body=body)


@pytest.mark.parametrize(
    ("status", "code", "param"),
    [(404, "previous_response_not_found", "previous_response_id"), (400, None, "previous_response_id")],
)
async def test_a_thread_the_service_forgot_is_a_thread_expired_error(
    memory_store, memory_agents, offline_model, status, code, param
):
    await run_turn(memory_store, memory_agents, session_id="s1", message="first", mode="service")
    record = await memory_store.load("s1")
    assert record is not None
    record.session.service_session_id = "resp_1"
    wrapped = RuntimeError("the framework's wrapper")
    wrapped.__cause__ = openai_error(status, code, param)

    assert isinstance(model_call_error(wrapped, record), ThreadExpiredError)
    assert type(model_call_error(openai_error(400, "invalid_value", "input"), record)) is ModelCallError


# --- the guards, over the in-memory adapters --------------------------------------------------


@pytest.fixture
def guards(memory_store: MemorySessions) -> TurnGuards:
    return TurnGuards(
        lease=MemoryTurnLease(memory_store.database, seconds=3),
        replays=MemoryReplayCache(memory_store.database, ttl_seconds=60),
    )


async def test_a_keyed_retry_replays_only_the_turn_its_own_request_made(
    memory_store, memory_agents, offline_model, guards
):
    first = await run_turn(
        memory_store, memory_agents, session_id="s1", message="keyed", idempotency_key="K", guards=guards
    )
    await run_turn(memory_store, memory_agents, session_id="s1", message="other", guards=guards)

    retry = await run_turn(
        memory_store, memory_agents, session_id="s1", message="keyed", idempotency_key="K", guards=guards
    )
    fresh = await run_turn(
        memory_store, memory_agents, session_id="s1", message="keyed", idempotency_key="K-new", guards=guards
    )

    assert retry.replayed and retry.turn == first.turn == 1
    assert not fresh.replayed and fresh.turn == 3


async def test_a_keyed_turn_whose_save_failed_runs_again_on_retry(memory_store, memory_agents, offline_model, guards):
    await run_turn(memory_store, memory_agents, session_id="s1", message="hello", guards=guards)
    with (
        intercept(memory_store, "save", raising(StoreUnavailableError("injected"))),
        pytest.raises(StoreUnavailableError),
    ):
        await run_turn(
            memory_store, memory_agents, session_id="s1", message="important", idempotency_key="K", guards=guards
        )
    await run_turn(memory_store, memory_agents, session_id="s1", message="follow-up", guards=guards)

    retry = await run_turn(
        memory_store, memory_agents, session_id="s1", message="important", idempotency_key="K", guards=guards
    )

    assert not retry.replayed and retry.turn == 3


async def test_a_turn_longer_than_its_lease_renews_it_and_a_racer_is_refused(memory_agents, offline_model):
    clock = ManualClock()
    heartbeat = ManualHeartbeat(clock)  # the heartbeat's waits end when the test moves the clock: no time passes
    store = MemorySessions(MemoryDatabase(clock=clock), user_id="alice")
    guards = TurnGuards(lease=MemoryTurnLease(store.database, seconds=3), pause=heartbeat.pause)
    offline_model.gate, offline_model.entered = asyncio.Event(), asyncio.Event()
    running = asyncio.create_task(run_turn(store, memory_agents, session_id="s1", message="slow", guards=guards))
    await offline_model.entered.wait()
    claimed_until = store.database.leases[("alice", "s1")][0]

    for _ in range(4):  # a renewal every third of the lease: the turn now runs longer than one lease
        await heartbeat.beat()
    assert clock.now > claimed_until and store.database.leases[("alice", "s1")][0] == clock.now + 3

    with pytest.raises(TurnInProgressError):
        await run_turn(store, memory_agents, session_id="s1", message="racer", guards=guards)
    offline_model.gate.set()
    result = await running

    assert result.turn == 1
    assert store.database.leases[("alice", "s1")][0] == 0.0, "the commit released the renewed lease"
