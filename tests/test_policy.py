"""The history policy is the domain's (#27 seam 4): the runtime builds it once from settings, the turn service
and the session store apply it, and the repository underneath stores what it is given, whatever the policy."""

from __future__ import annotations

from agent_framework import AgentSession

from cosmos_history import load_settings
from cosmos_history.domain.archive import history_messages
from cosmos_history.domain.budget import HistoryBudget
from cosmos_history.domain.policy import HistoryPolicy
from cosmos_history.domain.results import TurnRequest
from cosmos_history.domain.service import Turns
from cosmos_history.domain.session_store import RepositorySessionStore
from cosmos_history.runtime import history_policy


def test_the_runtimes_policy_is_built_from_the_settings():
    settings = load_settings(
        {
            "HISTORY_MODE": "service",
            "MAX_SESSION_BYTES": "50000",
            "MAX_HISTORY_MESSAGES": "7",
            "HISTORY_COMPACTION": "window",
            "MAX_INPUT_TOKENS": "1000",
        }
    )

    assert history_policy(settings) == HistoryPolicy("service", HistoryBudget(50_000, 7, 600))
    assert history_policy(load_settings({"HISTORY_COMPACTION": "none"})).budget.max_tokens is None


async def test_a_new_session_takes_the_policys_mode_unless_the_request_names_one(memory_store, memory_agents):
    turns = Turns(memory_store, memory_agents, policy=HistoryPolicy(default_mode="service"))

    defaulted = await turns.run(TurnRequest("a", "hello"), caller=memory_store.user_id)
    named = await turns.run(TurnRequest("b", "hello", mode="local"), caller=memory_store.user_id)

    assert (defaulted.mode, named.mode) == ("service", "local")


async def test_the_same_repository_keeps_each_turn_services_documents_within_its_own_budget(
    memory_store, memory_agents
):
    small = Turns(memory_store, memory_agents, policy=HistoryPolicy(budget=HistoryBudget(max_messages=4)))
    roomy = Turns(memory_store, memory_agents)
    for n in range(5):
        await small.run(TurnRequest("small", f"message {n}"), caller=memory_store.user_id)
        await roomy.run(TurnRequest("roomy", f"message {n}"), caller=memory_store.user_id)

    kept_small, kept_roomy = await memory_store.load("small"), await memory_store.load("roomy")
    assert kept_small is not None and kept_roomy is not None
    assert len(history_messages(kept_small.session.state)) <= 4 and kept_small.archive.count >= 6
    assert len(history_messages(kept_roomy.session.state)) == 10 and kept_roomy.archive.count == 0


async def test_the_session_store_gives_a_new_session_the_policys_mode(memory_store):
    store = RepositorySessionStore(memory_store, policy=HistoryPolicy(default_mode="service"))

    await store.set("hosted", AgentSession())

    stored = await memory_store.load("hosted")
    assert stored is not None and stored.mode == "service"
