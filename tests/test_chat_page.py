"""The browser chat page, in a real headless Chromium against the local host and the offline model.

Chromium and its matching chromedriver come from Debian (`make test`, its `browser` target, installs them
when run as root, and so does this module when it can). Where they cannot be installed
the browser tests are skipped with the reason; in CI (`CI=true`) that is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .apphost import app_host
from .conftest import ARTIFACTS
from .fake_openai import FakeOpenAI
from .http_calls import request

pytestmark = pytest.mark.integration

WAIT_SECONDS = 20
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1200,800",
)


# --- the page route (no browser needed) ----------------------------------------------------------


async def test_the_page_route_is_anonymous_while_the_api_keeps_its_auth_level():
    import azure.functions as func

    import function_app

    registered = {f.get_function_name(): f for f in function_app.app.get_functions()}
    page_level = registered["chat_page_route"].get_trigger().auth_level
    api_level = registered["post_message_route"].get_trigger().auth_level

    assert page_level == func.AuthLevel.ANONYMOUS
    assert api_level in (None, func.AuthLevel.FUNCTION)  # None: the app's default (function)


async def test_the_page_is_html_that_keeps_its_key_out_of_referrers_and_caches(functions):
    response = await functions["chat_page_route"](request("GET", "/api/chat", user=None))

    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'sha256-" in policy and "unsafe-inline" not in policy
    assert b"/sessions" in response.body


async def test_the_page_has_an_inline_icon_that_the_policy_allows_and_nothing_else_from_elsewhere(functions):
    response = await functions["chat_page_route"](request("GET", "/api/chat", user=None))

    assert b'<link rel="icon" href="data:image/svg+xml,' in response.body
    assert "img-src 'self' data:;" in response.headers["Content-Security-Policy"]


# --- a real browser ------------------------------------------------------------------------------


def _browser_paths() -> tuple[str, str] | None:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


def _install_browser() -> None:
    """Debian's chromium and chromedriver (matching versions), when this process may use apt-get."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600, check=False)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium", "chromium-driver"],
        env=env,
        capture_output=True,
        timeout=900,
        check=False,
    )


@pytest.fixture(scope="module")
def browser_paths() -> tuple[str, str]:
    found = _browser_paths()
    if found is None:
        _install_browser()
        found = _browser_paths()
    if found is None:
        reason = (
            "chromium and chromedriver are missing and cannot be installed here (needs root and apt-get): "
            "run `sudo apt-get install chromium chromium-driver` or `make browser` as root"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


@pytest.fixture(scope="module")
def chat_base(cosmos_env: dict[str, str]) -> Iterator[str]:
    """The local host (offline model) with a database of its own, so the page lists only this test's sessions."""
    env = {**cosmos_env, "COSMOS_DATABASE": f"chat-page-{uuid.uuid4().hex[:8]}", "MODEL_PROVIDER": "offline"}
    with app_host(env, log_path=ARTIFACTS / "chat-page-host.log") as base:
        yield base


@pytest.fixture
def browser(browser_paths: tuple[str, str]) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = browser_paths
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console: CSP violations show there
    with tempfile.TemporaryDirectory(prefix="chat-page-profile-") as profile:
        options.add_argument(f"--user-data-dir={profile}")
        service = Service(executable_path=driver_path, log_output=str(ARTIFACTS / "chromedriver.log"))
        driver = webdriver.Chrome(service=service, options=options)
        try:
            yield driver
        finally:
            driver.quit()


def wait_for(driver: Any, condition: Any) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_SECONDS, poll_frequency=0.1).until(condition)


def finished_messages(driver: Any) -> list[tuple[str, str]]:
    """The conversation as shown: (role, text) of every message whose reply has finished."""
    script = (
        "return [...document.querySelectorAll('#messages .message:not(.pending)')]"
        ".map(m => [m.dataset.role, m.textContent])"
    )
    return [tuple(pair) for pair in driver.execute_script(script)]


def shows_messages(count: int) -> Any:
    """A wait condition: the finished messages once there are ``count`` of them."""

    def condition(driver: Any) -> list[tuple[str, str]] | bool:
        shown = finished_messages(driver)
        return shown if len(shown) == count else False

    return condition


def send(driver: Any, text: str, expected_count: int) -> list[tuple[str, str]]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element(By.ID, "message")
    box.send_keys(text)
    box.send_keys(Keys.ENTER)
    return wait_for(driver, shows_messages(expected_count))


def test_two_messages_get_two_replies_and_the_history_survives_a_reload(browser, chat_base):
    browser.get(f"{chat_base}/chat?code=page-test-key")

    send(browser, "Hello, I am Ada", 2)
    shown = send(browser, "What did I just tell you?", 4)

    assert [role for role, _ in shown] == ["user", "assistant", "user", "assistant"]
    assert shown[0][1] == "Hello, I am Ada" and shown[2][1] == "What did I just tell you?"
    assert "offline" in shown[1][1].lower() and "offline" in shown[3][1].lower()

    browser.refresh()
    after_reload = wait_for(browser, shows_messages(4))

    assert after_reload == shown
    browser.save_screenshot(str(ARTIFACTS / "chat-page.png"))


def test_the_function_key_is_kept_for_the_tab_and_removed_from_the_address_bar(browser, chat_base):
    browser.get(f"{chat_base}/chat?code=page-test-key")

    key = wait_for(browser, lambda d: d.execute_script("return sessionStorage.getItem('cosmos-history.function-key')"))

    assert key == "page-test-key" and "code=" not in browser.current_url


def test_the_session_list_opens_and_deletes_sessions(browser, chat_base):
    from selenium.webdriver.common.by import By

    with httpx.Client(base_url=chat_base, timeout=10) as client:
        session_id = client.post("/sessions", json={"title": "Planning the picnic"}).json()["id"]
        client.post(f"/sessions/{session_id}/messages", json={"message": "Bring apples"})
    browser.get(f"{chat_base}/chat")
    item = f'#sessions li[data-session-id="{session_id}"]'

    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, item)).pop()
    browser.find_element(By.CSS_SELECTOR, f"{item} button.open").click()
    shown = wait_for(browser, shows_messages(2))
    assert shown[0] == ("user", "Bring apples")

    browser.find_element(By.CSS_SELECTOR, f"{item} button.delete").click()
    wait_for(browser, lambda d: d.switch_to.alert).accept()
    wait_for(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, item))

    with httpx.Client(base_url=chat_base, timeout=10) as client:
        assert client.get(f"/sessions/{session_id}").status_code == 404


# The streaming API (text/event-stream) may not be deployed yet: the page must render a stream
# as it arrives. The browser's fetch answers this one request with a stream of the documented
# events, so the page's reader is what is tested here.
_STREAMING_FETCH = """
const realFetch = window.fetch;
window.fetch = async (url, init) => {
  if (!String(url).endsWith('/messages')) return realFetch(url, init);
  window.__accept = init.headers['Accept'];
  window.__key = init.headers['x-functions-key'] || null;
  const frames = %s;
  const encoder = new TextEncoder();
  const body = new ReadableStream({
    async start(controller) {
      for (const frame of frames) {
        controller.enqueue(encoder.encode(frame));
        await new Promise(resolve => setTimeout(resolve, 150));
      }
      controller.close();
    }
  });
  return new Response(body, {status: 200, headers: {'Content-Type': 'text/event-stream'}});
};
"""


def test_a_streamed_reply_is_shown_as_it_arrives(browser, chat_base):
    done = {"sessionId": "streamed", "reply": "Hello there, Ada.", "turn": 1, "mode": "local"}
    frames = [
        'event: delta\ndata: {"text": "Hello "}\n\n',
        'event: delta\ndata: {"text": "there, "}\n\nevent: delta\ndata: {"text": "Ada."}\n\n',
        f"event: done\ndata: {json.dumps(done)}\n\n",
    ]
    browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": _STREAMING_FETCH % json.dumps(frames)})
    browser.get(f"{chat_base}/chat?code=stream-key")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = wait_for(browser, lambda d: d.find_element(By.ID, "message"))
    box.send_keys("Hi, I am Ada", Keys.ENTER)
    partial = wait_for(
        browser,
        lambda d: d.execute_script(
            "const m = document.querySelector('#messages .message.assistant.pending');"
            "return m && m.textContent.length ? m.textContent : null"
        ),
    )
    shown = wait_for(browser, shows_messages(2))

    assert partial.startswith("Hello") and partial != done["reply"], "the first words appear before the rest"
    assert shown == [("user", "Hi, I am Ada"), ("assistant", "Hello there, Ada.")]
    assert browser.execute_script("return window.__accept").startswith("text/event-stream")
    assert browser.execute_script("return window.__key") == "stream-key"


def test_a_tool_call_waiting_for_approval_is_approved_by_a_click_and_its_tool_runs(browser, chat_base):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(f"{chat_base}/chat?code=page-test-key")
    box = browser.find_element(By.ID, "message")
    box.send_keys('/schedule_reminder {"text": "water the plants", "at": "2026-12-24T08:00"}')
    box.send_keys(Keys.ENTER)

    approve = wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".approval button.approve"))
    assert "schedule_reminder" in browser.find_element(By.CSS_SELECTOR, ".approval span").text
    approve[0].click()
    shown = wait_for(browser, shows_messages(2))

    assert "Reminder 1 scheduled for 2026-12-24T08:00" in shown[1][1]
    assert not browser.find_elements(By.CSS_SELECTOR, ".approvals")
    tool_lines = [line.text for line in browser.find_elements(By.CSS_SELECTOR, ".tool")]
    assert any("Reminder 1 scheduled" in line for line in tool_lines), tool_lines
    live = [e.get_attribute("data-type") for e in browser.find_elements(By.CSS_SELECTOR, ".tool")]
    assert live == ["tool_call", "tool_result"], "the turn continued after approval does not repeat the call"

    browser.refresh()
    kinds = wait_for(
        browser,
        lambda d: [e.get_attribute("data-type") for e in d.find_elements(By.CSS_SELECTOR, ".tool")] or False,
    )
    assert kinds == ["tool_call", "approval_request", "approval_response", "tool_result"]
    browser.save_screenshot(str(ARTIFACTS / "chat-page-approval.png"))


# --- the agent picker (a host serving two agents) -------------------------------------------------------


@pytest.fixture(scope="module")
def two_agents_base(cosmos_env: dict[str, str]) -> Iterator[str]:
    """The local host serving the sample agents (assistant, the default, and helper) with the offline model."""
    env = {
        **cosmos_env,
        "COSMOS_DATABASE": f"chat-agents-{uuid.uuid4().hex[:8]}",
        "MODEL_PROVIDER": "offline",
        "AGENTS_PACKAGE": "tests.sample_agents",
    }
    with app_host(env, log_path=ARTIFACTS / "chat-page-agents-host.log") as base:
        yield base


def test_a_new_conversation_talks_to_the_agent_picked_and_each_conversation_shows_its_agent(browser, two_agents_base):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(f"{two_agents_base}/chat?code=page-test-key")
    picker = wait_for(
        browser,
        lambda d: d.find_element(By.ID, "agent") if d.find_elements(By.CSS_SELECTOR, "#agent option") else False,
    )
    assert [o.text for o in Select(picker).options] == ["assistant", "helper"]
    assert Select(picker).first_selected_option.text == "assistant", "the default agent is preselected"

    Select(picker).select_by_value("helper")
    shown = send(browser, '/add {"a": 2, "b": 3}', 2)

    assert "add returned 5" in shown[1][1]
    assert not browser.find_element(By.ID, "agent-picker").is_displayed(), "a started conversation keeps its agent"
    assert browser.find_element(By.ID, "mode").text.startswith("helper · local history · 1 turn")
    session_id = browser.execute_script("return new URLSearchParams(location.hash.slice(1)).get('s')")
    with httpx.Client(base_url=two_agents_base, timeout=10, headers={"x-functions-key": "page-test-key"}) as client:
        assert client.get(f"/sessions/{session_id}").json()["agent"] == "helper"
        other = client.post("/sessions", json={"title": "Default one"}).json()["id"]
        client.post(f"/sessions/{other}/messages", json={"message": "hello"})

    browser.find_element(By.ID, "new-session").click()
    assert browser.find_element(By.ID, "agent-picker").is_displayed()
    browser.refresh()
    items = wait_for(
        browser,
        lambda d: (
            len(d.find_elements(By.CSS_SELECTOR, "#sessions li")) == 2
            and d.find_elements(By.CSS_SELECTOR, "#sessions li")
        ),
    )
    metas = {i.get_attribute("data-session-id"): i.find_element(By.CSS_SELECTOR, ".meta").text for i in items}
    assert metas[session_id].startswith("helper · 1 turn") and metas[other].startswith("assistant · 1 turn")
    errors = [entry["message"] for entry in browser.get_log("browser") if "Content Security Policy" in entry["message"]]
    assert errors == [], errors
    browser.save_screenshot(str(ARTIFACTS / "chat-page-agents.png"))


def test_a_tool_call_whose_outcome_is_unknown_after_a_crash_is_shown_as_unknown(browser, chat_base):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    unknown = "Outcome unknown: this tool call had started when the service stopped."
    ring = {"id": "c1", "name": "ring", "arguments": {"times": 1}, "result": unknown, "status": "unknown"}
    notify = {"id": "c0", "name": "notify", "arguments": None, "result": unknown, "status": "unknown"}
    done = {"sessionId": "crashed", "reply": "I could not tell.", "turn": 2, "mode": "local", "agent": "ledger"}
    done |= {"status": "completed", "toolCalls": [ring, notify], "approvals": []}
    frames = [
        f"event: tool_call\ndata: {json.dumps({k: ring[k] for k in ('id', 'name', 'arguments')})}\n\n",
        f"event: tool_result\ndata: {json.dumps({k: ring[k] for k in ('id', 'result', 'status')})}\n\n",
        'event: delta\ndata: {"text": "I could not tell."}\n\n',
        f"event: done\ndata: {json.dumps(done)}\n\n",
    ]
    browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": _STREAMING_FETCH % json.dumps(frames)})
    browser.get(f"{chat_base}/chat?code=stream-key")
    box = wait_for(browser, lambda d: d.find_element(By.ID, "message"))
    box.send_keys("/ring", Keys.ENTER)
    wait_for(browser, shows_messages(2))

    lines = [e.text for e in browser.find_elements(By.CSS_SELECTOR, '.tool[data-status="unknown"]')]
    assert len(lines) == 2 and all(line.startswith("Tool outcome unknown") and unknown in line for line in lines)


# --- durable turns: reattach after a reload, Stop ----------------------------------------------------


@pytest.fixture(scope="module")
def slow_base(cosmos_env: dict[str, str], fake_model: FakeOpenAI) -> Iterator[str]:
    """The local host on the fake OpenAI service, whose replies can stream slowly."""
    env = {
        **cosmos_env,
        "COSMOS_DATABASE": f"chat-durable-{uuid.uuid4().hex[:8]}",
        **fake_model.app_settings(),
        "EVENTS_FLUSH_MS": "100",
        "EVENTS_POLL_MS": "100",
    }
    try:
        with app_host(env, log_path=ARTIFACTS / "chat-page-durable-host.log") as base:
            yield base
    finally:
        fake_model.pause_after = None
        fake_model.released.set()


def partial_reply(driver: Any) -> str | None:
    return driver.execute_script(
        "const m = document.querySelector('#messages .message.assistant.pending');"
        "return m && m.textContent.length ? m.textContent : null"
    )


def test_a_reload_reattaches_to_the_running_reply_which_keeps_appearing(browser, slow_base, fake_model):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    fake_model.pause_after, fake_model.released = 3, threading.Event()  # the reply stops after three words
    browser.get(f"{slow_base}/chat?code=page-test-key")
    box = wait_for(browser, lambda d: d.find_element(By.ID, "message"))
    box.send_keys("please write a reply of a good many words", Keys.ENTER)
    wait_for(browser, partial_reply)
    session_id = browser.execute_script("return new URLSearchParams(location.hash.slice(1)).get('s')")

    browser.refresh()
    reattached = wait_for(browser, partial_reply)  # the reply shows again while it is still being written
    fake_model.released.set()
    shown = wait_for(browser, shows_messages(2))

    with httpx.Client(base_url=slow_base, timeout=10) as client:
        stored = client.get(f"/sessions/{session_id}").json()["messages"]
    assert shown == [(m["role"], m["text"]) for m in stored]
    assert stored[1]["text"].startswith(reattached) and reattached != stored[1]["text"]


def test_the_stop_button_cancels_the_running_turn_and_the_next_message_works(browser, slow_base, fake_model):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    fake_model.pause_after, fake_model.released = 1, threading.Event()  # never released: only Stop ends it
    browser.get(f"{slow_base}/chat?code=page-test-key")
    box = wait_for(browser, lambda d: d.find_element(By.ID, "message"))
    box.send_keys("a long story please", Keys.ENTER)
    wait_for(browser, partial_reply)
    stop = browser.find_element(By.ID, "stop")
    assert stop.is_displayed()
    stop.click()
    status = wait_for(browser, lambda d: "cancelled" in d.find_element(By.ID, "status").text and d)
    fake_model.pause_after = None
    session_id = browser.execute_script("return new URLSearchParams(location.hash.slice(1)).get('s')")

    assert not status.find_element(By.ID, "stop").is_displayed()
    with httpx.Client(base_url=slow_base, timeout=10) as client:
        assert client.get(f"/sessions/{session_id}/turns/1").json()["status"] == "cancelled"
    shown = send(browser, "and now a short one", 3)
    assert shown[-1][0] == "assistant" and "and now a short one" in shown[-1][1]
