"""The input budget counts each message's tokens once (by content fingerprint) and skips the framework's
compaction pass only when it would change nothing: the model reads exactly what it read before."""

from __future__ import annotations

import copy

import pytest
from agent_framework import (
    EXCLUDED_KEY,
    CompactionProvider,
    Content,
    Message,
    SessionContext,
    apply_compaction,
    included_token_count,
)

from cosmos_history.domain.compaction import (
    TOKEN_COUNTS,
    InputBudget,
    _room,
    _TruncateToRoom,
    count_tokens,
    fits,
)
from cosmos_history.domain.message_keys import TokenCounts, token_key


def window(turns: int) -> list[Message]:
    """A summary, then turns of text and of tool calls with their results, of growing lengths."""
    messages = [Message(role="system", contents=["Summary of the earlier conversation: " + "fact " * 40])]
    for turn in range(turns):
        messages.append(Message(role="user", contents=[f"question {turn} " + "word " * (turn * 7 % 50)]))
        if turn % 3 == 1:
            call = Content.from_function_call(call_id=f"c{turn}", name="lookup", arguments={"turn": turn})
            messages.append(Message(role="assistant", contents=[call]))
            messages.append(
                Message(role="tool", contents=[Content.from_function_result(call_id=f"c{turn}", result="r")])
            )
        messages.append(Message(role="assistant", contents=[f"answer {turn} " + "text " * (turn * 11 % 80)]))
    return messages


def context_of(messages: list[Message], new: str = "the new question") -> SessionContext:
    """A request's context as the history and summary providers leave it (their own copies)."""
    context = SessionContext(input_messages=[Message(role="user", contents=[new])])
    context.extend_messages("summary", messages[:1])
    context.extend_messages("in_memory", messages[1:])
    return context


async def frameworks_pass(budget: int, messages: list[Message]) -> list[tuple[str, str]]:
    """What the framework's own provider, with the same truncation, leaves in the context (the reference)."""
    context = context_of(messages)
    room = max(1, budget - await count_tokens(context.input_messages))
    provider = CompactionProvider(before_strategy=_TruncateToRoom(), tokenizer=_TruncateToRoom.tokenizer)
    token = _room.set(room)
    try:
        await provider.before_run(agent=None, session=None, context=context, state={})
    finally:
        _room.reset(token)
    return [(m.role, m.text) for m in context.get_messages()]


async def input_budget(budget: int, messages: list[Message]) -> list[tuple[str, str]]:
    context = context_of(messages)
    await InputBudget(budget).before_run(agent=None, session=None, context=context, state={})
    return [(m.role, m.text) for m in context.get_messages()]


@pytest.mark.parametrize("turns", [1, 4, 12, 30])
async def test_the_model_reads_what_the_frameworks_pass_leaves_at_every_budget(turns):
    messages = window(turns)
    total = await count_tokens(context_of(messages).get_messages())
    for budget in sorted({1, 50, total // 2, total - 10, total, total + 5, total + 6, total + 7, total * 2}):
        assert await input_budget(max(1, budget), messages) == await frameworks_pass(max(1, budget), messages)


@pytest.mark.parametrize("turns", [2, 9, 25])
async def test_the_skip_never_keeps_a_window_that_does_not_fit(turns):
    messages = context_of(window(turns)).get_messages()
    total = await count_tokens(messages)  # as the framework counts them, each named for its place
    skipped = []

    for room in range(max(1, total - 60), total + 3 * len(messages)):
        if await fits(messages, room):
            skipped.append(room)
            copies = copy.deepcopy(messages)
            token = _room.set(room)
            try:
                kept = await apply_compaction(copies, strategy=_TruncateToRoom(), tokenizer=_TruncateToRoom.tokenizer)
            finally:
                _room.reset(token)
            assert total <= room
            assert len(kept) == len(messages)  # the framework's truncation would have changed nothing

    assert skipped  # and, with room to spare, the skip is taken


async def test_a_window_with_a_message_already_excluded_always_takes_the_frameworks_pass():
    messages = context_of(window(3)).get_messages()
    messages[2].additional_properties[EXCLUDED_KEY] = True

    assert not await fits(messages, 10**9)


async def test_cached_counts_are_the_frameworks_counts_and_ignore_attribution_and_exclusion():
    messages = window(6)
    counts = TokenCounts(lambda m: count_tokens([m]))
    for message in messages:
        assert await TOKEN_COUNTS.of(message) == await count_tokens([message])
    copy_with_attribution = context_of(messages).get_messages()[3]
    assert token_key(copy_with_attribution) == token_key(messages[3])
    excluded = copy.copy(messages[3])
    excluded.additional_properties = {EXCLUDED_KEY: True}
    assert await TOKEN_COUNTS.of(excluded) == await count_tokens([messages[3]]) > 0
    named = [Message(role=m.role, contents=m.contents, message_id=f"m{i}") for i, m in enumerate(messages)]
    assert await counts.total(named) == await count_tokens(named)  # counted alone or together, once named


async def test_a_message_changed_in_place_is_counted_again():
    message = Message(role="user", contents=["short"])
    before = await TOKEN_COUNTS.of(message)

    message.contents[0].text = "a much longer text than before " * 20

    assert await TOKEN_COUNTS.of(message) == await count_tokens([message]) > before


async def test_the_table_stays_within_its_limit():
    calls = []

    async def count(message: Message) -> int:
        calls.append(message)
        return 1

    counts = TokenCounts(count, limit=3)
    messages = [Message(role="user", contents=[f"m{index}"]) for index in range(10)]
    for message in messages:
        await counts.of(message)
    await counts.of(messages[9])

    assert len(counts) == 3
    assert len(calls) == 10  # the last one came from the table


async def _frameworks_count(messages: list[Message]) -> int:
    """The count of the framework's own compaction, applying a strategy that changes nothing, on copies."""

    async def unchanged(_: list[Message]) -> bool:
        return False

    copies = copy.deepcopy(messages)
    await apply_compaction(copies, strategy=unchanged, tokenizer=_TruncateToRoom.tokenizer)
    return included_token_count(copies)


@pytest.mark.parametrize("turns", [0, 1, 5, 13])
async def test_the_count_is_the_frameworks_compaction_count(turns):
    messages = window(turns)
    named = [Message(role=m.role, contents=m.contents, message_id=f"m{i}") for i, m in enumerate(messages)]
    attributed = context_of(messages).get_messages()

    for case in (messages, named, attributed):
        assert await count_tokens(case) == await _frameworks_count(case) > 0
