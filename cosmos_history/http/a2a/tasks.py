"""A2A tasks as this app keeps them: a task is a turn of a session (its ``contextId``), read back from the session.

A task's id is ``<sessionId>:<turn>``, the turn that started it. A turn that ends waiting for approvals leaves
its task ``input-required``; the turn that answers them continues the same task (as the history's own turn
cutting does, :func:`~cosmos_history.domain.archive.starts_turn`), so a task spans one turn, or a turn and
the approval turns that follow it. Nothing of a task is kept in memory: :func:`read_task` rebuilds it from
the caller's stored session (its history, archive included, and its pending approvals) on any instance;
a task whose turn is still queued or running, or was cancelled (it left nothing in the history), is read from
the turn's record instead (:func:`recorded_task`).
Ids are guessable by design; they are looked up only among the caller's own sessions.

Turns are numbered by walking the history back from the latest one: each turn starts with the user's input
(its first user message, or the approval answers). Turns made by the OpenAI-compatible endpoint from tool
outputs alone start with no user message; a task of a session that mixes those is read back with its state
but without messages when its turn cannot be found (a service-mode session keeps no messages at all). A turn
a cancel stopped while it ran used its number up and left no messages: the count skips those numbers.
"""

from __future__ import annotations

from collections.abc import Sequence, Set
from dataclasses import dataclass
from typing import Any

from a2a.types import Artifact, Message, Part, Role, Task, TaskState, TaskStatus
from agent_framework import Message as AgentMessage
from google.protobuf.json_format import ParseDict
from google.protobuf.struct_pb2 import Struct, Value

from cosmos_history.domain.approvals import PendingApproval, ToolCall, json_arguments, pending_approvals
from cosmos_history.domain.archive import read_page, starts_turn
from cosmos_history.domain.ports import SessionRepository
from cosmos_history.domain.records import SessionRecord
from cosmos_history.domain.results import TurnResult
from cosmos_history.http.bodies import parse_session_id

REPLY_ARTIFACT = "reply"
"""The artifact that carries a task's reply text (streamed in chunks that append to it)."""
PAGE_MESSAGES = 200
"""How many history messages one backward step of :func:`read_task` reads (the archive in chunks)."""


def task_id(session_id: str, turn: int) -> str:
    return f"{session_id}:{turn}"


def parse_task_id(value: str) -> tuple[str, int] | None:
    """``(sessionId, turn)`` of a task id, ``None`` for anything this app never issued."""
    session_id, _, turn = value.rpartition(":")
    if not turn.isascii() or not turn.isdigit() or len(turn) > 9 or int(turn) < 1:
        return None
    try:
        return parse_session_id(session_id), int(turn)
    except ValueError:
        return None


def struct(value: dict[str, Any]) -> Struct:
    """A JSON object as protobuf's ``Struct`` (what A2A's metadata and data parts hold)."""
    return ParseDict(_storable(value), Struct())


def data_part(value: dict[str, Any]) -> Part:
    return Part(data=ParseDict(_storable(value), Value()))


def _storable(value: Any) -> Any:
    """``value`` with what protobuf's numbers (doubles) cannot hold as text: an integer beyond 2**53 (a tool's
    arguments or result may hold one) is sent as its digits rather than failing the answer of a saved turn."""
    if isinstance(value, dict):
        return {str(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53:
        return str(value)
    return value


def approvals_json(approvals: Sequence[PendingApproval]) -> list[dict[str, Any]]:
    return [{"id": a.id, "tool": a.name, "arguments": a.arguments} for a in approvals]


def tool_calls_json(calls: Sequence[ToolCall]) -> list[dict[str, Any]]:
    return [{"id": c.id, "tool": c.name, "arguments": c.arguments, "result": c.result} for c in calls]


def agent_message(parts: list[Part], *, context_id: str, task: str, message_id: str) -> Message:
    return Message(role=Role.ROLE_AGENT, parts=parts, context_id=context_id, task_id=task, message_id=message_id)


def waiting_message(approvals: Sequence[PendingApproval], *, context_id: str, task: str) -> Message:
    """What an ``input-required`` task asks for: the pending approvals, and the data part that answers them."""
    names = ", ".join(f"{a.name} (approval id {a.id})" for a in approvals)
    text = (
        f"Waiting for approval: {names}. Answer on this task with a data part "
        '{"approvals": [{"id": "...", "approved": true}]} naming every pending id.'
    )
    parts = [Part(text=text), data_part({"approvals": approvals_json(approvals)})]
    return agent_message(parts, context_id=context_id, task=task, message_id=f"{task}:approvals")


def task_status(
    approvals: Sequence[PendingApproval], *, context_id: str, task: str, timestamp: str | None = None
) -> TaskStatus:
    """``input-required`` (naming the approvals) while approvals are pending, else ``completed``."""
    status = TaskStatus(state=TaskState.TASK_STATE_COMPLETED)
    if approvals:
        status = TaskStatus(
            state=TaskState.TASK_STATE_INPUT_REQUIRED,
            message=waiting_message(approvals, context_id=context_id, task=task),
        )
    if timestamp:
        status.timestamp.FromJsonString(timestamp)
    return status


def reply_artifact(text: str) -> Artifact:
    return Artifact(artifact_id=REPLY_ARTIFACT, name=REPLY_ARTIFACT, parts=[Part(text=text)])


def result_metadata(result: TurnResult) -> dict[str, Any]:
    """What the native API answers about a turn besides its reply, as a task's (or final event's) metadata."""
    return {
        "sessionId": result.session_id,
        "turn": result.turn,
        "agent": result.agent,
        "toolCalls": tool_calls_json(result.tool_calls),
        "approvals": approvals_json(result.approvals),
    }


def task_of_result(result: TurnResult, *, task: str, request: Message) -> Task:
    """The task a turn (or the approval turn continuing it) answered: its state, reply and the caller's message."""
    context_id = result.session_id
    sent = Message()
    sent.CopyFrom(request)
    sent.context_id, sent.task_id = context_id, task
    history = [sent]
    if result.reply:
        reply = Part(text=result.reply)
        history.append(agent_message([reply], context_id=context_id, task=task, message_id=f"{task}:{result.turn}"))
    return Task(
        id=task,
        context_id=context_id,
        status=task_status(result.approvals, context_id=context_id, task=task),
        artifacts=[reply_artifact(result.reply)] if result.reply else [],
        history=history,
        metadata=struct(result_metadata(result)),
    )


RECORDED_STATES: dict[str, TaskState.ValueType] = {
    "queued": TaskState.TASK_STATE_SUBMITTED,
    "in_progress": TaskState.TASK_STATE_WORKING,
    "cancelled": TaskState.TASK_STATE_CANCELED,
    "failed": TaskState.TASK_STATE_FAILED,
}
"""The turn statuses a task is read from the turn's record in (the others from the stored session, which then
holds the task's messages): a turn still queued or running, or one that saved nothing of its messages."""


def recorded_task(turn: dict[str, Any]) -> Task:
    """The task of a turn read from its record (``turn``: the turn answer plus ``status`` and ``reason``, as
    ``GET /api/sessions/{id}/turns/{turn}`` answers it): its state, why it ended (when it failed or was
    cancelled) and what it answered so far."""
    context_id, task = turn["sessionId"], task_id(turn["sessionId"], turn["turn"])
    status = TaskStatus(state=RECORDED_STATES[turn["status"]])
    if turn.get("reason"):
        reason = Part(text=str(turn["reason"]))
        status.message.CopyFrom(
            agent_message([reason], context_id=context_id, task=task, message_id=f"{task}:{turn['status']}")
        )
    reply = turn.get("reply") or ""
    return Task(
        id=task,
        context_id=context_id,
        status=status,
        artifacts=[reply_artifact(reply)] if reply else [],
        metadata=struct({"sessionId": context_id, "turn": turn["turn"], "agent": turn.get("agent")}),
    )


@dataclass(frozen=True)
class StoredTask:
    """A task found in a stored session: its messages (when the history still has them) and whether it is the
    session's latest task (then it is ``input-required`` while the session waits for approvals)."""

    session_id: str
    turn: int
    messages: list[AgentMessage] | None
    latest: bool


async def read_task(
    store: SessionRepository, record: SessionRecord, turn: int, *, cancelled: Set[int] = frozenset()
) -> StoredTask | None:
    """The task that turn ``turn`` of ``record`` started; ``None`` when no task started there (no such turn, or
    the turn answered approvals and so continues an earlier task). ``cancelled``: the numbers of later turns
    a cancel stopped while they ran (they left nothing in the history, so counting back skips them)."""
    if not 1 <= turn <= record.turns:
        return None
    if record.mode == "service":  # its messages live with the model's service, not in the document
        return StoredTask(record.id, turn, None, turn == record.turns)
    found = await _from_turn(store, record, turn, cancelled)
    if found is None:
        return StoredTask(record.id, turn, None, turn == record.turns)
    if not starts_turn(found[0]):
        return None
    following = _next_task(found)
    messages = found if following is None else found[:following]
    return StoredTask(record.id, turn, messages, following is None)


async def _from_turn(
    store: SessionRepository, record: SessionRecord, turn: int, cancelled: Set[int]
) -> list[AgentMessage] | None:
    """The history from the first message of ``turn`` to the end, read backwards page by page (bounded by the
    history's length); ``None`` when the turns cannot be counted back to it (an expired archive chunk, or turns
    that did not start with the user's input).

    A turn starts at the first of its user messages (the OpenAI-compatible endpoint may send several)."""
    collected: list[AgentMessage] = []  # newest first
    current, before, expected = _uncancelled(record.turns, cancelled), None, None
    while True:
        page = await read_page(record, store.archive, before=before, limit=PAGE_MESSAGES)
        for index, message in reversed(page.messages):
            if expected is not None and index != expected:
                return None  # a gap: retention removed an archive chunk, so the turns before it cannot be counted
            expected = index - 1
            if collected and collected[-1].role == "user" and message.role != "user":
                if current == turn:
                    return collected[::-1]
                current = _uncancelled(current - 1, cancelled)
            collected.append(message)
        if page.next_before is None:
            starts_first = expected == -1 and collected[-1].role == "user" and current == turn
            return collected[::-1] if starts_first else None
        before = page.next_before


def _uncancelled(turn: int, cancelled: Set[int]) -> int:
    """The latest turn from ``turn`` down that left messages in the history (was not cancelled)."""
    while turn in cancelled:
        turn -= 1
    return turn


def _next_task(messages: list[AgentMessage]) -> int | None:
    """Where the next task starts after the first message: a new input of the user's (not approval answers)."""
    for i in range(1, len(messages)):
        if starts_turn(messages[i]) and messages[i - 1].role != "user":
            return i
    return None


def stored_task(stored: StoredTask, record: SessionRecord) -> Task:
    """A task read back: its state (``input-required`` with the approvals the session still waits on), its
    reply (the text of its last turn) and its messages as A2A history."""
    task = task_id(stored.session_id, stored.turn)
    waiting = pending_approvals(record.session) if stored.latest else []
    history = [_a2a_message(m, record.id, task, n) for n, m in enumerate(stored.messages or [])]
    history = [m for m in history if m is not None]
    reply = _last_reply(stored.messages or [])
    return Task(
        id=task,
        context_id=record.id,
        status=task_status(
            waiting, context_id=record.id, task=task, timestamp=record.updated_at if stored.latest else None
        ),
        artifacts=[reply_artifact(reply)] if reply else [],
        history=history,
        metadata=struct({"sessionId": record.id, "turn": stored.turn, "agent": record.agent}),
    )


def _last_reply(messages: list[AgentMessage]) -> str:
    """The text the agent answered after the task's last input (approval answers included)."""
    last_input = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
    return "".join(m.text for m in messages[last_input + 1 :] if m.role == "assistant" and m.text)


def _a2a_message(message: AgentMessage, context_id: str, task: str, index: int) -> Message | None:
    """A stored message as A2A history: text, approval requests and answers (as the data parts that carry
    them); tool calls and results stay out (they are not what the parties said)."""
    parts = [Part(text=message.text)] if message.text else []
    requests = [c for c in message.contents if c.type == "function_approval_request" and c.function_call]
    answers = [c for c in message.contents if c.type == "function_approval_response"]
    if requests:
        waiting = [
            PendingApproval(c.id or "", c.function_call.name or "", json_arguments(c.function_call.arguments))
            for c in requests
            if c.function_call is not None
        ]
        parts.append(data_part({"approvals": approvals_json(waiting)}))
    if answers:
        parts.append(data_part({"approvals": [{"id": c.id, "approved": bool(c.approved)} for c in answers]}))
    if not parts or message.role not in ("user", "assistant"):
        return None
    role = Role.ROLE_USER if message.role == "user" else Role.ROLE_AGENT
    return Message(role=role, parts=parts, context_id=context_id, task_id=task, message_id=f"{task}:m{index}")
