"""What moves to the archive: whole turns only, so a tool call is never parted from its approval or result."""

from __future__ import annotations

from agent_framework import Content, InMemoryHistoryProvider, Message

from cosmos_history.domain.archive import ArchiveIndex, json_size, plan_archive


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
