"""Reading an AG-UI ``RunAgentInput`` into one turn: the thread is the session, the run is the turn.

An AG-UI client sends its whole message list with every run; the stored session is the history the
agent sees, so only what is new is read: the messages after the last assistant message of the list
(the user's message, or the results of the client's own tools the previous run asked for). Everything
before it is the client's copy of what the session already holds and is not read again; a client that
holds a different history cannot rewrite the stored one. A run with ``resume`` answers the interrupts
of the run before it (tool approvals) and nothing else: its messages are not read. A run with neither
new messages nor ``resume`` joins the thread: it runs no turn and shows the stored history.

``tools`` are the client's own (front-end) tools, under the domain's client-tool rules; ``context``
becomes this run's instructions (never stored); ``state`` and ``forwardedProps`` are accepted and not
used. Invalid input is a 4xx problem before any event is sent.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pydantic
from ag_ui.core import (
    AssistantMessage,
    Context,
    DeveloperMessage,
    ResumeEntry,
    RunAgentInput,
    SystemMessage,
    TextInputContent,
    Tool,
    ToolMessage,
    UserMessage,
)
from agent_framework import Content, Message

from cosmos_history.domain.client_tools import ClientTool
from cosmos_history.domain.errors import ValidationError
from cosmos_history.domain.results import TurnRequest
from cosmos_history.http.bodies import MAX_APPROVALS, parse_session_id
from cosmos_history.settings import Settings

HISTORY_FACTOR = 16
"""A run's body carries the client's whole conversation, so it may be this many times ``MAX_REQUEST_BYTES``
(1 MiB by default); each new message is still held to ``MAX_MESSAGE_CHARS``."""
MAX_MESSAGES = 2000
MAX_TOOLS = 128
MAX_ID_CHARS = 200
TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_SCHEMA_ERRORS_SHOWN = 3
_APPROVAL_KEYS = ("approved", "accepted")
"""What an approval's resume payload holds: ``approved`` (``accepted`` is the framework's older name)."""


@dataclass(frozen=True)
class RunRequest:
    """What one AG-UI run asks for, read and checked."""

    thread_id: str
    run_id: str
    message: str = ""
    inputs: tuple[Message, ...] = ()
    approvals: tuple[tuple[str, bool], ...] | None = None
    client_tools: tuple[ClientTool, ...] = ()
    options: dict[str, Any] | None = None
    new_messages: tuple[Any, ...] = ()
    """The new messages as the client sent them (AG-UI message models), for a snapshot."""
    holds_history: bool = False
    """Whether the client's list holds messages before the new ones (its own copy of the conversation)."""

    @property
    def joins(self) -> bool:
        """A run that brings nothing new: it shows the thread and runs no turn."""
        return self.approvals is None and not self.message and not self.inputs

    def turn_request(self, agent: str) -> TurnRequest:
        """The turn this run is; a retry of the same ``runId`` replays it (the run id is its idempotency key)."""
        return TurnRequest(
            self.thread_id,
            self.message,
            agent=agent,
            idempotency_key=run_key(self.run_id),
            approvals=self.approvals,
            inputs=self.inputs,
            options=self.options,
            client_tools=self.client_tools,
        )


def run_key(run_id: str) -> str:
    """The idempotency key of a run: any run id the protocol allows, as a key the turn service takes."""
    return "ag-ui-run:" + hashlib.sha256(run_id.encode()).hexdigest()


def parse_run(body: dict[str, Any], settings: Settings) -> RunRequest:
    """A ``RunAgentInput`` (camelCase or snake_case keys, as clients send them) as one run's request.

    Raises:
        ValidationError: the body is not a valid run input, or what is new in it cannot be a turn.
        InvalidSessionIdError: the ``threadId`` cannot name a session.
    """
    run = _validated(body)
    thread_id = parse_session_id(run.thread_id)
    if not 1 <= len(run.run_id) <= MAX_ID_CHARS:
        raise ValidationError(f"'runId' must be 1 to {MAX_ID_CHARS} characters.")
    if len(run.messages) > MAX_MESSAGES:
        raise ValidationError(f"'messages' holds more than {MAX_MESSAGES} messages.")
    tools = client_tools(run.tools)
    options = context_options(run.context, settings.max_message_chars)
    if run.resume:
        return RunRequest(thread_id, run.run_id, approvals=approvals(run.resume), client_tools=tools, options=options)
    earlier, new = split_new(run.messages)
    inputs = [_input(message, settings.max_message_chars, f"messages[{earlier + i}]") for i, message in enumerate(new)]
    _check_results(inputs)
    only_text = len(inputs) == 1 and inputs[0].role == "user"
    return RunRequest(
        thread_id,
        run.run_id,
        message=inputs[0].text if only_text else "",
        inputs=() if only_text else tuple(inputs),
        client_tools=tools,
        options=options,
        new_messages=tuple(new),
        holds_history=earlier > 0,
    )


def _validated(body: dict[str, Any]) -> RunAgentInput:
    """The body as the protocol's ``RunAgentInput``; ``tools``, ``context`` and ``forwardedProps`` may be left
    out (the framework's client leaves them out when it has none)."""
    defaults: dict[str, Any] = {"tools": [], "context": []}
    filled = dict(body)
    for name, value in defaults.items():
        if name not in filled:
            filled[name] = value
    if "forwardedProps" not in filled and "forwarded_props" not in filled:
        filled["forwardedProps"] = None
    try:
        return RunAgentInput.model_validate(filled)
    except pydantic.ValidationError as error:
        shown = "; ".join(f"{_location(e['loc'])}: {e['msg'][:120]}" for e in error.errors()[:_SCHEMA_ERRORS_SHOWN])
        raise ValidationError(f"The body is not an AG-UI RunAgentInput ({shown}).") from None


def _location(loc: Sequence[Any]) -> str:
    return "'" + ".".join(str(part) for part in loc)[:100] + "'"


def split_new(messages: Sequence[Any]) -> tuple[int, list[Any]]:
    """Where the new messages start, and those messages: the ones after the last assistant message
    (activity and reasoning messages are the client's display and are not input)."""
    last = max((i for i, m in enumerate(messages) if isinstance(m, AssistantMessage)), default=-1)
    start = last + 1
    new = [m for m in messages[start:] if isinstance(m, (UserMessage, SystemMessage, DeveloperMessage, ToolMessage))]
    return start, new


def _input(message: Any, limit: int, where: str) -> Message:
    """One new AG-UI message as the framework's message the turn runs on."""
    if isinstance(message, ToolMessage):
        if not 1 <= len(message.tool_call_id) <= MAX_ID_CHARS:
            raise ValidationError(f"'{where}.toolCallId' must be 1 to {MAX_ID_CHARS} characters.")
        if len(message.content) > limit:
            raise ValidationError(f"'{where}.content' is longer than {limit} characters.")
        result = Content.from_function_result(message.tool_call_id, result=message.content)
        return Message(role="tool", contents=[result])
    text = _text(message.content, where)
    if not text.strip() or len(text) > limit:
        raise ValidationError(f"'{where}.content' must be non-empty text of at most {limit} characters.")
    return Message(role="user" if isinstance(message, UserMessage) else "system", contents=[text])


def _text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if not all(isinstance(part, TextInputContent) for part in content):
        raise ValidationError(f"'{where}.content': only text content is supported (no images, audio or files).")
    return "".join(part.text for part in content)


def _check_results(inputs: Sequence[Message]) -> None:
    answered = [c.call_id for m in inputs for c in m.contents if c.type == "function_result"]
    if len(answered) != len(set(answered)):
        raise ValidationError("A tool call has two results; send one.")


def client_tools(tools: Sequence[Tool]) -> tuple[ClientTool, ...]:
    """The client's front-end tools: the model may call them, the client runs them."""
    if len(tools) > MAX_TOOLS:
        raise ValidationError(f"'tools' holds more than {MAX_TOOLS} tools.")
    declared: list[ClientTool] = []
    for index, tool in enumerate(tools):
        parameters = tool.parameters if tool.parameters is not None else {"type": "object", "properties": {}}
        if not TOOL_NAME.fullmatch(tool.name):
            raise ValidationError(f"'tools[{index}].name' must be 1 to 64 letters, digits, '_' or '-'.")
        if not isinstance(parameters, dict):
            raise ValidationError(f"'tools[{index}].parameters' must be a JSON schema object.")
        if any(t.name == tool.name for t in declared):
            raise ValidationError(f"Two tools are named {tool.name!r}; tool names must be unique.")
        declared.append(ClientTool(tool.name, tool.description, parameters))
    return tuple(declared)


def context_options(context: Sequence[Context], limit: int) -> dict[str, Any] | None:
    """The run's ``context`` as instructions for this run only (added to the agent's own, never stored)."""
    if not context:
        return None
    lines = [f"- {item.description}: {item.value}" for item in context]
    if sum(len(line) for line in lines) > limit:
        raise ValidationError(f"'context' is longer than {limit} characters.")
    return {"instructions": "Context the application provides:\n" + "\n".join(lines)}


def approvals(resume: Sequence[ResumeEntry]) -> tuple[tuple[str, bool], ...]:
    """The answers a ``resume`` gives the interrupts (tool approvals): ``resolved`` with ``{"approved": bool}``,
    or ``cancelled`` (declined). The arguments that run are always the stored call's, so a payload holds
    nothing else."""
    if len(resume) > MAX_APPROVALS:
        raise ValidationError(f"'resume' holds more than {MAX_APPROVALS} entries.")
    answers: list[tuple[str, bool]] = []
    for index, entry in enumerate(resume):
        if not 1 <= len(entry.interrupt_id) <= MAX_ID_CHARS:
            raise ValidationError(f"'resume[{index}].interruptId' must be 1 to {MAX_ID_CHARS} characters.")
        if entry.status == "cancelled":
            answers.append((entry.interrupt_id, False))
            continue
        payload = entry.payload
        decision = [payload.get(key) for key in _APPROVAL_KEYS if key in payload] if isinstance(payload, dict) else []
        if len(decision) != 1 or not isinstance(decision[0], bool) or len(payload) != 1:
            raise ValidationError(
                f'\'resume[{index}].payload\' must be {{"approved": true}} or {{"approved": false}} (the call '
                "runs with the arguments it was asked with)."
            )
        answers.append((entry.interrupt_id, decision[0]))
    return tuple(answers)
