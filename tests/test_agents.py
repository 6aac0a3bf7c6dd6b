"""The app's agents: found in their package, one per module, with tools, approvals and bounded tool rounds."""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path

import httpx
import pytest
from agent_framework import Message

from cosmos_history import build_agents, load_settings, run_turn
from cosmos_history.agents.discovery import AgentLoadError
from cosmos_history.domain.errors import (
    AgentMismatchError,
    AgentNotFoundError,
    ApprovalPendingError,
    ApprovalUnknownError,
    SessionNotFoundError,
    SettingsError,
    ValidationError,
)

from .apphost import app_host
from .fakes import RecordingChatClient
from .http_calls import request

SAMPLE = {"AGENTS_PACKAGE": "tests.sample_agents"}
_packages = itertools.count()


@pytest.fixture
def sample_agents(offline_model: RecordingChatClient):
    return build_agents(load_settings(SAMPLE), offline_model)


def test_every_module_of_the_agents_package_is_an_agent_named_after_it(sample_agents):
    assert sorted(sample_agents) == ["assistant", "helper"]
    assert sample_agents.resolve(None).name == "assistant"
    assert [t.name for t in sample_agents["helper"].tools()] == ["add", "flaky"]
    assert {t.name: t.approval_required for t in sample_agents["assistant"].tools()}["schedule_reminder"] is True


def agent_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, module: str = "broken") -> str:
    """A new agents package holding one module with ``source``, importable here; returns the package name."""
    name = agent_package_dir(tmp_path, source, module)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def agent_package_dir(tmp_path: Path, source: str, module: str = "broken") -> str:
    """A new agents package in ``tmp_path`` holding one module with ``source``; returns the package name."""
    name = f"agents_under_test_{next(_packages)}"
    (tmp_path / name).mkdir()
    (tmp_path / name / "__init__.py").write_text("")
    (tmp_path / name / f"{module}.py").write_text(source)
    return name


@pytest.mark.parametrize(
    ("source", "says"),
    [
        ("def create_agent(client:\n", "cannot be imported"),
        ("AGENT = None\n", "defines no create_agent"),
        ("def create_agent(client):\n    return 'not an agent'\n", "returned str"),
        ("def create_agent(client):\n    raise KeyError('MISSING_SETTING')\n", "create_agent(client) failed"),
    ],
)
def test_a_broken_agent_module_is_a_start_up_error_that_names_its_file(tmp_path, monkeypatch, source, says):
    package = agent_package(tmp_path, monkeypatch, source)

    with pytest.raises(AgentLoadError) as raised:
        build_agents(load_settings({"AGENTS_PACKAGE": package, "DEFAULT_AGENT": "broken"}), RecordingChatClient())

    assert str(tmp_path / package / "broken.py") in str(raised.value) and says in str(raised.value)


def test_a_module_name_that_is_not_an_agent_name_is_a_start_up_error(tmp_path, monkeypatch):
    package = agent_package(tmp_path, monkeypatch, "def create_agent(client): ...\n", module="MyAgent")

    with pytest.raises(AgentLoadError, match=r"MyAgent\.py"):
        build_agents(load_settings({"AGENTS_PACKAGE": package}), RecordingChatClient())


def test_a_default_agent_that_does_not_exist_is_a_start_up_error():
    with pytest.raises(SettingsError, match="DEFAULT_AGENT names 'nobody'"):
        build_agents(load_settings({**SAMPLE, "DEFAULT_AGENT": "nobody"}), RecordingChatClient())


async def test_an_unknown_agent_is_not_found_and_never_falls_back_to_another(
    memory_store, sample_agents, offline_model
):
    with pytest.raises(AgentNotFoundError):
        await run_turn(memory_store, sample_agents, session_id="s1", message="hi", agent="nobody")

    assert await memory_store.load("s1") is None and offline_model.calls == []


async def test_a_session_keeps_its_agent_and_a_turn_naming_another_is_refused(
    memory_store, sample_agents, offline_model
):
    first = await run_turn(memory_store, sample_agents, session_id="s1", message="hi", agent="helper")

    with pytest.raises(AgentMismatchError):
        await run_turn(memory_store, sample_agents, session_id="s1", message="again", agent="assistant")
    later = await run_turn(memory_store, sample_agents, session_id="s1", message="and again")

    assert first.agent == later.agent == "helper" and (await memory_store.load("s1")).agent == "helper"


async def test_a_tool_that_raises_gives_the_model_the_error_and_the_turn_completes(
    memory_store, sample_agents, offline_model
):
    offline_model.tool_call = ("flaky", {})

    result = await run_turn(memory_store, sample_agents, session_id="s1", message="try it", agent="helper")

    assert result.status == "completed" and result.turn == 1
    assert [c.name for c in result.tool_calls] == ["flaky"] and "Error" in str(result.tool_calls[0].result)
    sent_back = [c for m in offline_model.calls[-1] for c in m.contents if c.type == "function_result"]
    assert len(sent_back) == 1 and sent_back[0].exception


def test_each_tool_lists_the_json_schema_of_its_parameters_as_the_model_is_sent_it(sample_agents):
    add = next(t for t in sample_agents["helper"].tools() if t.name == "add")

    assert add.parameters is not None and add.parameters["required"] == ["a", "b"]
    assert {name: field["type"] for name, field in add.parameters["properties"].items()} == {
        "a": "integer",
        "b": "integer",
    }


@pytest.mark.parametrize(
    ("arguments", "named"),
    [({"a": 1}, "missing b"), ({"a": "two", "b": 3}, "a: Input should be a valid integer"), ({}, "missing a, b")],
)
async def test_a_tool_called_with_invalid_arguments_tells_the_model_briefly_which_fields_to_fix(
    memory_store, sample_agents, offline_model, arguments, named
):
    offline_model.tool_call = ("add", arguments)

    result = await run_turn(memory_store, sample_agents, session_id="s1", message="add them", agent="helper")

    sent_back = [c for m in offline_model.calls[-1] for c in m.contents if c.type == "function_result"]
    told = sent_back[0].result
    assert isinstance(told, str) and sent_back[0].exception is None
    assert named in told and told.startswith("Error: invalid arguments for add:")
    assert "pydantic" not in told and "http" not in told and len(told) < 300
    assert result.tool_calls[0].result == told, "the API shows what the model was told"


async def test_the_tool_rounds_of_one_turn_are_bounded_by_max_tool_rounds(memory_store, offline_model):
    sample_agents = build_agents(load_settings({**SAMPLE, "MAX_TOOL_ROUNDS": "3"}), offline_model)
    offline_model.tool_call, offline_model.tool_call_always = ("add", {"a": 1, "b": 2}), True

    await run_turn(memory_store, sample_agents, session_id="s1", message="loop", agent="helper")

    assert 3 <= len(offline_model.calls) <= 3 + 1


async def approval_waiting(memory_store, sample_agents, offline_model) -> str:
    offline_model.tool_call = ("schedule_reminder", {"text": "tea", "at": "2026-12-01T16:00"})
    waiting = await run_turn(memory_store, sample_agents, session_id="s1", message="remind me")
    offline_model.tool_call = None
    assert waiting.status == "awaiting_approval" and waiting.reply == ""
    return waiting.approvals[0].id


async def test_a_message_while_an_approval_is_pending_is_refused_and_changes_nothing(
    memory_store, sample_agents, offline_model
):
    await approval_waiting(memory_store, sample_agents, offline_model)
    before = await memory_store.load("s1")

    with pytest.raises(ApprovalPendingError):
        await run_turn(memory_store, sample_agents, session_id="s1", message="hello?")

    assert (await memory_store.load("s1")).etag == before.etag and len(offline_model.calls) == 1


@pytest.mark.parametrize("answers", [[("forged", True)], [("{pending}", True), ("forged", False)]])
async def test_an_approval_id_that_is_not_pending_is_refused(memory_store, sample_agents, offline_model, answers):
    approval = await approval_waiting(memory_store, sample_agents, offline_model)
    answers = [(approval if a == "{pending}" else a, ok) for a, ok in answers]

    with pytest.raises(ApprovalUnknownError):
        await run_turn(memory_store, sample_agents, session_id="s1", message="", approvals=answers)


async def test_answers_that_leave_a_pending_approval_open_or_repeat_one_are_invalid(
    memory_store, sample_agents, offline_model
):
    approval = await approval_waiting(memory_store, sample_agents, offline_model)

    with pytest.raises(ValidationError, match="twice"):
        await run_turn(
            memory_store, sample_agents, session_id="s1", message="", approvals=[(approval, True), (approval, False)]
        )


async def test_the_call_that_runs_is_the_stored_one_whatever_the_client_claims(
    memory_store, sample_agents, offline_model
):
    approval = await approval_waiting(memory_store, sample_agents, offline_model)

    done = await run_turn(memory_store, sample_agents, session_id="s1", message="", approvals=[(approval, True)])

    assert [(c.name, c.arguments) for c in done.tool_calls] == [
        ("schedule_reminder", {"text": "tea", "at": "2026-12-01T16:00"})
    ]
    session = (await memory_store.load("s1")).session
    assert session.state["reminders"] == [{"text": "tea", "at": "2026-12-01T16:00"}]
    assert isinstance(offline_model.calls[-1][-1], Message) and offline_model.calls[-1][-1].role == "tool"


async def test_answering_approvals_of_a_session_that_does_not_exist_is_not_found(
    memory_store, sample_agents, offline_model
):
    with pytest.raises(SessionNotFoundError):
        await run_turn(memory_store, sample_agents, session_id="nowhere", message="", approvals=[("a1", True)])

    assert await memory_store.load("nowhere") is None and offline_model.calls == []


# --- a broken agent module at start-up --------------------------------------------------------------

BROKEN = "def create_agent(client):\n    raise KeyError('MISSING_SETTING')\n"


def test_a_broken_agent_module_is_logged_once_at_start_up_and_every_api_request_answers_503_naming_it(
    tmp_path, cosmos_env
):
    package = agent_package_dir(tmp_path, BROKEN)
    broken = str(tmp_path / package / "broken.py")
    env = {**cosmos_env, "AGENTS_PACKAGE": package, "DEFAULT_AGENT": "broken", "PYTHONPATH": str(tmp_path)}
    log = tmp_path / "host.log"

    with app_host(env, log_path=log, ready=lambda status: status == 503) as base:
        health = httpx.get(f"{base}/health")
        sessions = httpx.get(f"{base}/sessions")
        turn = httpx.post(f"{base}/sessions/s1/messages", json={"message": "hi"})
        page = httpx.get(f"{base}/chat")
        logged = log.read_text()

    assert health.status_code == 503 and health.headers["content-type"] == "application/problem+json"
    problem = health.json()
    assert problem["type"].endswith(":agents-unavailable") and "Retry-After" not in health.headers
    assert broken in problem["detail"] and "KeyError('MISSING_SETTING')" in problem["detail"]
    assert [sessions.status_code, turn.status_code] == [503, 503] and sessions.json() == problem == turn.json()
    assert page.status_code == 200, "pages that need no agent still work"
    lines = logged.splitlines()
    errors = [n for n, line in enumerate(lines) if " ERROR " in line]
    serving = next(n for n, line in enumerate(lines) if "Serving function_app" in line)
    assert len(errors) == 1 and broken in lines[errors[0]] and "MISSING_SETTING" in lines[errors[0]], logged
    assert errors[0] < serving, "logged as the app starts, before any request"
    assert "Unhandled" not in logged


async def test_the_function_app_loads_its_agents_when_it_is_built_and_health_names_the_broken_one(
    tmp_path, monkeypatch, caplog
):
    import function_app
    from cosmos_history import create_app

    package = agent_package(tmp_path, monkeypatch, BROKEN)
    settings = load_settings({"AGENTS_PACKAGE": package, "DEFAULT_AGENT": "broken"})

    with caplog.at_level(logging.ERROR, logger="cosmos_history"):
        app = create_app(function_app.ROUTES, settings=settings)  # what function_app.py does at import
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
    functions = {f.get_function_name(): f.get_user_function() for f in app.get_functions()}
    health = await functions["health_route"](request("GET", "/api/health"))
    again = await functions["health_route"](request("GET", "/api/health"))

    assert len(logged) == 1 and "broken.py" in logged[0].getMessage(), "logged once, when the app is built"
    assert health.status_code == again.status_code == 503
    assert "create_agent(client) failed: KeyError('MISSING_SETTING')" in json.loads(health.body)["detail"]
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == logged, "not again per request"
