"""The default agent uses a remote MCP server's tools through the framework's streamable-HTTP MCP tool, with
approvals over the same API as local tools, against a real MCP server the test starts."""

from __future__ import annotations

import json

import httpx
import pytest

from .apphost import app_host
from .conftest import ARTIFACTS

pytestmark = pytest.mark.integration

USER = {"x-user-id": "mcp-user"}


@pytest.fixture(scope="module")
def mcp_env(cosmos_env, mcp) -> dict[str, str]:
    return {
        **cosmos_env,
        "MODEL_PROVIDER": "offline",
        "MCP_SERVER_URL": mcp.url,
        "MCP_SERVER_HEADERS": json.dumps({"x-api-key": "mcp-test-key"}),
        "MCP_TOOLS_REQUIRING_APPROVAL": "archive_record",
    }


def say(base: str, session: str, message: str) -> dict:
    response = httpx.post(f"{base}/sessions/{session}/messages", json={"message": message}, headers=USER, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def test_an_mcp_tool_without_approval_runs_in_the_turn_with_the_configured_headers(mcp_env, mcp):
    with app_host(mcp_env, log_path=ARTIFACTS / "apphost-mcp.log") as base:
        done = say(base, "mcp-count", '/word_count {"text": "one two three"}')
        listed = httpx.get(f"{base}/agents", headers=USER).json()

    assert done["status"] == "completed"
    assert [(c["name"], c["arguments"]) for c in done["toolCalls"]] == [("word_count", {"text": "one two three"})]
    assert "3" in done["toolCalls"][0]["result"]
    assert ("word_count", {"text": "one two three"}) in mcp.calls
    assert all(h.get("x-api-key") == "mcp-test-key" for h in mcp.headers)
    tools = {t["name"]: t["approvalRequired"] for t in listed["agents"][0]["tools"]}
    assert tools["word_count"] is False and tools["archive_record"] is True


def test_an_mcp_tool_that_needs_approval_runs_once_after_it_is_approved_in_another_process(mcp_env, mcp):
    with app_host(mcp_env, log_path=ARTIFACTS / "apphost-mcp.log") as base:
        waiting = say(base, "mcp-archive", '/archive_record {"record_id": "r-7"}')
    assert waiting["status"] == "awaiting_approval" and waiting["approvals"][0]["name"] == "archive_record"
    assert ("archive_record", {"record_id": "r-7"}) not in mcp.calls

    approval = {"approvals": [{"id": waiting["approvals"][0]["id"], "approved": True}]}
    with app_host(mcp_env, log_path=ARTIFACTS / "apphost-mcp.log") as base:
        done = httpx.post(f"{base}/sessions/mcp-archive/approvals", json=approval, headers=USER, timeout=60)
        again = httpx.post(f"{base}/sessions/mcp-archive/approvals", json=approval, headers=USER, timeout=60)

    assert done.status_code == 200 and "record r-7 archived" in done.json()["toolCalls"][0]["result"]
    assert again.status_code == 409
    assert mcp.calls.count(("archive_record", {"record_id": "r-7"})) == 1
