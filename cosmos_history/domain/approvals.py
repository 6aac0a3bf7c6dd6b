"""Tool calls and human approvals across stateless requests, on the framework's own mechanism.

A tool declared with ``approval_mode="always_require"`` makes the agent's run end with a
``function_approval_request`` instead of running it; the framework keeps the request in the session
state (``state["tool_approval"]``), so it survives ``to_dict``/``from_dict`` in both history modes.
The next run, given ``function_approval_response`` contents, runs (or declines) the calls.

The framework does not make that exactly-once across requests (answering again on an older saved
state runs the tool again), so the app decides from the stored session, under the session's lease
and etag, before it calls the framework: only a pending request can be answered, and the arguments
that run are the stored call's, never the client's.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from agent_framework import AgentResponse, AgentSession, Content, Message

from cosmos_history.domain.errors import ApprovalUnknownError, ValidationError
from cosmos_history.domain.tool_journal import UNKNOWN_RESULT, StartedCall, ToolStatus, outcome_of

DELEGATION = "delegation"
"""``additional_properties`` key of an approval request that stands for a child session's pending approvals
(:mod:`cosmos_history.domain.delegation`): ``{"agent", "sessionId", "approvals": [{"id","name","arguments"}]}``;
its answer adds ``"answers": {id: approved}``."""

# The framework keeps its approval state under this key (``agent_framework._tools._TOOL_APPROVAL_STATE_KEY``,
# a private name): read in this one place; tests/test_approvals.py fails if the framework moves it.
TOOL_APPROVAL_STATE = "tool_approval"


@dataclass(frozen=True)
class PendingApproval:
    """A tool call waiting for a person: the id they answer, and what would run."""

    id: str
    name: str
    arguments: Any
    session_id: str | None = None
    """The child session that asks, for an approval inside a delegation (``None``: this session's own)."""

    def to_json(self) -> dict[str, Any]:
        own = {"id": self.id, "name": self.name, "arguments": self.arguments}
        return own if self.session_id is None else {**own, "sessionId": self.session_id}


@dataclass(frozen=True)
class ToolCall:
    """A tool call that ran during a turn (a declined one has the framework's rejection as result)."""

    id: str
    name: str
    arguments: Any
    result: Any
    status: ToolStatus = "completed"
    """``unknown``: the call had started in an attempt that crashed and was not run again."""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "arguments": self.arguments,
            "result": self.result,
            "status": self.status,
        }


def pending_requests(session: AgentSession) -> list[Content]:
    """The approval requests the session is waiting on, as the framework stored them."""
    state = session.state.get(TOOL_APPROVAL_STATE)
    stored = state.get("pending_approval_requests", []) if isinstance(state, dict) else []
    requests = [item if isinstance(item, Content) else Content.from_dict(item) for item in stored]
    return [r for r in requests if r.type == "function_approval_request"]


def pending_approvals(session: AgentSession) -> list[PendingApproval]:
    """What the session's caller answers: its own pending calls, and the pending calls of its delegations."""
    return [approval for request in pending_requests(session) for approval in expanded_approvals(request)]


def delegation_of(request: Content) -> dict[str, Any] | None:
    """The child approvals an approval request stands for, when it is a delegation's."""
    marker = request.additional_properties.get(DELEGATION) if request.additional_properties else None
    return marker if isinstance(marker, dict) and isinstance(marker.get("approvals"), list) else None


def approval_answers(session: AgentSession, answers: Sequence[tuple[str, bool]], *, session_id: str) -> Message:
    """The message that continues the waiting turn: one response per pending request, built from the
    stored request (its call and arguments), never from anything the client sent but id and decision.

    Raises:
        ApprovalUnknownError: an id is not pending (unknown, forged, or answered already).
        ValidationError: an id is answered twice, or a pending request is left unanswered.
    """
    requests = pending_requests(session)
    pending = {approval.id: request for request in requests for approval in expanded_approvals(request)}
    decided: dict[str, bool] = {}
    for approval_id, approved in answers:
        if approval_id not in pending:
            raise ApprovalUnknownError(
                f"No approval {approval_id!r} is pending on this session.", session_id=session_id, pending=list(pending)
            )
        if approval_id in decided:
            raise ValidationError(f"Approval {approval_id!r} is answered twice.")
        decided[approval_id] = approved
    missing = [approval_id for approval_id in pending if approval_id not in decided]
    if missing:
        raise ValidationError(f"Answer every pending approval; unanswered: {', '.join(missing)}.")
    return Message(role="user", contents=[_answer(request, decided) for request in requests])


def _answer(request: Content, decided: dict[str, bool]) -> Content:
    """The framework's answer to one request; a delegation's is "continue", carrying the child's answers."""
    marker = delegation_of(request)
    if marker is None:
        return request.to_function_approval_response(approved=decided[request.id or ""])
    response = request.to_function_approval_response(approved=True)
    answers = {str(a["id"]): decided[str(a["id"])] for a in marker["approvals"]}
    properties = dict(response.additional_properties or {})
    response.additional_properties = {**properties, DELEGATION: {**marker, "answers": answers}}
    return response


def tool_calls(response: AgentResponse, answered: Message | None = None) -> list[ToolCall]:
    """The tool calls that ran (have a result) in ``response``, in order of their results.

    An approved call was requested in an earlier turn, so its name and arguments come from ``answered``
    (the approval answers this turn ran on).
    """
    contents = list(_contents(response.messages))
    earlier = [a.function_call for a in (answered.contents if answered else []) if a.function_call is not None]
    calls = {c.call_id: c for c in [*earlier, *contents] if c.type == "function_call"}
    return [
        ToolCall(
            r.call_id or "",
            calls[r.call_id].name or "",
            json_arguments(calls[r.call_id].arguments),
            json_result(r),
            outcome_of(r),
        )
        for r in contents
        if r.type == "function_result" and r.call_id in calls
    ]


def with_unknown(calls: list[ToolCall], unmet: list[StartedCall]) -> tuple[ToolCall, ...]:
    """The turn's tool calls, with those a crashed attempt started and this one did not run again (declined,
    or not asked for again) reported as unknown: they may or may not have taken effect."""
    unmet_ids = {started.call_id for started in unmet}
    shown = [replace(c, status="unknown") if c.id in unmet_ids else c for c in calls]
    seen = {c.id for c in calls}
    shown += [ToolCall(c.call_id, c.name, None, UNKNOWN_RESULT, "unknown") for c in unmet if c.call_id not in seen]
    return tuple(shown)


def requested_approvals(response: AgentResponse) -> list[PendingApproval]:
    return [
        approval
        for request in response.user_input_requests
        if request.type == "function_approval_request"
        for approval in expanded_approvals(request)
    ]


def expanded_approvals(request: Content) -> list[PendingApproval]:
    """What the caller answers for one approval request: its call, or the child approvals a delegation's stands for."""
    marker = delegation_of(request)
    if marker is None:
        return [_pending(request)]
    child = str(marker.get("sessionId") or "")
    return [PendingApproval(str(a["id"]), str(a["name"]), a.get("arguments"), child) for a in marker["approvals"]]


def _pending(request: Content) -> PendingApproval:
    call = request.function_call
    return PendingApproval(
        request.id or "", call.name or "" if call else "", json_arguments(call.arguments if call else None)
    )


def _contents(messages: Iterable[Message]) -> Iterable[Content]:
    for message in messages:
        yield from message.contents


def json_result(result: Content) -> Any:
    """A tool's result as a JSON value (the framework's error text when the tool raised)."""
    value = result.result if result.exception is None else f"Error: {result.exception}"
    return value if isinstance(value, (str, int, float, bool, type(None), list, dict)) else str(value)


def json_arguments(arguments: Any) -> Any:
    """Arguments as JSON values: models send them as a JSON string, tools may hold a dict."""
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except ValueError:
            return arguments
    return arguments
