"""Tools the client declares and runs itself (the Responses API's ``function`` tools), across requests.

The framework runs a declaration-only :class:`FunctionTool` (``func=None``) by pausing: the run ends
with the model's ``function_call`` marked as a request for caller input, and the next run continues
from a ``function_result`` the caller supplies. The app keeps the ids of the calls it handed out in the
session state (``client_calls``), so the next request is checked against them before the model is paid
for: a model request with a call but no output is one every provider rejects.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from agent_framework import AgentResponse, AgentSession, FunctionTool, Message

from cosmos_history.domain.errors import BadRequestError, ClientCallPendingError, ValidationError

CLIENT_CALLS_STATE = "client_calls"


@dataclass(frozen=True)
class ClientTool:
    """A tool the client declared for one request: the model may call it, the client runs it."""

    name: str
    description: str
    parameters: dict[str, Any]

    def declaration(self) -> FunctionTool:
        return FunctionTool(name=self.name, description=self.description, func=None, input_model=self.parameters)


@dataclass(frozen=True)
class ClientCall:
    """A call of a client tool the turn ended with: the client runs it and sends back its output."""

    call_id: str
    name: str
    arguments: str
    """The arguments as the model wrote them: a JSON text."""

    def to_json(self) -> dict[str, Any]:
        return {"callId": self.call_id, "name": self.name, "arguments": self.arguments}


def client_calls(response: AgentResponse) -> list[ClientCall]:
    """The client-tool calls ``response`` paused on (the framework marks them as requests for input)."""
    return [
        ClientCall(request.call_id or "", request.name or "", _arguments_text(request.arguments))
        for request in response.user_input_requests
        if request.type == "function_call"
    ]


def pending_client_calls(session: AgentSession) -> list[str]:
    calls = session.state.get(CLIENT_CALLS_STATE)
    return [str(c) for c in calls] if isinstance(calls, list) else []


def remember_client_calls(session: AgentSession, calls: Sequence[ClientCall]) -> None:
    if calls:
        session.state[CLIENT_CALLS_STATE] = [c.call_id for c in calls]
    else:
        session.state.pop(CLIENT_CALLS_STATE, None)


def check_tool_names(own: Iterable[str], tools: Sequence[ClientTool]) -> None:
    """A client tool may not take the name of one of the agent's own tools (the framework refuses a run with
    two tools of one name, which no retry would fix).

    Raises:
        BadRequestError: a client tool is named like one of ``own``.
    """
    names = set(own)
    for index, tool in enumerate(tools):
        if tool.name in names:
            raise BadRequestError(
                f"The agent already has a tool named {tool.name!r}; name the client's tool otherwise.",
                param=f"client_tools[{index}].name",
            )


def check_outputs(session: AgentSession, inputs: Iterable[Message]) -> None:
    """A turn's input must hold the output of every client call the session waits for, and no other.

    Raises:
        ClientCallPendingError: a pending call has no output.
        ValidationError: an output answers no pending call.
    """
    pending = pending_client_calls(session)
    answered = [c.call_id for m in inputs for c in m.contents if c.type == "function_result"]
    unknown = [call_id for call_id in answered if call_id not in pending]
    if unknown:
        raise ValidationError(f"No function call {unknown[0]!r} is waiting for its output.", param="inputs")
    missing = [call_id for call_id in pending if call_id not in answered]
    if missing:
        raise ClientCallPendingError(
            f"This conversation waits for the output of function call {missing[0]!r}; "
            "send its output with the next turn.",
            param="inputs",
        )


def _arguments_text(arguments: Any) -> str:
    if isinstance(arguments, str):
        return arguments
    return json.dumps(arguments if arguments is not None else {})
