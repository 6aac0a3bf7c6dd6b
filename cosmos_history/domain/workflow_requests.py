"""What a workflow run shows and takes: its outputs as JSON, its requests for input as pending requests, and
the answers people give turned into what each request asks for."""

from __future__ import annotations

import typing
from typing import Any

from agent_framework import AgentResponse, Content, Message

from cosmos_history.domain.workflow_runs import TEXT, PendingRequest


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
    """A ``request_info`` event as a pending request: an agent's answer in it is shown as its text."""
    data = event.data
    response = getattr(data, "agent_response", None)
    shown = {"text": response.text} if isinstance(response, AgentResponse) else output_json(data)
    return PendingRequest(event.request_id, type(data).__name__, shown, TEXT if _texty(event.response_type) else None)


def _texty(response_type: Any) -> bool:
    """Whether a plain-text answer is what the request takes (a string, a message or a list of messages)."""
    if response_type in (str, Message, Content):
        return True
    return typing.get_origin(response_type) is list and typing.get_args(response_type) == (Message,)


def answer(event: Any, data: Any) -> Any:
    """The answer as the request's response type: plain text becomes a user message where messages are asked."""
    response_type = event.response_type
    if isinstance(data, str) and response_type is Message:
        return Message(role="user", contents=[data])
    if (
        isinstance(data, str)
        and typing.get_origin(response_type) is list
        and typing.get_args(response_type) == (Message,)
    ):
        return [Message(role="user", contents=[data])]
    return data
