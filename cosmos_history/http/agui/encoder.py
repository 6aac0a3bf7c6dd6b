"""A turn's typed events (:mod:`cosmos_history.domain.events`) as the AG-UI protocol's events.

A run is ``RUN_STARTED``, the reply as ``TEXT_MESSAGE_START`` / ``CONTENT`` / ``END`` (a new message after each
tool call), each tool call as ``TOOL_CALL_START`` / ``ARGS`` / ``END`` and its ``TOOL_CALL_RESULT``, then
``RUN_FINISHED`` or ``RUN_ERROR``. A turn that stops for approval finishes with an interrupt outcome: one
interrupt per pending call, naming the tool call and carrying the schema of its answer, which the next run
sends back in ``resume``. The interrupt's shape is the one the framework's own AG-UI server emits
(``reason`` ``tool_call``, ``metadata.agent_framework.function_call``), so its clients understand it.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ag_ui.core import (
    BaseEvent,
    Interrupt,
    RunErrorEvent,
    RunFinishedEvent,
    RunFinishedInterruptOutcome,
    RunFinishedSuccessOutcome,
    RunStartedEvent,
    TextMessageContentEvent,
    TextMessageEndEvent,
    TextMessageStartEvent,
    ToolCallArgsEvent,
    ToolCallEndEvent,
    ToolCallResultEvent,
    ToolCallStartEvent,
)

from cosmos_history.domain.errors import ProblemError
from cosmos_history.domain.events import (
    ApprovalRequired,
    TextDelta,
    ToolCalled,
    ToolResult,
    TurnCompleted,
    TurnEvent,
    TurnFailed,
)
from cosmos_history.domain.results import TurnResult

logger = logging.getLogger(__name__)

APPROVAL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"approved": {"type": "boolean", "description": "Whether the requested tool call may run."}},
    "required": ["approved"],
    "additionalProperties": False,
}
"""What a ``resume`` entry's ``payload`` answers an approval with (``status: cancelled`` declines as well)."""


@dataclass(frozen=True)
class PendingCall:
    """A tool call waiting for approval: the interrupt's id (the approval's), the call it names, what would run."""

    approval_id: str
    call_id: str
    name: str
    arguments: Any


def interrupt(call: PendingCall) -> Interrupt:
    return Interrupt(
        id=call.approval_id,
        reason="tool_call",
        message=f"Approve running {call.name}?",
        tool_call_id=call.call_id,
        response_schema=APPROVAL_SCHEMA,
        metadata={
            "agent_framework": {
                "type": "function_approval_request",
                "function_call": {"call_id": call.call_id, "name": call.name, "arguments": call.arguments},
            }
        },
    )


def finished(thread_id: str, run_id: str, result: dict[str, Any], pending: Sequence[PendingCall]) -> RunFinishedEvent:
    """The run's end: ``success``, or the interrupts the next run answers."""
    outcome = (
        RunFinishedInterruptOutcome(interrupts=[interrupt(call) for call in pending])
        if pending
        else RunFinishedSuccessOutcome()
    )
    return RunFinishedEvent(thread_id=thread_id, run_id=run_id, result=result, outcome=outcome)


def run_result(result: TurnResult) -> dict[str, Any]:
    """What ``RUN_FINISHED.result`` reports: the session and the turn this run was."""
    return {"sessionId": result.session_id, "turn": result.turn, "status": result.status, "agent": result.agent}


def run_error(error: BaseException) -> RunErrorEvent:
    """A failed run: the problem's title and detail (never an exception's text), its slug as the code."""
    if isinstance(error, ProblemError) and not error.kind.caller_fault and error.log_each:
        # As the HTTP routes log them: types only, no user text.
        cause = type(error.__cause__).__name__ if error.__cause__ is not None else "-"
        logger.warning("AG-UI run failed: %s (caused by %s)", error.title, cause)
    if not isinstance(error, ProblemError):
        # Types only at the default level: an exception's text may quote the user's message.
        logger.error("Unhandled %s in an AG-UI run", type(error).__name__)
        logger.debug("AG-UI run failure details", exc_info=error)
        error = ProblemError("The server failed to handle this request.")
    return RunErrorEvent(message=f"{error.title}: {error.detail}", code=error.slug)


class RunEncoder:
    """One run's events, from the turn's: feed each turn event, get the AG-UI events it makes."""

    def __init__(self, thread_id: str, run_id: str) -> None:
        self.thread_id, self.run_id = thread_id, run_id
        self._message_id: str | None = None
        self._calls: dict[str, tuple[str, Any]] = {}
        self._results: set[str] = set()
        self._claimed: set[str] = set()

    def started(self) -> RunStartedEvent:
        return RunStartedEvent(thread_id=self.thread_id, run_id=self.run_id)

    def feed(self, event: TurnEvent) -> list[BaseEvent]:
        match event:
            case TextDelta(text=text):
                return self._text(text)
            case ToolCalled(id=call_id, name=name, arguments=arguments):
                return self._end_text() + self._call(call_id, name, arguments)
            case ToolResult(id=call_id, result=result):
                self._results.add(call_id)
                content = result if isinstance(result, str) else json.dumps(result)
                message_id = uuid.uuid4().hex
                return [
                    *self._end_text(),
                    ToolCallResultEvent(message_id=message_id, tool_call_id=call_id, content=content, role="tool"),
                ]
            case ApprovalRequired():
                return self._end_text()
            case TurnCompleted(result=result):
                pending = [self._pending(a.id, a.name, a.arguments) for a in result.approvals]
                announced = [e for call in pending for e in self._call(call.call_id, call.name, call.arguments)]
                return [
                    *self._end_text(),
                    *announced,
                    finished(self.thread_id, self.run_id, run_result(result), pending),
                ]
            case TurnFailed(error=error):
                return [*self._end_text(), run_error(error)]
        return []

    def _text(self, text: str) -> list[BaseEvent]:
        events: list[BaseEvent] = []
        if self._message_id is None:
            self._message_id = uuid.uuid4().hex
            events.append(TextMessageStartEvent(message_id=self._message_id, role="assistant"))
        events.append(TextMessageContentEvent(message_id=self._message_id, delta=text))
        return events

    def _end_text(self) -> list[BaseEvent]:
        if self._message_id is None:
            return []
        ended = TextMessageEndEvent(message_id=self._message_id)
        self._message_id = None
        return [ended]

    def _call(self, call_id: str, name: str, arguments: Any) -> list[BaseEvent]:
        """A tool call, announced once."""
        if call_id in self._calls:
            return []
        self._calls[call_id] = (name, arguments)
        return [
            ToolCallStartEvent(tool_call_id=call_id, tool_call_name=name),
            ToolCallArgsEvent(tool_call_id=call_id, delta=json.dumps(arguments if arguments is not None else {})),
            ToolCallEndEvent(tool_call_id=call_id),
        ]

    def _pending(self, approval_id: str, name: str, arguments: Any) -> PendingCall:
        """The call an approval stands for: the framework names an approval after its call's id; a provider
        whose call items have an id of their own is matched by tool and arguments among the calls without a
        result (else the call is announced under the approval's id)."""
        found = approval_id if approval_id in self._calls else None
        open_calls = [c for c in self._calls if c not in self._results and c not in self._claimed]
        if found is None:
            found = next((c for c in open_calls if self._calls[c] == (name, arguments)), approval_id)
        self._claimed.add(found)
        return PendingCall(approval_id, found, name, arguments)
