"""Workflow runs in the browser chat page, in the real headless Chromium the chat page's tests use, against a
local host running the queue (local storage emulator), the local Cosmos DB and the offline model: the page lists
the workflows, starts a run with text, shows its steps as its events stream, and answers its request."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from devtools.devhost import running_host

from .conftest import ARTIFACTS
from .test_chat_page import browser, browser_paths, wait_for  # noqa: F401 - the browser fixtures

pytestmark = pytest.mark.integration


@pytest.fixture
def workflow_base(cosmos_env: dict[str, str], storage_env: dict[str, str]) -> Iterator[str]:
    env = {
        **cosmos_env,
        **storage_env,
        "COSMOS_DATABASE": f"chat-runs-{uuid.uuid4().hex[:8]}",
        "MODEL_PROVIDER": "offline",
        "BACKGROUND_QUEUE": f"page-{uuid.uuid4().hex[:12]}",
        "EVENTS_FLUSH_MS": "100",
        "EVENTS_POLL_MS": "100",
    }
    with running_host(env, log_path=ARTIFACTS / "chat-page-workflows-host.log", queue_lease_seconds=3) as host:
        yield host.base


def shown(driver: Any, selector: str) -> list[str]:
    return driver.execute_script(f"return [...document.querySelectorAll({selector!r})].map(e => e.textContent)")


def test_a_run_started_from_the_page_shows_its_steps_and_takes_a_text_answer_from_the_page(
    browser,  # noqa: F811 - the chat page tests' fixture
    workflow_base,
):
    from selenium.webdriver.common.by import By

    browser.get(f"{workflow_base}/chat")
    wait_for(browser, lambda d: d.find_element(By.ID, "workflows").is_displayed())
    assert shown(browser, "#workflow option") == ["support"]

    browser.find_element(By.ID, "run-input").send_keys("/handoff_to_specialist")
    browser.find_element(By.ID, "start-run").click()
    question = wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".request textarea")).pop()
    steps = shown(browser, "#messages .step")
    run_id = browser.execute_script("return new URLSearchParams(location.hash.slice(1)).get('run')")

    question.send_keys("The printer is on fire.")
    browser.find_element(By.CSS_SELECTOR, ".request button.answer").click()
    wait_for(browser, lambda d: "Run completed" in shown(d, "#messages .step[data-event=run_status]"))
    answers = shown(browser, "#messages .message.assistant")
    browser.save_screenshot(str(ARTIFACTS / "chat-page-workflow-run.png"))
    run = httpx.get(f"{workflow_base}/workflows/runs/{run_id}", timeout=30).json()

    assert steps[0] == "Run started" and "triage started" in steps and "Handoff: triage → specialist" in steps
    assert "Run awaiting input" in steps
    assert answers[-1].startswith("specialist: ") and answers[-1].endswith("The printer is on fire.")
    assert run["status"] == "completed" and run["outputs"][-1]["text"] == answers[-1].removeprefix("specialist: ")
    wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, f'#runs li[data-run-id="{run_id}"]')
             .get_attribute("data-status") == "completed")  # fmt: skip
