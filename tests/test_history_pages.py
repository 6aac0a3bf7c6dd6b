"""``GET /api/sessions/{id}/messages`` pages count the entries they return: ``limit``, ``total``, ``before``
and ``index`` are all entry counts, across the document window and the archive, each entry its own index."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from cosmos_history import Runtime, build_agents, build_runtime, load_settings, run_turn

from .apphost import registered_functions
from .fakes import RecordingChatClient
from .http_calls import call, request

pytestmark = pytest.mark.integration


@pytest.fixture
async def small_window(cosmos_env) -> AsyncIterator[Runtime]:
    """A runtime whose documents keep few messages, so a short conversation already reaches the archive."""
    settings = load_settings({**cosmos_env, "MAX_HISTORY_MESSAGES": "6", "HISTORY_COMPACTION": "none"})
    built = await build_runtime(settings, agents=build_agents(settings, RecordingChatClient()))
    yield built
    await built.close()


async def tool_conversation(runtime: Runtime, session_id: str) -> None:
    """Turns whose messages hold several entries each: tool calls, results, approval requests and answers."""
    store = runtime.store.for_user("alice")
    model = runtime.agents["assistant"].by_mode["local"].client
    assert isinstance(model, RecordingChatClient)

    async def turn(message: str, **options: Any):
        return await run_turn(
            store,
            runtime.agents,
            session_id=session_id,
            message=message,
            guards=runtime.guards,
            policy=runtime.policy,
            **options,
        )

    for number in range(3):
        model.tool_call = ("schedule_reminder", {"text": f"call Ada {number}", "at": "2026-12-01T09:00"})
        waiting = await turn(f"remind me {number}")
        model.tool_call = None
        await turn("", approvals=[(waiting.approvals[0].id, True)])
        model.tool_call = ("remember_note", {"note": f"note {number}"})
        await turn(f"remember {number}")
    model.tool_call = None


async def page(functions: dict[str, Any], session_id: str, *, limit: int, before: int | None) -> dict[str, Any]:
    params = {"limit": str(limit)} | ({"before": str(before)} if before is not None else {})
    status, body, _ = await call(
        functions, "list_messages_route", request("GET", "/", route={"id": session_id}, params=params)
    )
    assert status == 200, body
    return body


async def test_history_pages_count_entries_each_with_its_own_index_across_the_archive(small_window, session_id):
    await tool_conversation(small_window, session_id)
    record = await small_window.store.for_user("alice").load(session_id)
    assert record is not None and record.archive.count > 0, "the conversation must reach the archive"
    functions = registered_functions(small_window)
    everything = await page(functions, session_id, limit=200, before=None)

    pages, before = [], None
    for _ in range(100):  # bounded: the conversation has far fewer entries
        body = await page(functions, session_id, limit=4, before=before)
        pages.insert(0, body)
        before = body["before"]
        if before is None:
            break

    entries = [entry for body in pages for entry in body["messages"]]
    assert everything["before"] is None and len(everything["messages"]) == everything["total"]
    assert [e["index"] for e in everything["messages"]] == list(range(everything["total"]))
    assert all(len(body["messages"]) <= 4 for body in pages)
    assert all(body["total"] == everything["total"] for body in pages)
    assert entries == everything["messages"]
    assert [p["before"] for p in pages[1:]] == [p["messages"][0]["index"] for p in pages[1:]]
    kinds = [e.get("type", "text") for e in entries]
    assert {"tool_call", "approval_request", "approval_response", "tool_result"} <= set(kinds)
