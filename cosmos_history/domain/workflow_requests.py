"""What a workflow run shows and takes: its outputs as JSON, its requests for input as pending requests, and
the answers people give turned into what each request asks for.

An agent inside a workflow whose tool needs approval (``approval_mode="always_require"``) asks through the
framework's ``AgentExecutor``: a ``request_info`` whose data is the ``function_approval_request`` content. It is
shown as a :data:`TOOL_APPROVAL` request with the tool's name and arguments, and answered with
``{"approved": true|false}``, which becomes the framework's ``function_approval_response``."""

from __future__ import annotations

import typing
from typing import Any

from agent_framework import AgentResponse, Content, Message

from cosmos_history.domain.errors import BadRequestError
from cosmos_history.domain.workflow_runs import APPROVAL, TEXT, PendingRequest

TOOL_APPROVAL = "ToolApprovalRequest"
"""The ``type`` of a pending request that is a tool's approval (its data: ``{"name", "arguments"}``)."""


def output_json(output: Any) -> Any:
    """A workflow output as JSON: an agent's answer as its author and text, plain values as they are."""
    if isinstance(output, AgentResponse):
        return {"author": output.messages[-1].author_name if output.messages else None, "text": output.text}
    if isinstance(output, Message):
        return {"role": output.role, "author": output.author_name, "text": output.text}
    if isinstance(output, list) and all(isinstance(item, Message) for item in output):
        return [output_json(item) for item in output]
    if output is None or isinstance(output, str | int | float | bool | dict | list):
        return output
    return str(output)


def pending_request(event: Any) -> PendingRequest:
    """A ``request_info`` event as a pending request: an agent's answer in it is shown as its text, a tool's
    approval as the tool's name and arguments."""
    data = event.data
    if _approval(data):
        call = data.function_call
        shown = {"name": call.name if call else None, "arguments": _arguments(call)}
        return PendingRequest(event.request_id, TOOL_APPROVAL, shown, APPROVAL)
    response = getattr(data, "agent_response", None)
    shown = {"text": response.text} if isinstance(response, AgentResponse) else output_json(data)
    return PendingRequest(event.request_id, type(data).__name__, shown, TEXT if _texty(event.response_type) else None)


def _approval(data: Any) -> bool:
    return isinstance(data, Content) and data.type == "function_approval_request"


def _arguments(call: Content | None) -> Any:
    """The call's arguments as JSON (a string the model sent that is not JSON stays as it is)."""
    if call is None:
        return None
    try:
        return call.parse_arguments()
    except ValueError:
        return call.arguments


def check_answer(request: PendingRequest, data: Any) -> None:
    """Refuse an answer of the wrong shape for ``request`` before it is recorded.

    Raises:
        BadRequestError: text is asked and ``data`` is not a string; an approval is asked and ``data`` is not
            ``{"approved": true|false}``.
    """
    if request.answer == TEXT and not isinstance(data, str):
        raise BadRequestError(f"The answer to {request.id!r} must be text (a JSON string).")
    if request.answer == APPROVAL and not (
        isinstance(data, dict) and set(data) == {"approved"} and isinstance(data["approved"], bool)
    ):
        raise BadRequestError(f'The answer to the tool approval {request.id!r} must be {{"approved": true|false}}.')


def _texty(response_type: Any) -> bool:
    """Whether a plain-text answer is what the request takes (a string, a message or a list of messages)."""
    if response_type in (str, Message, Content):
        return True
    return typing.get_origin(response_type) is list and typing.get_args(response_type) == (Message,)


def answer(event: Any, data: Any) -> Any:
    """The answer as the request's response type: plain text becomes a user message where messages are asked,
    ``{"approved": ...}`` the framework's approval response where a tool's approval is asked."""
    response_type = event.response_type
    if _approval(event.data) and isinstance(data, dict):
        return event.data.to_function_approval_response(approved=data.get("approved") is True)
    if isinstance(data, str) and response_type is Message:
        return Message(role="user", contents=[data])
    if (
        isinstance(data, str)
        and typing.get_origin(response_type) is list
        and typing.get_args(response_type) == (Message,)
    ):
        return [Message(role="user", contents=[data])]
    return data
