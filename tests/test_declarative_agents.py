"""Agents declared in YAML (``agents/<name>.yaml``, agent-framework-declarative's format): found, listed and
served like Python agents, on the app's model, with the app's tools by name and MCP servers; a broken file
is a start-up error naming it."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from cosmos_history import build_agents, load_settings, run_turn
from cosmos_history.adapters.memory import MemorySessions
from cosmos_history.agents.discovery import AgentLoadError
from cosmos_history.domain.errors import AgentsUnavailableError
from cosmos_history.models.offline import OfflineChatClient
from cosmos_history.runtime import LazyRuntime

from .apphost import app_host
from .conftest import ARTIFACTS, ROOT
from .fakes import RecordingChatClient

YAML_AGENTS = {"AGENTS_PACKAGE": "tests.yaml_agents"}
USER = {"x-user-id": "yaml-user"}
EXAMPLE = ROOT / "tests" / "yaml_agents" / "planner.yaml"
_packages = itertools.count()


def yaml_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, name: str = "declared") -> str:
    """A new agents package holding the shipped ``assistant`` (whose tools YAML agents name) and one YAML file."""
    package = f"yaml_agents_under_test_{next(_packages)}"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / "assistant.py").write_text("from agents.assistant import create_agent\n")
    (tmp_path / package / f"{name}.yaml").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    return package


@pytest.mark.integration
def test_a_yaml_agent_is_listed_chats_and_calls_the_apps_tools_over_http(cosmos_env):
    env = {**cosmos_env, **YAML_AGENTS, "MODEL_PROVIDER": "offline"}
    reminder = '/schedule_reminder {"text": "call Ada", "at": "2026-12-01T09:00"}'
    with app_host(env, log_path=ARTIFACTS / "apphost-yaml.log") as base:
        listed = httpx.get(f"{base}/agents", headers=USER).json()
        said = post(base, "/sessions/yaml-chat/messages", {"message": "Hello", "agent": "planner"})
        timed = post(base, "/sessions/yaml-chat/messages", {"message": '/current_time {"time_zone": "UTC"}'})
        waiting = post(base, "/sessions/yaml-chat/messages", {"message": reminder})
        answer = {"approvals": [{"id": waiting["approvals"][0]["id"], "approved": True}]}
        done = post(base, "/sessions/yaml-chat/approvals", answer)

    planner = next(a for a in listed["agents"] if a["name"] == "planner")
    assert planner["description"].startswith("Plans the day")
    tools = {t["name"]: t["approvalRequired"] for t in planner["tools"]}
    assert tools == {"current_time": False, "schedule_reminder": True, "ask_assistant": False}
    assert said["agent"] == "planner" and said["reply"].startswith("[offline demo model]")
    assert [c["name"] for c in timed["toolCalls"]] == ["current_time"] and "T" in timed["toolCalls"][0]["result"]
    assert waiting["status"] == "awaiting_approval"
    assert done["toolCalls"][0]["result"] == "Reminder 1 scheduled for 2026-12-01T09:00."


def post(base: str, path: str, body: dict) -> dict:
    response = httpx.post(f"{base}{path}", json=body, headers=USER, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_yaml_agents_instructions_and_model_options_reach_the_apps_model():
    model = RecordingChatClient()
    agents = build_agents(load_settings(YAML_AGENTS), model)

    await run_turn(MemorySessions(user_id="u"), agents, session_id="s", message="plan my day", agent="planner")

    sent = model.options[-1]
    assert sent["temperature"] == 0.2 and sent["top_p"] == 0.9
    assert "You plan the person's day." in str(sent.get("instructions"))
    assert agents["planner"].sampling() == {"temperature": 0.2, "top_p": 0.9}


async def test_a_yaml_agent_delegates_to_another_agent_named_in_its_tools():
    store = MemorySessions(user_id="u")
    agents = build_agents(load_settings(YAML_AGENTS), OfflineChatClient())

    done = await run_turn(store, agents, session_id="s", message='/ask_assistant {"task": "hi"}', agent="planner")

    assert [c.name for c in done.tool_calls] == ["ask_assistant"] and "You said: hi" in done.tool_calls[0].result


async def test_a_yaml_agents_mcp_server_is_used_with_its_approval_mode(tmp_path, monkeypatch, mcp):
    source = f"""kind: Prompt
name: counter
tools:
  - kind: mcp
    name: tools
    url: {mcp.url}
    approvalMode:
      kind: specify
      alwaysRequireApprovalTools: [archive_record]
"""
    package = yaml_package(tmp_path, monkeypatch, source, "counter")
    agents = build_agents(load_settings({"AGENTS_PACKAGE": package}), OfflineChatClient())
    store = MemorySessions(user_id="u")

    counted = await run_turn(store, agents, session_id="c", message='/word_count {"text": "a b"}', agent="counter")
    archive = '/archive_record {"record_id": "r-9"}'
    waiting = await run_turn(store, agents, session_id="c", message=archive, agent="counter")
    for server in agents["counter"].by_mode["local"].mcp_tools:
        await server.close()

    assert [c.name for c in counted.tool_calls] == ["word_count"] and "2" in counted.tool_calls[0].result
    assert [a.name for a in waiting.approvals] == ["archive_record"]
    assert ("archive_record", {"record_id": "r-9"}) not in mcp.calls


BROKEN = [
    ("kind: Prompt\nname: [unclosed\n", "is not a readable YAML file"),
    ("- just\n- a list\n", "must hold one agent definition"),
    ("kind: Workflow\nname: x\n", "kind must be Prompt"),
    ("kind: Prompt\nmodel:\n  id: gpt-4o\n", "model.id is not allowed"),
    ("kind: Prompt\nmodel:\n  connection:\n    kind: key\n    key: secret\n", "model.connection is not allowed"),
    ("kind: Prompt\ninstructions: =Env.SECRET\n", "instructions is a PowerFx expression"),
    ("kind: Prompt\ntools:\n  - kind: function\n    name: no_such_tool\n", "'no_such_tool', not a tool of the app"),
    ("kind: Prompt\ntools:\n  - kind: agent\n    name: nobody\n", "delegates to 'nobody', not an agent"),
    ("kind: Prompt\ntools:\n  - kind: web_search\n    name: web\n", "tools[0].kind must be one of"),
    ("kind: Prompt\ntools:\n  - kind: mcp\n    name: m\n    url: ftp://x\n", "tools[0].url must be"),
    ("kind: Prompt\ntools:\n  - kind: mcp\n    name: m\n    url: http://x\n    approvalMode: maybe\n", "approvalMode"),
]


@pytest.mark.parametrize(("source", "says"), BROKEN)
def test_a_broken_yaml_agent_is_a_start_up_error_naming_the_file_and_the_problem(tmp_path, monkeypatch, source, says):
    package = yaml_package(tmp_path, monkeypatch, source)

    with pytest.raises(AgentLoadError) as raised:
        build_agents(load_settings({"AGENTS_PACKAGE": package}), RecordingChatClient())

    assert str(tmp_path / package / "declared.yaml") in str(raised.value) and says in str(raised.value)


def test_a_yaml_file_and_a_module_of_one_name_are_a_start_up_error(tmp_path, monkeypatch):
    package = yaml_package(tmp_path, monkeypatch, "kind: Prompt\n", "assistant")

    with pytest.raises(AgentLoadError, match=r"assistant\.yaml: another file already defines the agent 'assistant'"):
        build_agents(load_settings({"AGENTS_PACKAGE": package}), RecordingChatClient())


async def test_a_broken_yaml_agent_makes_every_request_answer_503_naming_it(tmp_path, monkeypatch):
    package = yaml_package(tmp_path, monkeypatch, "kind: Prompt\nmodel:\n  id: gpt-4o\n")
    source = LazyRuntime(load_settings({"AGENTS_PACKAGE": package}), telemetry=False)

    assert source.load_agents() is False
    with pytest.raises(AgentsUnavailableError) as raised:
        await source.get()

    assert "declared.yaml: model.id is not allowed" in str(raised.value)


@pytest.mark.parametrize(("package", "imported"), [("agents", False), ("tests.yaml_agents", True)])
def test_the_declarative_package_is_imported_only_when_a_yaml_agent_exists(package, imported):
    script = (
        "import sys\n"
        "from cosmos_history import build_agents, load_settings\n"
        "from cosmos_history.models.offline import OfflineChatClient\n"
        f"build_agents(load_settings({{'AGENTS_PACKAGE': {package!r}}}), OfflineChatClient())\n"
        "print('agent_framework_declarative' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)

    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{imported}\n", "nothing else printed (powerfx's import notice is kept out)"


def test_the_readme_shows_the_example_yaml_agent_as_shipped_in_the_tests():
    readme = (ROOT / "README.md").read_text()
    example = EXAMPLE.read_text().split("\n", 1)[1]  # without its first comment line

    assert example in readme
