"""What moves to the archive: whole turns only, so a tool call is never parted from its approval or result."""

from __future__ import annotations

from agent_framework import AgentSession, Content, InMemoryHistoryProvider, Message

from cosmos_history.domain.archive import (
    ArchiveIndex,
    history_messages,
    json_size,
    plan_archive,
    serialized_message_sizes,
)


def approval_turn(first_message: str) -> list[Message]:
    """A turn whose tool call waited for approval: the answer is a user message inside the turn."""
    call = Content.from_function_call("c1", "schedule_reminder", arguments={"text": "tea"})
    request = Content.from_function_approval_request("a1", call)
    return [
        Message(role="user", contents=[first_message]),
        Message(role="assistant", contents=[call, request]),
        Message(role="user", contents=[request.to_function_approval_response(approved=True)]),
        Message(role="tool", contents=[Content.from_function_result("c1", result="scheduled")]),
        Message(role="assistant", contents=["Done."]),
    ]


def test_archiving_cuts_before_a_turn_never_at_the_approval_answer_inside_one():
    # The first message is most of the document, so the byte budget alone would cut right after it.
    messages = [
        *approval_turn("x" * 4000),
        Message(role="user", contents=["thanks"]),
        Message(role="assistant", contents=["ok"]),
    ]
    state = {InMemoryHistoryProvider.DEFAULT_SOURCE_ID: {"messages": list(messages)}}
    total = sum(json_size(m.to_dict()) for m in messages)
    max_bytes = int(total / 0.95)

    chunks = plan_archive(state, ArchiveIndex(), document_bytes=total, max_bytes=max_bytes, max_messages=100)

    archived = [m for _, chunk in chunks for m in chunk]
    kept = state[InMemoryHistoryProvider.DEFAULT_SOURCE_ID]["messages"]
    assert archived == messages[:5] and kept == messages[5:]


def _window(turns: int) -> list[Message]:
    return [
        m
        for t in range(turns)
        for m in (Message(role="user", contents=[f"q{t} " * 50]), Message(role="assistant", contents=[f"a{t} " * 200]))
    ]


def test_the_sizes_of_the_document_being_written_cut_the_window_where_measuring_each_message_would():
    budget = {"document_bytes": 30_000, "max_bytes": 1_000_000, "max_messages": 100, "max_tokens": 1_000}
    measured = {InMemoryHistoryProvider.DEFAULT_SOURCE_ID: {"messages": _window(12)}}
    given = {InMemoryHistoryProvider.DEFAULT_SOURCE_ID: {"messages": _window(12)}}
    session = AgentSession(session_id="s")
    session.state.update(given)
    document = session.to_dict()

    expected = plan_archive(measured, ArchiveIndex(), **budget)
    chunks = plan_archive(given, ArchiveIndex(), **budget, message_sizes=lambda: serialized_message_sizes(document))

    assert [len(chunk) for _, chunk in chunks] == [len(chunk) for _, chunk in expected] and expected
    assert len(history_messages(given)) == len(history_messages(measured)) < 24


def test_sizes_that_do_not_match_the_window_are_not_used():
    budget = {"document_bytes": 30_000, "max_bytes": 1_000_000, "max_messages": 100, "max_tokens": 1_000}
    state = {InMemoryHistoryProvider.DEFAULT_SOURCE_ID: {"messages": _window(12)}}

    chunks = plan_archive(state, ArchiveIndex(), **budget, message_sizes=lambda: [1, 2, 3])

    assert chunks and len(history_messages(state)) < 24
