"""Long conversations stay cheap: a token budget on what the model reads, a small document, a running summary,
and the full history still in the archive. Through the real store over the local Cosmos DB."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pytest
from agent_framework import ChatResponse, ChatResponseUpdate, InMemoryHistoryProvider, Message, ResponseStream

from cosmos_history import build_agents, load_settings, run_turn
from cosmos_history.adapters.cosmos.client import create_client, ensure_container
from cosmos_history.domain.compaction import SUMMARY, SUMMARY_HEADER, WindowHistory, count_tokens, summary_of
from cosmos_history.domain.conversations import read_history
from cosmos_history.domain.policy import HistoryPolicy
from cosmos_history.models.offline import OfflineChatClient
from cosmos_history.runtime import history_policy, session_services

pytestmark = pytest.mark.integration

BUDGET = 1000
FACT = "My secret word is PAPAYA-9."


class RecordingOfflineModel(OfflineChatClient):
    """The offline model (it summarises deterministically), recording every request it gets."""

    def __init__(self) -> None:
        super().__init__()
        self.turns: list[list[Message]] = []
        self.summaries: list[list[Message]] = []
        self.fail_summaries = False

    def _inner_get_response(
        self, *, messages: Sequence[Message], stream: bool, options: Mapping[str, Any], **kwargs: Any
    ) -> Awaitable[ChatResponse] | ResponseStream[ChatResponseUpdate, ChatResponse]:
        is_summary = messages[-1].role == "user" and messages[-1].text.startswith(SUMMARY_HEADER)
        (self.summaries if is_summary else self.turns).append(list(messages))
        if is_summary and self.fail_summaries:
            raise RuntimeError("the summarizer is down")
        return super()._inner_get_response(messages=messages, stream=stream, options=options, **kwargs)


@dataclass
class Conversation:
    """One user's sessions on the real store, with agents built like the app's from ``env``."""

    env: dict[str, str]
    model: RecordingOfflineModel
    store: Any
    guards: Any
    agents: Any
    policy: HistoryPolicy
    """The document's budget, as the runtime builds it from the first deployment's settings."""

    async def say(self, session_id: str, message: str) -> Any:
        return await run_turn(
            self.store, self.agents, session_id=session_id, message=message, guards=self.guards, policy=self.policy
        )

    async def restart(self) -> None:
        """A new process: new agents, a new client and store; only what Cosmos DB holds carries over."""
        self.model = RecordingOfflineModel()
        self.agents = build_agents(load_settings(self.env), self.model)


@pytest.fixture
async def conversation(cosmos_env) -> AsyncIterator[Conversation]:
    env = {**cosmos_env, "MAX_INPUT_TOKENS": str(BUDGET), "HISTORY_COMPACTION": "summarize"}
    settings = load_settings(env)
    client = create_client(settings.cosmos)
    store, guards = session_services(await ensure_container(client, settings.cosmos), settings)
    model = RecordingOfflineModel()
    user = store.for_user(f"u-{uuid.uuid4().hex[:6]}")
    yield Conversation(env, model, user, guards, build_agents(settings, model), history_policy(settings))
    await client.close()


async def history_tokens(messages: list[Message]) -> int:
    """What the budget covers: every message the model read but the agent's own instructions."""
    return await count_tokens([m for m in messages if not (m.role == "system" and SUMMARY_HEADER not in m.text)])


def said(number: int) -> str:
    return FACT if number == 1 else f"Turn {number}: here is another thing worth saying, at some length, {'.' * 80}"


async def test_three_hundred_turns_stay_within_the_budget_remember_the_first_fact_and_lose_nothing(conversation):
    session = f"long-{uuid.uuid4().hex[:8]}"
    largest_request, largest_document = 0, 0
    for number in range(1, 301):
        await conversation.say(session, said(number))
        largest_request = max(largest_request, await history_tokens(conversation.model.turns[-1]))
        if number % 25 == 0:
            stored = await conversation.store.load(session)
            largest_document = max(largest_document, stored.loaded_bytes or 0)

    last_request = "\n".join(m.text for m in conversation.model.turns[-1])
    record = await conversation.store.load(session)
    page, texts, before = None, [], None
    while page is None or before is not None:
        page = await read_history(conversation.store, session, before=before, limit=200)
        texts = [m.text for _, m in page.messages if m.role == "user"] + texts
        before = page.next_before

    assert largest_request <= BUDGET
    assert "PAPAYA-9" in last_request and "PAPAYA-9" in (summary_of(record) or "")
    assert largest_document < 16_000 and record.archive.count > 500
    assert texts == [said(n) for n in range(1, 301)]


async def test_the_summary_survives_a_restart_and_is_what_the_model_reads_first(conversation):
    session = f"restart-{uuid.uuid4().hex[:8]}"
    for number in range(1, 41):
        await conversation.say(session, said(number))
    summary = summary_of(await conversation.store.load(session))

    await conversation.restart()
    await conversation.say(session, "What is my secret word?")

    request = conversation.model.turns[-1]
    seen = [i for i, m in enumerate(request) if m.role == "system" and "Summary of the earlier" in m.text]
    history = [i for i, m in enumerate(request) if m.role != "system"]
    assert summary and "PAPAYA-9" in summary
    assert len(seen) == 1 and seen[0] < history[0] and summary.splitlines()[0] in request[seen[0]].text


async def test_a_failing_summarizer_loses_no_turn_and_the_summary_catches_up_later(conversation, caplog):
    caplog.set_level(logging.WARNING, logger="cosmos_history.domain.compaction")
    session = f"failing-{uuid.uuid4().hex[:8]}"
    conversation.model.fail_summaries = True
    for number in range(1, 31):
        await conversation.say(session, said(number))
    failing = await conversation.store.load(session)

    conversation.model.fail_summaries = False
    await conversation.say(session, "and now?")
    recovered = await conversation.store.load(session)

    assert failing.turns == 30 and failing.archive.count > 0 and conversation.model.summaries
    assert summary_of(failing) is None and await history_tokens(conversation.model.turns[-2]) <= BUDGET
    assert any("failed: RuntimeError" in r.getMessage() for r in caplog.records)
    assert not any("PAPAYA" in r.getMessage() for r in caplog.records)
    assert recovered.session.state[SUMMARY]["through"] == failing.archive.count
    assert "PAPAYA-9" in summary_of(recovered)


async def test_tool_calls_stay_with_their_results_across_the_compaction_boundary(conversation):
    session = f"tools-{uuid.uuid4().hex[:8]}"
    for number in range(1, 41):
        await conversation.say(session, '/current_time {"time_zone": "UTC"}' if number % 2 else said(number))
    waiting = await conversation.say(session, '/schedule_reminder {"text": "tea", "at": "2026-12-01T16:00"}')
    done = await run_turn(
        conversation.store,
        conversation.agents,
        session_id=session,
        message="",
        approvals=[(waiting.approvals[0].id, True)],
        guards=conversation.guards,
        policy=conversation.policy,
    )

    assert waiting.status == "awaiting_approval" and done.status == "completed"
    assert "Reminder 1 scheduled" in done.reply  # the pending approval was not compacted away
    for request in conversation.model.turns:
        calls = {c.call_id for m in request for c in m.contents if c.type == "function_call"}
        results = {c.call_id for m in request for c in m.contents if c.type == "function_result"}
        assert calls == results
    page = await read_history(conversation.store, session, before=None, limit=200)
    seen_calls: set[str] = set()
    for _, message in page.messages:
        for content in message.contents:
            if content.type == "function_call":
                seen_calls.add(content.call_id)
            if content.type == "function_result":
                assert content.call_id in seen_calls


async def test_a_request_is_cut_to_the_budget_even_when_the_stored_window_is_longer(conversation):
    session = f"shrunk-{uuid.uuid4().hex[:8]}"
    conversation.env["HISTORY_COMPACTION"] = "none"  # first deployed without compaction: a long stored window
    conversation.policy = replace(conversation.policy, budget=replace(conversation.policy.budget, max_tokens=None))
    await conversation.restart()
    for number in range(1, 31):
        await conversation.say(session, said(number))
    assert await history_tokens(conversation.model.turns[-1]) > 2 * 600

    conversation.env.update(HISTORY_COMPACTION="window", MAX_INPUT_TOKENS="600")  # then redeployed with it
    await conversation.restart()
    await conversation.say(session, "Still there?")

    request = conversation.model.turns[-1]
    assert await history_tokens(request) <= 600 and request[-1].text == "Still there?"


async def test_the_window_strategy_keeps_the_budget_without_any_summarization_call(conversation):
    conversation.env["HISTORY_COMPACTION"] = "window"
    await conversation.restart()
    session = f"window-{uuid.uuid4().hex[:8]}"
    for number in range(1, 41):
        await conversation.say(session, said(number))

    record = await conversation.store.load(session)
    assert conversation.model.summaries == [] and summary_of(record) is None and record.archive.count > 0
    assert "PAPAYA-9" not in "\n".join(m.text for m in conversation.model.turns[-1])
    assert await history_tokens(conversation.model.turns[-1]) <= BUDGET


def _said(*texts: str) -> list[Message]:
    return [Message(role="user" if i % 2 == 0 else "assistant", contents=[t]) for i, t in enumerate(texts)]


@pytest.mark.parametrize(
    "incoming",
    [
        ["q3", "a3"],  # a new turn
        ["q2", "a2"],  # a turn repeating the stored last turn word for word: dropped, as the framework drops it
        ["a2", "q3", "a3"],  # overlapping the stored tail by one message
        ["q2"],  # a repeated question alone is kept
        ["q1", "a1", "q2", "a2", "q3"],  # the whole transcript replayed
    ],
)
async def test_the_window_history_keeps_exactly_what_the_frameworks_history_keeps(incoming: list[str]):
    stored = ["q1", "a1", "q2", "a2"]
    ours, theirs = {"messages": _said(*stored)}, {"messages": _said(*stored)}
    new = [Message(role="user" if t.startswith("q") else "assistant", contents=[t]) for t in incoming]

    await WindowHistory().save_messages("s", new, state=ours)
    await InMemoryHistoryProvider().save_messages("s", new, state=theirs)

    assert [(m.role, m.text) for m in ours["messages"]] == [(m.role, m.text) for m in theirs["messages"]]
