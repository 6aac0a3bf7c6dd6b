"""The MCP tools: one per agent (``message``, optional ``sessionId``) and ``approve``; their calls become turns.

Tool failures the caller (or its model) can act on are MCP tool errors: a result with ``isError`` whose
structured content is the problem+json document of the native API (a session that does not exist, a
turn in progress, approvals pending, bad arguments, a failing model). Asking for a tool that does not
exist is a JSON-RPC error (``-32602``), as the MCP specification does it.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError

from cosmos_history.domain.errors import ProblemError, StoreUnavailableError, ValidationError
from cosmos_history.domain.results import TurnResult
from cosmos_history.http.bodies import MAX_NAME_CHARS, parse_approvals, parse_session_id
from cosmos_history.http.calls import Call, is_unicode
from cosmos_history.http.mcp import turns
from cosmos_history.http.responses import problem_body

logger = logging.getLogger(__name__)

SERVER_NAME = "cosmos-history"
APPROVE_TOOL = "approve"

_SESSION_ID = {
    "type": "string",
    "pattern": "^[A-Za-z0-9._:-]{1,128}$",
    "description": (
        "The session to continue (a previous result's sessionId); omit it to start a new session "
        "(an id no session has yet starts one with that id, as in the HTTP API)."
    ),
}
_TOOL_CALL = {
    "type": "object",
    "properties": {"id": {"type": "string"}, "tool": {"type": "string"}, "arguments": {}, "result": {}},
    "required": ["id", "tool", "arguments", "result"],
}
_APPROVAL = {
    "type": "object",
    "properties": {"id": {"type": "string"}, "tool": {"type": "string"}, "arguments": {}},
    "required": ["id", "tool", "arguments"],
}
TURN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "sessionId": {"type": "string"},
        "agent": {"type": ["string", "null"]},
        "turn": {"type": "integer"},
        "status": {"enum": ["completed", "awaiting_approval"]},
        "reply": {"type": "string"},
        "toolCalls": {"type": "array", "items": _TOOL_CALL},
        "approvals": {"type": "array", "items": _APPROVAL},
    },
    "required": ["sessionId", "agent", "turn", "status", "reply", "toolCalls", "approvals"],
}
APPROVE_INPUT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "sessionId": {**_SESSION_ID, "description": "The session whose turn waits for approvals."},
        "approvals": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "properties": {"id": {"type": "string"}, "approved": {"type": "boolean"}},
                "required": ["id", "approved"],
                "additionalProperties": False,
            },
            "description": "An answer for every pending approval (the ids a result's approvals name).",
        },
    },
    "required": ["sessionId", "approvals"],
    "additionalProperties": False,
}


def agent_input(max_message_chars: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "message": {"type": "string", "minLength": 1, "maxLength": max_message_chars},
            "sessionId": _SESSION_ID,
        },
        "required": ["message"],
        "additionalProperties": False,
    }


def mcp_server(call: Call, outages: list[StoreUnavailableError]) -> Server[Any]:
    """A low-level MCP server for one request, bound to its caller (their sessions, their identity).

    A tool call the session store could not serve is noted in ``outages`` as well as answered: the route then
    answers the request as every route answers a store outage (a 503 with Retry-After, and the runtime's
    chance to recreate a deleted container)."""

    async def list_tools(ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None) -> Any:
        return types.ListToolsResult(tools=declared_tools(call))

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> Any:
        result, outage = await run_tool(call, params.name, params.arguments or {})
        if outage is not None:
            outages.append(outage)
        return result

    return Server(SERVER_NAME, on_list_tools=list_tools, on_call_tool=call_tool)


def declared_tools(call: Call) -> list[types.Tool]:
    """Each agent as a tool named and described as the agent is, then ``approve``."""
    agent_tools = [
        types.Tool(
            name=name,
            description=call.agents[name].description or f"Talk to the {name} agent.",
            input_schema=agent_input(call.settings.max_message_chars),
            output_schema=TURN_SCHEMA,
        )
        for name in sorted(call.agents)
        if name != APPROVE_TOOL  # an agent cannot take the approve tool's name
    ]
    approve = types.Tool(
        name=APPROVE_TOOL,
        description=(
            "Answer the tool calls a session's turn waits on (approve or decline each), which continues "
            "that turn: approved calls run exactly once."
        ),
        input_schema=APPROVE_INPUT,
        output_schema=TURN_SCHEMA,
    )
    return [*agent_tools, approve]


async def run_tool(
    call: Call, name: str, arguments: dict[str, Any]
) -> tuple[types.CallToolResult, StoreUnavailableError | None]:
    """The turn a tool call asks for, as a tool result; the caller's mistakes and the turn's failures are
    tool errors (``isError``), never exceptions with internals on the wire. A store outage is also returned."""
    if name != APPROVE_TOOL and name not in call.agents:
        raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {name[:MAX_NAME_CHARS]}")
    try:
        if not is_unicode(arguments):
            raise ValidationError("The arguments hold a string that is not valid Unicode (a lone surrogate escape).")
        if name == APPROVE_TOOL:
            session_id, answers = parse_approve(arguments)
            result = await turns.approve(call, session_id, answers)
        else:
            message, session_id = parse_ask(arguments, call.settings.max_message_chars)
            result = await turns.ask(call, name, message, session_id)
    except ProblemError as error:
        if isinstance(error, StoreUnavailableError):
            return tool_error(error), error  # raised by the route after the exchange (and logged there)
        if not error.kind.caller_fault and error.log_each:  # as the HTTP routes log them: types only, no user text
            cause = type(error.__cause__).__name__ if error.__cause__ is not None else "-"
            logger.warning("MCP tool call failed: %s (caused by %s)", error.title, cause)
        return tool_error(error), None
    except Exception as error:
        # Types only: an exception's text may quote the user's message.
        logger.error("Unhandled %s in the MCP tool call", type(error).__name__)
        logger.debug("MCP tool call failure details", exc_info=error)
        return tool_error(ProblemError("The server failed to handle this request.")), None
    return turn_result(result), None


def parse_ask(arguments: dict[str, Any], max_chars: int) -> tuple[str, str | None]:
    _only(arguments, {"message", "sessionId"})
    message = arguments.get("message")
    if not isinstance(message, str) or not message.strip():
        raise ValidationError("'message' is required and must be a non-empty string.")
    if len(message) > max_chars:
        raise ValidationError(f"'message' is longer than {max_chars} characters.")
    session_id = arguments.get("sessionId")
    return message, None if session_id is None else _session_id(session_id)


def parse_approve(arguments: dict[str, Any]) -> tuple[str, tuple[tuple[str, bool], ...]]:
    _only(arguments, {"sessionId", "approvals"})
    session_id = _session_id(arguments.get("sessionId"))
    return session_id, parse_approvals({"approvals": arguments.get("approvals")}).answers


def _session_id(value: Any) -> str:
    if not isinstance(value, str):
        raise ValidationError("'sessionId' must be a session id (a previous result's sessionId).")
    return parse_session_id(value)


def _only(arguments: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(arguments) - allowed)
    if unknown:
        raise ValidationError(
            f"Unknown argument(s): {', '.join(unknown)}; this tool takes {', '.join(sorted(allowed))}."
        )


def turn_json(result: TurnResult) -> dict[str, Any]:
    """A turn as the tools' structured content (``tool`` names the agent's tool in calls and approvals)."""
    return {
        "sessionId": result.session_id,
        "agent": result.agent,
        "turn": result.turn,
        "status": result.status,
        "reply": result.reply,
        "toolCalls": [
            {"id": c.id, "tool": c.name, "arguments": c.arguments, "result": c.result} for c in result.tool_calls
        ],
        "approvals": [{"id": a.id, "tool": a.name, "arguments": a.arguments} for a in result.approvals],
    }


def turn_result(result: TurnResult) -> types.CallToolResult:
    text = result.reply
    if result.approvals:
        waiting = "; ".join(f"{a.name} {json.dumps(a.arguments)} (approval id {a.id})" for a in result.approvals)
        text = (
            f"{text}\n\n" if text else ""
        ) + f"Waiting for approval in session {result.session_id}: {waiting}. Answer with the '{APPROVE_TOOL}' tool."
    return types.CallToolResult(
        content=[types.TextContent(text=text)] if text else [], structured_content=turn_json(result)
    )


def tool_error(error: ProblemError) -> types.CallToolResult:
    """The native API's problem document, as an MCP tool error (a retry-after hint included)."""
    problem = problem_body(error)
    if error.retry_after is not None:
        problem["retryAfter"] = error.retry_after
    return types.CallToolResult(
        content=[types.TextContent(text=f"{error.title}: {error.detail}")],
        structured_content={"error": problem},
        is_error=True,
    )
