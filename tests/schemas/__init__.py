"""Validators for the vendored Open Responses and OpenAI schemas (see README.md in this folder)."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

HERE = Path(__file__).resolve().parent
MCP_ITEMS = ("McpCall", "McpApprovalRequest")
"""OpenAI's items for tools run on the server, which Open Responses leaves to extensions."""


def _load(name: str) -> dict[str, Any]:
    return json.loads((HERE / name).read_text(encoding="utf-8"))


@cache
def openai_document() -> dict[str, Any]:
    return _load("openai-responses.json")


@cache
def openresponses_document() -> dict[str, Any]:
    """Open Responses, where output items may also be OpenAI's MCP items (and nothing else beyond the spec)."""
    document = _load("openresponses.json")
    borrowed = json.loads(json.dumps(openai_document()["$defs"]).replace('"#/$defs/', '"#/$defs/openai.'))
    document["$defs"].update({f"openai.{name}": schema for name, schema in borrowed.items()})
    extra = [{"$ref": f"#/$defs/openai.{name}"} for name in MCP_ITEMS]
    document["$defs"]["ResponseResource"]["properties"]["output"]["items"]["anyOf"] += extra
    for event in ("ResponseOutputItemAddedStreamingEvent", "ResponseOutputItemDoneStreamingEvent"):
        document["$defs"][event]["properties"]["item"]["anyOf"] += copy.deepcopy(extra)
    return document


def _errors(document: dict[str, Any], root: dict[str, Any], value: Any) -> list[str]:
    validator = Draft202012Validator({"$defs": document["$defs"], **root})
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in validator.iter_errors(value)]


def response_errors(response: dict[str, Any]) -> list[str]:
    """Why ``response`` is not a valid response object of either specification (empty: it is)."""
    found = []
    for name, document in (("Open Responses", openresponses_document()), ("OpenAI", openai_document())):
        found += [f"{name}: {e}" for e in _errors(document, document["response"], response)]
    return found


def event_errors(event: dict[str, Any]) -> list[str]:
    """Why ``event`` is not a valid streaming event of its type in either specification (empty: it is)."""
    found = []
    for name, document in (("Open Responses", openresponses_document()), ("OpenAI", openai_document())):
        schema = document["events"].get(event.get("type"))
        if schema is None:
            found.append(f"{name}: no streaming event of type {event.get('type')!r}")
            continue
        found += [f"{name}: {e}" for e in _errors(document, schema, event)]
    return found
