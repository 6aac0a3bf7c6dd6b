"""What the model is told when it calls a tool with arguments that do not fit the tool's parameters.

The framework answers such a call with ``"Error: Argument parsing failed."`` (the model cannot tell what
to fix) and keeps pydantic's whole report, documentation URLs included, as the result's exception, which
the API shows as the call's result. This function middleware (the framework's hook for a call's
arguments, which it hands over before its own validation) checks them first against the tool's input
model and, when they do not fit, answers the call with one short line naming the missing and the wrong
fields; the tool does not run. Tools without an input model (an MCP server's, checked against their
JSON schema) keep the framework's own messages, which already name the fields.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from agent_framework import FunctionInvocationContext, FunctionMiddleware
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

MAX_FIELDS = 8
"""At most this many fields are named; a call that wrong needs a fresh look at the schema anyway."""


class ArgumentErrors(FunctionMiddleware):
    """Answers a tool call whose arguments do not validate with a short message, without running it."""

    async def process(self, context: FunctionInvocationContext, call_next: Callable[[], Awaitable[None]]) -> None:
        model = getattr(context.function, "input_model", None)
        arguments = context.arguments
        if isinstance(model, type) and issubclass(model, BaseModel) and isinstance(arguments, Mapping):
            try:
                model.model_validate(dict(arguments))
            except PydanticValidationError as error:
                context.result = invalid_arguments(context.function.name, error)
                return  # short-circuit: the framework neither validates again nor runs the tool
        await call_next()


def invalid_arguments(tool: str, error: PydanticValidationError) -> str:
    """``Error: invalid arguments for add: missing b; a: Input should be a valid integer.``"""
    missing: list[str] = []
    wrong: list[str] = []
    for problem in error.errors(include_url=False, include_input=False)[:MAX_FIELDS]:
        field = ".".join(str(part) for part in problem.get("loc", ())) or "(arguments)"
        kind = problem.get("type")
        if kind == "missing":
            missing.append(field)
        elif kind == "extra_forbidden":
            wrong.append(f"{field}: not a parameter")
        else:
            wrong.append(f"{field}: {_sentence(problem.get('msg', 'invalid value'))}")
    parts = ([f"missing {', '.join(missing)}"] if missing else []) + wrong
    return f"Error: invalid arguments for {tool}: {'; '.join(parts)}. Call it again with arguments that fit its schema."


def _sentence(message: Any) -> str:
    return str(message).rstrip(".")
