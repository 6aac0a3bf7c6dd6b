"""Racing turns on one session over HTTP, within one host process and across several.

Every accepted turn's user message and reply must be in the final history, in turn order;
every rejected turn gets 409 problem+json with Retry-After and leaves no trace.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import pytest

from .apphost import app_host
from .conftest import ARTIFACTS
from .fake_openai import FakeOpenAI, fake_openai_server

pytestmark = pytest.mark.integration

WAVES = 3
RACERS_PER_WAVE = 6


@pytest.fixture(scope="module")
def slow_model() -> Iterator[FakeOpenAI]:
    with fake_openai_server() as fake:
        fake.response_delay = 0.3  # keeps each accepted turn in flight while the others arrive
        yield fake


@pytest.fixture(scope="module")
def env(cosmos_env, slow_model) -> dict[str, str]:
    return {
        **cosmos_env,
        **slow_model.app_settings(),
    }


async def race(bases: list[str], session: str) -> tuple[list[dict], list[httpx.Response]]:
    accepted: list[dict] = []
    rejected: list[httpx.Response] = []
    async with httpx.AsyncClient(timeout=30) as client:
        first = await client.post(f"{bases[0]}/sessions/{session}/messages", json={"message": "opening"})
        assert first.status_code == 200
        for wave in range(WAVES):
            requests = [
                client.post(
                    f"{bases[n % len(bases)]}/sessions/{session}/messages", json={"message": f"racer {wave}.{n}"}
                )
                for n in range(RACERS_PER_WAVE)
            ]
            for response in await asyncio.gather(*requests):
                if response.status_code == 200:
                    accepted.append({**response.json(), "message": json.loads(response.request.content)["message"]})
                else:
                    rejected.append(response)
        history = await client.get(f"{bases[0]}/sessions/{session}/messages", params={"limit": "200"})
    return accepted, [history, *rejected]


def assert_no_turn_lost(accepted: list[dict], history: httpx.Response, rejected: list[httpx.Response]) -> None:
    assert accepted, "at least one racing turn must win"
    for response in rejected:
        assert response.status_code == 409, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert int(response.headers["Retry-After"]) >= 1
    texts = [m["text"] for m in history.json()["messages"]]
    expected = [texts[0], texts[1]]
    for turn in sorted(accepted, key=lambda t: t["turn"]):
        expected += [turn["message"], turn["reply"]]
    assert [t["turn"] for t in sorted(accepted, key=lambda t: t["turn"])] == list(range(2, 2 + len(accepted)))
    assert texts == expected


def test_racing_turns_in_one_process_never_lose_an_accepted_turn(env, record_property):
    session = f"race1-{uuid.uuid4().hex[:8]}"
    with app_host(env, log_path=ARTIFACTS / "apphost.log") as base:
        accepted, (history, *rejected) = asyncio.run(race([base], session))

    record_property("accepted", f"{len(accepted)} of {WAVES * RACERS_PER_WAVE}")
    print(f"one process: {len(accepted)} of {WAVES * RACERS_PER_WAVE} racing turns accepted")
    assert_no_turn_lost(accepted, history, rejected)


def test_racing_turns_across_three_processes_never_lose_an_accepted_turn(env, record_property):
    session = f"race3-{uuid.uuid4().hex[:8]}"
    with ExitStack() as stack:
        bases = [stack.enter_context(app_host(env, log_path=ARTIFACTS / "apphost.log")) for _ in range(3)]
        accepted, (history, *rejected) = asyncio.run(race(bases, session))

    record_property("accepted", f"{len(accepted)} of {WAVES * RACERS_PER_WAVE}")
    print(f"three processes: {len(accepted)} of {WAVES * RACERS_PER_WAVE} racing turns accepted")
    assert_no_turn_lost(accepted, history, rejected)
