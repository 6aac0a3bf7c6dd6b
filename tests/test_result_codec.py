"""Stored turn results have a versioned format of their own: replays survive changes to any API's body."""

from __future__ import annotations

from typing import Any

import pytest

from cosmos_history.domain import result_codec
from cosmos_history.domain.approvals import PendingApproval, ToolCall
from cosmos_history.domain.client_tools import ClientCall
from cosmos_history.domain.errors import IdempotentResultGoneError
from cosmos_history.domain.records import SessionRecord, key_digest
from cosmos_history.domain.replay import replay
from cosmos_history.domain.results import TurnResult

RESULT = TurnResult(
    "s1",
    "It is sunny.",
    3,
    "local",
    agent="assistant",
    tool_calls=(ToolCall("c1", "weather", {"city": "Oslo"}, "sunny", "completed"),),
    approvals=(PendingApproval("a1", "refund", {"order": 7}),),
    client_calls=(ClientCall("k1", "pick_color", '{"hue": 1}'),),
)


def test_a_stored_result_reads_back_as_the_same_result_marked_replayed():
    decoded = result_codec.decode(result_codec.encode(RESULT))

    assert decoded == RESULT and decoded.replayed


def test_the_stored_form_names_its_version_and_none_of_the_http_answers_fields():
    stored = result_codec.encode(RESULT)

    assert stored["v"] == result_codec.VERSION
    assert not {"sessionId", "toolCalls"} & set(stored)


def test_a_result_stored_as_the_http_answer_by_the_first_version_still_reads_back():
    legacy = RESULT.to_json()  # what version 1 stored: the answer's body, without a version

    assert result_codec.decode(legacy) == RESULT


class _Cache:
    ttl_seconds = 60

    def __init__(self, stored: dict[str, Any] | None) -> None:
        self.stored = stored

    async def find(self, *_: Any, **__: Any) -> dict[str, Any] | None:
        return self.stored

    async def record(self, *_: Any, **__: Any) -> None:
        raise AssertionError("a replay never writes")


def _record_with_key(key: str) -> SessionRecord:
    record = SessionRecord.new("s1", user_id="alice", mode="local")
    record.turns = 3
    record.commit_key(key_digest(key), "fingerprint", ttl_seconds=60)
    return record


async def test_a_replay_answers_the_stored_result():
    replayed = await replay(_record_with_key("k"), _Cache(result_codec.encode(RESULT)), "alice", "k", "fingerprint")

    assert replayed == RESULT and replayed is not None and replayed.replayed


async def test_a_result_stored_by_a_newer_version_is_answered_as_applied_and_gone():
    newer = {**result_codec.encode(RESULT), "v": result_codec.VERSION + 1}

    with pytest.raises(IdempotentResultGoneError):
        await replay(_record_with_key("k"), _Cache(newer), "alice", "k", "fingerprint")
