"""Sub-agents: an agent uses another agent of the app as a tool, each delegation a turn in a child session.

A delegation tool is a plain ``FunctionTool`` marked in the framework's ``additional_properties`` with the
agent it delegates to (``cosmos_history.agents.delegate`` builds one). When the model calls it,
:class:`Delegations` (a function middleware every turn passes to ``agent.run``) runs the child's turn through
the turn service, so the child session is stored, leased, replayed and journalled like any other:

- **The child session** belongs to the parent's user. Its id is derived from the parent session and the
  call (:func:`child_session_id`), so a retried parent turn reaches the same child, and the child turn
  carries the call's idempotency key (the tool journal hands it out, stable across attempts), so a retry
  replays the child's stored answer instead of running it again. The parent lists its children in its
  session state (``GET /api/sessions/{id}`` shows them as ``children``).
- **An approval inside the child** ends the parent's turn too: the delegation raises the framework's
  ``UserInputRequiredException`` with one approval request for the delegation call, which carries the child's
  pending approvals (:data:`~cosmos_history.domain.approvals.DELEGATION`). The parent's caller sees and answers
  the child's approvals through the parent's approvals API (:mod:`cosmos_history.domain.approvals` expands
  and maps them); the framework then runs the delegation call again, which answers the child's approvals
  with the caller's decisions in the child's own approvals turn. The child's pending-approval check, lease
  and replay make each approved tool run exactly once, across restarts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from typing import Any

from agent_framework import AgentSession, Content, FunctionInvocationContext, FunctionMiddleware
from agent_framework.exceptions import UserInputRequiredException

from cosmos_history.domain.approvals import DELEGATION
from cosmos_history.domain.modes import HistoryMode
from cosmos_history.domain.results import TurnRequest, TurnResult
from cosmos_history.domain.tool_journal import IDEMPOTENCY_KEY

DELEGATE_TO = "delegate_to"
"""``additional_properties`` marker of a delegation tool: the name of the agent it delegates to."""
TASK = "task"
"""The delegation tool's one argument: what the child agent is asked."""
CHILDREN_STATE = "children"
"""The parent's ``session.state`` key listing its child sessions' ids."""
MAX_DEPTH = 4
"""Delegations nest at most this deep (an agent delegating to itself would otherwise never end)."""
MAX_CHILDREN = 200

ChildTurns = Callable[[TurnRequest, str], Awaitable[TurnResult]]
"""Runs one turn for a user: the turn service's ``run``."""

_depth: ContextVar[int] = ContextVar("delegation_depth", default=0)


def delegate_target(tool: Any) -> str | None:
    """The agent ``tool`` delegates to, or ``None`` for any other tool."""
    target = (getattr(tool, "additional_properties", None) or {}).get(DELEGATE_TO)
    return target if isinstance(target, str) else None


def child_session_id(parent_id: str, call: str) -> str:
    """The child session of one delegation: the same for every attempt of the call, distinct across parents."""
    return "sub-" + hashlib.sha256(json.dumps([parent_id, call]).encode()).hexdigest()[:40]


def children_of(session: AgentSession) -> list[str]:
    children = session.state.get(CHILDREN_STATE)
    return [str(c) for c in children] if isinstance(children, list) else []


def _remember_child(session: AgentSession, child_id: str) -> None:
    children = children_of(session)
    if child_id not in children:
        session.state[CHILDREN_STATE] = [*children, child_id][-MAX_CHILDREN:]


class Delegations(FunctionMiddleware):
    """Runs the delegation tools' calls of one turn as turns of child sessions (see the module docstring).

    It must come after the turn's tool journal, which notes the call and hands out its idempotency key.
    """

    def __init__(
        self, run_child: ChildTurns, *, parent_id: str, session: AgentSession, caller: str, mode: HistoryMode
    ) -> None:
        self.run_child = run_child
        self.parent_id = parent_id
        self.mode = mode
        """The parent's history mode, which its children keep (a ``service`` parent keeps no text; nor do they)."""
        self.session = session
        self.caller = caller

    async def process(self, context: FunctionInvocationContext, call_next: Callable[[], Awaitable[None]]) -> None:
        agent = delegate_target(context.function)
        if agent is None:
            await call_next()
            return
        depth = _depth.get()
        if depth >= MAX_DEPTH:
            context.result = f"Error: delegations nest at most {MAX_DEPTH} deep; {agent!r} was not asked."
            return
        call_id = str(context.metadata.get("call_id") or "")
        occurrence = context.metadata.get("function_call_occurrence_id")
        key = context.kwargs.get(IDEMPOTENCY_KEY)
        arguments = _values(context.arguments)
        answered = context.metadata.get("approval_response")
        marker = answered.additional_properties.get(DELEGATION) if isinstance(answered, Content) else None
        if isinstance(marker, Mapping) and isinstance(marker.get("answers"), Mapping):
            child_id = str(marker["sessionId"])
            decisions = tuple((str(i), bool(ok)) for i, ok in marker["answers"].items())
            request = TurnRequest(child_id, "", agent=agent, idempotency_key=key, approvals=decisions)
        else:
            child_id = child_session_id(self.parent_id, key or call_id)
            task = str(arguments.get(TASK) or "")
            request = TurnRequest(child_id, task, mode=self.mode, agent=agent, idempotency_key=key)
        token = _depth.set(depth + 1)
        try:
            result = await self.run_child(request, self.caller)
        finally:
            _depth.reset(token)
        _remember_child(self.session, child_id)
        if result.approvals:
            call = Content.from_function_call(call_id, context.function.name, arguments=arguments, id=occurrence)
            waiting = {"agent": agent, "sessionId": child_id, "approvals": [a.to_json() for a in result.approvals]}
            request_id = occurrence or call_id
            pause = Content.from_function_approval_request(
                id=request_id, function_call=call, additional_properties={DELEGATION: waiting}
            )
            raise UserInputRequiredException([pause], f"{agent} waits for approvals.")
        context.result = json.dumps({"sessionId": child_id, "agent": agent, "reply": result.reply}, ensure_ascii=False)


def _values(arguments: Any) -> dict[str, Any]:
    if hasattr(arguments, "model_dump"):
        return dict(arguments.model_dump())
    return dict(arguments or {})
