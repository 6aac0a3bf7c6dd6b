"""Reading a ``POST /v1/responses`` body: what the turn runs on, and the parameters a response echoes.

Invalid input is a 400 naming the parameter at fault (``param``), as OpenAI's API answers it. Input
is text only: image, file and audio parts are refused with a clear error rather than dropped.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from agent_framework import Content, Message

from cosmos_history.domain.client_tools import ClientTool
from cosmos_history.domain.errors import BadRequestError
from cosmos_history.http.bodies import parse_session_id
from cosmos_history.http.openai.ids import ResponseRef, item_id, parse_response_id
from cosmos_history.settings import Settings

_ROLES = {"user": "user", "system": "system", "developer": "system", "assistant": "assistant"}
_TEXT_PARTS = ("input_text", "output_text", "text")
_TOOL_CHOICES = ("auto", "none", "required")
MAX_TOOLS = 128
MAX_INPUT_ITEMS = 100
TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
"""OpenAI's rule for a function tool's name."""
MAX_METADATA_PAIRS, MAX_METADATA_KEY, MAX_METADATA_VALUE = 16, 64, 512
MIN_OUTPUT_TOKENS = 16
DEFAULT_SAMPLING = 1.0
"""The ``temperature`` and ``top_p`` a response reports when neither the request nor the agent sets one (the
model APIs' default, which OpenAI reports as 1.0)."""
_RANGES = {"temperature": (0.0, 2.0), "top_p": (0.0, 1.0)}
_ECHOED_DEFAULTS: dict[str, Any] = {
    "instructions": None,
    "temperature": None,
    "top_p": None,
    "max_output_tokens": None,
    "max_tool_calls": None,
    "tool_choice": "auto",
    "truncation": "disabled",
    "parallel_tool_calls": True,
    "metadata": {},
    "user": None,
    "safety_identifier": None,
    "prompt_cache_key": None,
    "text": {"format": {"type": "text"}},
    "reasoning": {"effort": None, "summary": None},
}


@dataclass(frozen=True)
class CreateRequest:
    """A parsed create-response body."""

    model: str
    message: str = ""
    inputs: tuple[Message, ...] = ()
    approvals: tuple[tuple[str, bool], ...] | None = None
    client_tools: tuple[ClientTool, ...] = ()
    previous: ResponseRef | None = None
    conversation: str | None = None
    store: bool = True
    stream: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    """Chat options for this run only (the framework's names)."""
    echo: dict[str, Any] = field(default_factory=dict)
    """The request's parameters as a response object repeats them (see :func:`in_effect`)."""
    input_items: tuple[dict[str, Any], ...] = ()
    """The input as items with ids, for ``GET /v1/responses/{id}/input_items``."""
    background: bool = False
    """Answer at once (``queued``); the turn runs in a queue worker (see :mod:`.background`)."""


def parse_create(body: dict[str, Any], settings: Settings) -> CreateRequest:
    model = body.get("model")
    if not isinstance(model, str) or not 1 <= len(model) <= 64:
        raise _bad("'model' is required: the name of one of this app's agents (GET /v1/models lists them).", "model")
    background = _flag(body, "background", default=False)
    previous, conversation = _continuation(body)
    message, inputs, approvals, items = _input(body.get("input"), settings)
    if approvals is not None and previous is None and conversation is None:
        raise _bad("An mcp_approval_response continues a response: send 'previous_response_id'.", "input")
    store = _flag(body, "store", default=True)
    if approvals is not None and not store:
        # Answering consumes the approval: an answer that is not stored would leave it pending, and every
        # repetition would run the approved tool again.
        raise _bad(
            "An mcp_approval_response must be stored: answering consumes the approval, so omit 'store' or set it "
            "to true.",
            "store",
        )
    echo = _echo(body)
    tools = _client_tools(body.get("tools"))
    if background and (not store or tools or inputs):
        # A background response runs later, in a queue worker, from what its turn record keeps: stored, and
        # without the client's own tools (their calls go back to the client, which is not waiting).
        raise _bad(
            "A background response must be stored and cannot use the client's own function tools or their outputs.",
            "background",
        )
    return CreateRequest(
        model=model,
        message=message,
        inputs=inputs,
        approvals=approvals,
        client_tools=tools,
        previous=previous,
        conversation=conversation,
        store=store,
        stream=_flag(body, "stream", default=False),
        background=background,
        options=_options(echo),
        echo={**echo, "tools": [_tool_object(tool, body["tools"][i]) for i, tool in enumerate(tools)]},
        input_items=tuple(items),
    )


def _continuation(body: dict[str, Any]) -> tuple[ResponseRef | None, str | None]:
    previous_id, conversation = body.get("previous_response_id"), body.get("conversation")
    if previous_id is not None and conversation is not None:
        raise _bad("Send 'previous_response_id' or 'conversation', not both.", "conversation")
    if previous_id is not None:
        if not isinstance(previous_id, str):
            raise _bad("'previous_response_id' must be a response id.", "previous_response_id")
        return parse_response_id(previous_id, param="previous_response_id"), None
    if conversation is None:
        return None, None
    if isinstance(conversation, dict) and set(conversation) == {"id"}:
        conversation = conversation["id"]
    if not isinstance(conversation, str):
        raise _bad('\'conversation\' must be a conversation id or {"id": "<conversation id>"}.', "conversation")
    try:
        return None, parse_session_id(conversation)
    except BadRequestError as error:
        raise _bad(f"'conversation' is not a valid id: {error.detail}", "conversation") from None


def _input(
    value: Any, settings: Settings
) -> tuple[str, tuple[Message, ...], tuple[tuple[str, bool], ...] | None, list[dict[str, Any]]]:
    limit = settings.max_message_chars
    if isinstance(value, str):
        if not value.strip() or len(value) > limit:
            raise _bad(f"'input' must be non-empty text of at most {limit} characters.", "input")
        return value, (), None, [_message_item("user", value)]
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_INPUT_ITEMS:
        raise _bad(f"'input' must be text or a list of 1 to {MAX_INPUT_ITEMS} input items.", "input")
    messages: list[Message] = []
    approvals: list[tuple[str, bool]] = []
    items: list[dict[str, Any]] = []
    answered: set[str] = set()
    for index, item in enumerate(value):
        param = f"input[{index}]"
        if not isinstance(item, dict):
            raise _bad("Each input item must be an object.", param)
        kind = item.get("type", "message")
        if kind == "mcp_approval_response":
            approvals.append(_approval(item, param))
            items.append({"id": item_id("mcpr"), **_only(item, "type", "approval_request_id", "approve", "reason")})
        elif kind == "function_call_output":
            call_id, output = _function_output(item, param)
            if call_id in answered:
                raise _bad(f"Function call {call_id!r} has two outputs; send one.", f"{param}.call_id")
            answered.add(call_id)
            messages.append(Message(role="tool", contents=[Content.from_function_result(call_id, result=output)]))
            items.append(
                {"id": item_id("fco"), "type": kind, "call_id": call_id, "output": output, "status": "completed"}
            )
        elif kind == "message":
            role, text = _message(item, param, limit)
            messages.append(Message(role=_ROLES[role], contents=[text]))
            items.append(_message_item(role, text))
        else:
            raise _bad(f"Input items of type {str(kind)[:40]!r} are not supported here.", f"{param}.type")
    if approvals and messages:
        raise _bad("Answer approvals in a request of their own (only mcp_approval_response items).", "input")
    return "", tuple(messages), tuple(approvals) if approvals else None, items


def _message(item: dict[str, Any], param: str, limit: int) -> tuple[str, str]:
    role, content = item.get("role"), item.get("content")
    if role not in _ROLES:
        raise _bad("A message's 'role' is user, system, developer or assistant.", f"{param}.role")
    if isinstance(content, list):
        texts = []
        for part in content:
            if (
                not isinstance(part, dict)
                or part.get("type") not in _TEXT_PARTS
                or not isinstance(part.get("text"), str)
            ):
                raise _bad("Only text content parts (input_text) are supported.", f"{param}.content")
            texts.append(part["text"])
        content = "".join(texts)
    if not isinstance(content, str) or not content.strip() or len(content) > limit:
        raise _bad(f"A message's content must be non-empty text of at most {limit} characters.", f"{param}.content")
    return str(role), content


def _approval(item: dict[str, Any], param: str) -> tuple[str, bool]:
    approval_id, approve = item.get("approval_request_id"), item.get("approve")
    if not isinstance(approval_id, str) or not 1 <= len(approval_id) <= 200 or not isinstance(approve, bool):
        raise _bad("An mcp_approval_response has an 'approval_request_id' and 'approve' (true or false).", param)
    return approval_id, approve


def _function_output(item: dict[str, Any], param: str) -> tuple[str, str]:
    call_id, output = item.get("call_id"), item.get("output")
    if isinstance(output, list):
        output = "".join(p.get("text", "") for p in output if isinstance(p, dict))
    if not isinstance(call_id, str) or not 1 <= len(call_id) <= 200 or not isinstance(output, str):
        raise _bad("A function_call_output has a 'call_id' and a text 'output'.", param)
    return call_id, output


def _client_tools(value: Any) -> tuple[ClientTool, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_TOOLS:
        raise _bad(f"'tools' must be a list of at most {MAX_TOOLS} tools.", "tools")
    tools = []
    for index, tool in enumerate(value):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise _bad(
                "Only 'function' tools can be declared; the agent's own tools run on the server.", f"tools[{index}]"
            )
        name, parameters = tool.get("name"), tool.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(name, str) or not isinstance(parameters, dict):
            raise _bad("A function tool has a 'name' and an object 'parameters' schema.", f"tools[{index}]")
        if not TOOL_NAME.fullmatch(name):
            raise _bad("A function tool's name is 1 to 64 letters, digits, '_' or '-'.", f"tools[{index}].name")
        if tool.get("strict") is not None and not isinstance(tool["strict"], bool):
            raise _bad("'strict' must be true or false.", f"tools[{index}].strict")
        if any(t.name == name for t in tools):
            raise _bad(f"Two tools are named {name!r}; tool names must be unique.", f"tools[{index}].name")
        tools.append(ClientTool(name, str(tool.get("description") or ""), parameters))
    return tuple(tools)


def _echo(body: dict[str, Any]) -> dict[str, Any]:
    echo = {name: body.get(name, default) for name, default in _ECHOED_DEFAULTS.items()}
    for name, (low, high) in _RANGES.items():
        if echo[name] is not None and not (_is_number(echo[name]) and low <= echo[name] <= high):
            raise _bad(f"'{name}' must be a number from {low:g} to {high:g}.", name)
    for name, least in (("max_output_tokens", MIN_OUTPUT_TOKENS), ("max_tool_calls", 1)):
        if echo[name] is not None and (
            isinstance(echo[name], bool) or not isinstance(echo[name], int) or echo[name] < least
        ):
            raise _bad(f"'{name}' must be an integer of at least {least}.", name)
    if echo["instructions"] is not None and not isinstance(echo["instructions"], str):
        raise _bad("'instructions' must be text.", "instructions")
    if echo["tool_choice"] not in _TOOL_CHOICES:
        raise _bad(f"'tool_choice' must be one of {', '.join(_TOOL_CHOICES)}.", "tool_choice")
    if echo["truncation"] not in ("auto", "disabled"):
        raise _bad("'truncation' must be auto or disabled.", "truncation")
    _check_metadata(echo["metadata"])
    return echo


def _check_metadata(metadata: Any) -> None:
    if (
        not isinstance(metadata, dict)
        or len(metadata) > MAX_METADATA_PAIRS
        or not all(len(k) <= MAX_METADATA_KEY for k in metadata)
        or not all(isinstance(v, str) and len(v) <= MAX_METADATA_VALUE for v in metadata.values())
    ):
        raise _bad(
            f"'metadata' is an object of at most {MAX_METADATA_PAIRS} pairs: keys of at most {MAX_METADATA_KEY} "
            f"characters, text values of at most {MAX_METADATA_VALUE}.",
            "metadata",
        )


def in_effect(echo: dict[str, Any], defaults: dict[str, float]) -> dict[str, Any]:
    """The parameters as the response reports them: the sampling values in effect, numbers always (the
    request's, else the agent's own, else the model API's default)."""
    return {
        **echo,
        **{name: echo[name] if echo[name] is not None else defaults.get(name, DEFAULT_SAMPLING) for name in _RANGES},
    }


def _tool_object(tool: ClientTool, sent: dict[str, Any]) -> dict[str, Any]:
    """A client tool as the response lists it, with every field of OpenAI's function tool object."""
    strict = sent.get("strict")
    return {
        "type": "function",
        "name": tool.name,
        "description": tool.description or None,
        "parameters": tool.parameters,
        "strict": strict,
    }


def _options(echo: dict[str, Any]) -> dict[str, Any]:
    """The echoed parameters the model is given, under the framework's option names."""
    names = {"instructions": "instructions", "temperature": "temperature", "top_p": "top_p"}
    options = {option: echo[name] for name, option in names.items() if echo[name] is not None}
    if echo["max_output_tokens"] is not None:
        options["max_tokens"] = echo["max_output_tokens"]
    if echo["tool_choice"] != "auto":
        options["tool_choice"] = echo["tool_choice"]
    return options


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _flag(body: dict[str, Any], name: str, *, default: bool) -> bool:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _bad(f"'{name}' must be true or false.", name)
    return value


def _message_item(role: str, text: str) -> dict[str, Any]:
    part = "output_text" if role == "assistant" else "input_text"
    content = [{"type": part, "text": text}]
    return {"id": item_id("msg"), "type": "message", "role": role, "status": "completed", "content": content}


def _only(item: dict[str, Any], *names: str) -> dict[str, Any]:
    return {name: item.get(name) for name in names}


def _bad(message: str, param: str) -> BadRequestError:
    return BadRequestError(message, param=param)
