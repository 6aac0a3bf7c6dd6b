"""Long conversations stay cheap: the history the model reads, and the history a document keeps, are bounded
by tokens; what leaves the document goes to the archive, and (``summarize``) into a running summary.

Three pieces, all in local mode (in service mode the service keeps the history):

- **Request time** (:class:`InputBudget`): the framework's ``CompactionProvider`` with its
  ``TruncationStrategy`` drops the oldest whole message groups (a tool call stays with its result) until
  summary, history and the new input fit ``MAX_INPUT_TOKENS``. This is the hard bound on each request.
- **Save time** (``plan_archive``): the document keeps at most ``CompactionSettings.document_tokens``
  of history (60% of the budget); older whole turns move to archive items, so each write stays small
  and the full history stays readable through the history pages. The framework's own
  ``after_strategy`` would only mark messages as excluded and keep them in the document, which is exactly
  the growth this avoids; that step is what the framework lacks for an external store.
- **Summary** (:func:`refresh_summary`, :class:`RunningSummary`): messages that reached the archive are
  summarised by the agent's own chat client into one running summary kept in the session state (so it
  survives restarts); the model reads it first. A failed summary loses nothing: the turn goes on with the
  window alone, and the next turn retries from where the summary stopped.

Tokens are counted with the framework's ``CharacterEstimatorTokenizer`` (4 characters a token, on the
framework's own serialization of each message): it needs no model-specific vocabulary or download, is the
counter the framework's strategies use, and any ``TokenizerProtocol`` (``tiktoken`` for OpenAI models) can
replace it in :data:`TOKENIZER`.
"""

from __future__ import annotations

import contextvars
import copy
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from agent_framework import (
    EXCLUDED_KEY,
    AgentSession,
    CharacterEstimatorTokenizer,
    CompactionProvider,
    ContextProvider,
    InMemoryHistoryProvider,
    Message,
    SessionContext,
    TruncationStrategy,
    annotate_message_groups,
    included_token_count,
)

from cosmos_history import telemetry
from cosmos_history.domain.archive import read_page
from cosmos_history.domain.message_keys import TokenCounts
from cosmos_history.domain.modes import CompactionSettings

if TYPE_CHECKING:
    from cosmos_history.domain.ports import ArchiveChunks
    from cosmos_history.domain.records import SessionRecord

logger = logging.getLogger(__name__)

TOKENIZER = CharacterEstimatorTokenizer()
SUMMARY = "summary"
"""The session-state key (and context provider ``source_id``) of the running summary."""
SUMMARY_HEADER = "Summarize this conversation excerpt."
"""Opens every summarization request (the offline model recognises its summarization requests by it)."""
DEFAULT_SUMMARY_PROMPT = (
    "You keep a running summary of a conversation between a user and an assistant. Merge the previous "
    "summary with the new excerpt into one short summary that keeps every fact the user stated, their "
    "goals and preferences, decisions made and questions still open. Write plain sentences, no preamble."
)
SUMMARY_BATCH_MESSAGES = 200

_room: contextvars.ContextVar[int] = contextvars.ContextVar("history_room", default=1)


async def count_tokens(messages: Sequence[Message]) -> int:
    """Tokens of ``messages`` as the framework's compaction counts them (the copies are annotated, not them)."""
    copies = []
    for message in messages:
        duplicate = copy.copy(message)
        duplicate.additional_properties = dict(message.additional_properties)
        copies.append(duplicate)
    annotate_message_groups(copies, tokenizer=TOKENIZER)  # the pass every strategy starts from, without one
    return included_token_count(copies)


async def _count_one(message: Message) -> int:
    """One message's tokens as the framework counts them, whether or not it is marked excluded (the count
    reads only its role, id and contents; :meth:`TokenCounts.of` keys it by exactly those)."""
    duplicate = copy.copy(message)
    duplicate.additional_properties = {}
    return await count_tokens([duplicate])


TOKEN_COUNTS = TokenCounts(_count_one)
"""The process's table of token counts: a window's messages are counted once, not on every turn."""


def _excluded(message: Message) -> bool:
    return bool(message.additional_properties.get(EXCLUDED_KEY, False))


class _TruncateToRoom:
    """The framework's truncation, to the room this request leaves (set by :class:`InputBudget`)."""

    tokenizer = TOKENIZER

    async def __call__(self, messages: list[Message]) -> bool:
        room = _room.get()
        return await TruncationStrategy(max_n=room, compact_to=room, tokenizer=TOKENIZER)(messages)


class InputBudget(CompactionProvider):
    """Bounds what the model reads: summary plus history plus the new input within ``max_input_tokens``.

    The room for history depends on each request's input, so it travels in a context variable rather than
    in the provider, which every concurrent request of the process shares. When the context provably fits
    (no message already excluded, and the sum of its messages' counts within the room, which is exactly when
    the truncation would change nothing), the framework's pass is skipped: it would annotate every message
    of this turn's copies again only to keep them all.
    """

    def __init__(self, max_input_tokens: int) -> None:
        super().__init__(before_strategy=_TruncateToRoom(), tokenizer=TOKENIZER, source_id="input_budget")
        self.max_input_tokens = max_input_tokens

    async def before_run(self, *, agent: Any, session: Any, context: Any, state: dict[str, Any]) -> None:
        room = max(1, self.max_input_tokens - await count_tokens(context.input_messages))
        if await fits(context.get_messages(), room):
            return
        token = _room.set(room)
        try:
            await super().before_run(agent=agent, session=session, context=context, state=state)
        finally:
            _room.reset(token)


async def fits(messages: Sequence[Message], room: int) -> bool:
    """Whether the truncation to ``room`` would keep ``messages`` as they are: none is excluded yet (the
    framework would drop those from the context) and their tokens add up to at most ``room``.

    The framework's pass first names each message without an id ``msg_<index>`` (on this turn's copies, and
    counts the name), so a count taken without the name may be short by the name's length: each such message
    is allowed for its longest possible name, and a window that might not fit takes the framework's pass.
    """
    if type(TOKENIZER) is not CharacterEstimatorTokenizer or any(_excluded(message) for message in messages):
        return False
    unnamed = sum(1 for message in messages if not message.message_id)
    longest_name = len(f'"msg_{2 * len(messages) + 1}"') - len("null")  # JSON: the name replaces null
    return await TOKEN_COUNTS.total(messages) + unnamed * (longest_name // 4 + 1) <= room


class WindowHistory(InMemoryHistoryProvider):
    """The framework's in-memory history, saving a turn without hashing the whole window first.

    Before appending, the framework drops incoming messages that repeat the stored ones (a replayed
    transcript) by hashing every stored message, each serialized again, on every turn. When fewer messages
    arrive than are stored, only the stored tail as long as the incoming ones can overlap them, so only that
    tail is handed to the framework's own filter: the same messages are kept, for a fraction of the work.
    """

    async def save_messages(
        self, session_id: str | None, messages: Sequence[Message], *, state: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        existing: list[Message] = list((state or {}).get("messages", []))
        if state is None or not messages or len(messages) >= len(existing):
            await super().save_messages(session_id, messages, state=state, **kwargs)
            return
        tail = {"messages": existing[-len(messages) :]}
        await super().save_messages(session_id, messages, state=tail, **kwargs)
        state["messages"] = [*existing, *tail["messages"][len(messages) :]]


class RunningSummary(ContextProvider):
    """Puts the running summary before the history, as a system message the truncation never drops."""

    def __init__(self) -> None:
        super().__init__(SUMMARY)

    async def before_run(
        self, *, agent: Any, session: AgentSession, context: SessionContext, state: dict[str, Any]
    ) -> None:
        text = state.get("text")
        if text:
            summary = f"Summary of the earlier conversation (older messages are not shown):\n{text}"
            context.extend_messages(self.source_id, [Message(role="system", contents=[summary])])


def summary_of(record: SessionRecord) -> str | None:
    return record.session.state.get(SUMMARY, {}).get("text")


async def refresh_summary(
    record: SessionRecord, archive: ArchiveChunks, client: Any, settings: CompactionSettings, prompt: str | None
) -> bool:
    """Fold archived messages the summary does not cover yet into it; returns whether it changed.

    A failure is logged and traced and changes nothing: the next turn tries again from the same point.
    """
    state = record.session.state.get(SUMMARY, {})
    through = int(state.get("through", 0))
    if settings.strategy != "summarize" or through >= record.archive.count:
        return False
    try:
        with telemetry.phase("summary"):
            batch = await _unsummarized(record, archive, through)
            text = await _summarize(client, prompt or DEFAULT_SUMMARY_PROMPT, state.get("text"), batch)
    except Exception as error:  # the turn goes on with the window alone
        logger.warning(
            "Summarizing %d archived messages failed: %s", record.archive.count - through, type(error).__name__
        )
        return False
    record.session.state[SUMMARY] = {"text": text[: settings.summary_chars], "through": through + len(batch)}
    return True


async def _unsummarized(record: SessionRecord, archive: ArchiveChunks, through: int) -> list[Message]:
    end = min(record.archive.count, through + SUMMARY_BATCH_MESSAGES)
    page = await read_page(record, archive, before=end, limit=end - through)
    return [message for _, message in page.messages]


async def _summarize(client: Any, prompt: str, previous: str | None, messages: list[Message]) -> str:
    excerpt = "\n".join(line for message in messages if (line := transcript_line(message)))
    request = f"{SUMMARY_HEADER}\n\nPrevious summary:\n{previous or '(none)'}\n\nExcerpt:\n{excerpt}"
    response = await client.get_response(
        [Message(role="system", contents=[prompt]), Message(role="user", contents=[request])]
    )
    text = (response.text or "").strip()
    if not text:
        raise ValueError("the summarizer returned no text")
    return text


def transcript_line(message: Message, limit: int = 1000) -> str:
    """One message as a transcript line: its text, or what its tool call or result was."""
    parts = [message.text] if message.text else []
    for content in message.contents:
        if content.type == "function_call":
            parts.append(f"(called {content.name} with {content.arguments})")
        elif content.type == "function_result":
            parts.append(f"(tool result: {content.result})")
    text = " ".join(parts).strip()
    return f"{message.role}: {text[:limit]}" if text else ""
