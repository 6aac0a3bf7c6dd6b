"""Model input tokens per turn: how much history each way of keeping it makes the model read.

Runs real agent turns with the bench's stand-in model, in memory (tokens do not depend on the store):
local mode with each ``HISTORY_COMPACTION`` strategy through the project's turn and the in-memory adapter
(the same document and archive rules as Cosmos DB), service mode, and an agent that sends the whole history
every turn, as ``CosmosHistoryProvider`` does. Tokens are counted as the framework's compaction counts them
(``CharacterEstimatorTokenizer`` on each message), over every message but the agent's instructions.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

from agent_framework import (
    Agent,
    AgentSession,
    ChatResponse,
    ChatResponseUpdate,
    InMemoryHistoryProvider,
    Message,
    ResponseStream,
)

from cosmos_history import build_agents, load_settings, run_turn
from cosmos_history.adapters.memory import MemorySessions
from cosmos_history.domain.compaction import SUMMARY_HEADER, count_tokens
from cosmos_history.runtime import history_policy

from .inprocess import user_message
from .model import BenchChatClient

TOKEN_VARIANTS = ("local, summarize", "local, window", "local, none", "service", "CosmosHistoryProvider")


class InputRecordingClient(BenchChatClient):
    """The stand-in model, keeping the last turn request it got (summarization requests aside)."""

    def __init__(self) -> None:
        super().__init__()
        self.last: list[Message] = []

    def _inner_get_response(
        self, *, messages: Sequence[Message], stream: bool, options: Mapping[str, Any], **kwargs: Any
    ) -> Awaitable[ChatResponse] | ResponseStream[ChatResponseUpdate, ChatResponse]:
        if not (messages and messages[-1].text.startswith(SUMMARY_HEADER)):
            self.last = list(messages)
        return super()._inner_get_response(messages=messages, stream=stream, options=options, **kwargs)

    async def last_tokens(self) -> int:
        instructions = [m for m in self.last if m.role == "system" and not m.text.startswith("Summary of")]
        return await count_tokens([m for m in self.last if m not in instructions])


async def measure_input_tokens(env: Mapping[str, str], lengths: list[int]) -> dict[str, dict[int, int]]:
    """Input tokens of turn ``n`` for each ``n`` in ``lengths``, per variant (one conversation each)."""
    results: dict[str, dict[int, int]] = {}
    for variant in TOKEN_VARIANTS:
        model = InputRecordingClient()
        turn = await _turns(variant, env, model)
        results[variant] = {}
        for number in range(1, max(lengths) + 1):
            await turn(number)
            if number in lengths:
                results[variant][number] = await model.last_tokens()
    return results


async def _turns(variant: str, env: Mapping[str, str], model: InputRecordingClient) -> Any:
    """A function running turn ``n`` of one conversation of ``variant``."""
    if variant == "CosmosHistoryProvider":
        agent = Agent(
            client=model, instructions="You are a helpful assistant.", context_providers=[InMemoryHistoryProvider()]
        )
        session = AgentSession()

        async def whole_history(number: int) -> None:
            await agent.run(user_message(number), session=session)

        return whole_history
    strategy = variant.removeprefix("local, ") if variant.startswith("local") else "summarize"
    settings = load_settings({**env, "HISTORY_COMPACTION": strategy})
    agents = build_agents(settings, model)
    store = MemorySessions(user_id="bench")
    policy = history_policy(settings)  # the document's budget, as the runtime builds it
    mode = "service" if variant == "service" else "local"

    async def project(number: int) -> None:
        await run_turn(store, agents, session_id="tokens", message=user_message(number), mode=mode, policy=policy)

    return project
