"""The model stand-in every variant shares: zero latency, fixed replies of realistic length.

Replies and user messages have the size of a typical chat exchange (about 1 KB of reply,
a few hundred characters of question), so stored history grows as it would with a real
model, while the model itself costs nothing: whatever time a turn takes is backend overhead.
With ``store=True`` it answers like the Responses API keeping the thread: a new
conversation id every turn, so service mode stores only that id.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from typing import Any, ClassVar

from agent_framework import (
    BaseChatClient,
    ChatMiddlewareLayer,
    ChatResponse,
    ChatResponseUpdate,
    Content,
    FunctionInvocationLayer,
    Message,
    ResponseStream,
)
from agent_framework.observability import ChatTelemetryLayer

#: About 260 characters: a realistic user question.
USER_MESSAGE = (
    "I am planning a three-day trip to Lisbon in early spring with two children aged seven and ten. "
    "We like museums, easy walks and good food, but we do not want to spend hours on public transport. "
    "Which neighbourhood should we stay in, and what would a relaxed plan look like?"
)

#: About 1,000 characters: a realistic, concise assistant answer.
REPLY = (
    "Stay in Baixa or Chiado: both are central, flat by Lisbon standards and close to the river, trams "
    "and the metro, so most sights are a short walk away. A relaxed plan could be:\n\n"
    "Day 1 - Walk from Praça do Comércio through Baixa to Rossio, ride Tram 28 up to Alfama, and visit "
    "the castle in the late afternoon when it is cooler and the view over the river is at its best.\n\n"
    "Day 2 - Take the train to Belém (15 minutes): the monastery, the Monument to the Discoveries and "
    "the famous custard tarts. In the afternoon, the Maritime Museum or the MAAT riverside promenade "
    "works well for children.\n\n"
    "Day 3 - Spend the morning at the Oceanarium in Parque das Nações, one of the best aquariums in "
    "Europe, then ride the cable car along the river. Finish with dinner at the Time Out Market, where "
    "everyone can choose something different.\n\n"
    "Buy a Viva Viagem card for the trams and trains, and book the castle and the Oceanarium online to "
    "skip the queues."
)


class BenchChatClient(
    FunctionInvocationLayer[Any], ChatMiddlewareLayer[Any], ChatTelemetryLayer[Any], BaseChatClient[Any]
):
    """Composed like the framework's public clients, so the agent does the same work around it.

    ``model_seconds`` accumulates the time spent inside the stand-in, so callers can
    subtract it from a turn's wall time (it stays close to zero).
    """

    OTEL_PROVIDER_NAME: ClassVar[str] = "bench"

    def __init__(self, *, reply: str = REPLY, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reply = reply
        self.calls = 0
        self.model_seconds = 0.0

    def _inner_get_response(
        self, *, messages: Sequence[Message], stream: bool, options: Mapping[str, Any], **kwargs: Any
    ) -> Awaitable[ChatResponse] | ResponseStream[ChatResponseUpdate, ChatResponse]:
        started = time.perf_counter()
        self.calls += 1
        conversation_id = self._conversation_id(messages, options) if options.get("store") else None
        self.model_seconds += time.perf_counter() - started
        if stream:
            return self._build_response_stream(self._stream(conversation_id))
        return self._respond(conversation_id)

    async def _respond(self, conversation_id: str | None) -> ChatResponse:
        return ChatResponse(
            messages=[Message(role="assistant", contents=[self.reply])], conversation_id=conversation_id, model="bench"
        )

    async def _stream(self, conversation_id: str | None) -> AsyncIterator[ChatResponseUpdate]:
        yield ChatResponseUpdate(
            role="assistant", contents=[Content.from_text(self.reply)], conversation_id=conversation_id, model="bench"
        )

    def _conversation_id(self, messages: Sequence[Message], options: Mapping[str, Any]) -> str:
        """A Responses-style id (``resp_`` + 48 hex digits), new each turn, derived from the previous one."""
        seed = f"{options.get('conversation_id') or ''}|{self.calls}|{len(messages)}"
        return "resp_" + hashlib.sha256(seed.encode()).hexdigest()[:48]
