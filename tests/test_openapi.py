"""The published OpenAPI document matches the app: every route of the table, and closed schemas, so the
fuzzing test (schemathesis' status and schema conformance checks) proves every status and field."""

from __future__ import annotations

import json
from typing import Any

import function_app
from cosmos_history.http.openapi import OPENAPI_PATH

DOCUMENT: dict[str, Any] = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


def documented_operations() -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, operations in DOCUMENT["paths"].items()
        for method in operations
        if method in HTTP_METHODS
    }


FALLBACK = {("GET", "/")}
"""Served by the catch-all route every app registers (``cosmos_history/http/fallback.py``): the API's root."""


def test_the_document_describes_exactly_the_routes_of_the_route_table():
    routes = {(route.method, "/" + route.path) for route in function_app.ROUTES} | FALLBACK

    assert documented_operations() == routes


def test_public_routes_and_only_they_need_no_credentials():
    public = {(route.method, "/" + route.path) for route in function_app.ROUTES if route.public} | FALLBACK

    anonymous = {
        (method.upper(), path)
        for path, operations in DOCUMENT["paths"].items()
        for method, operation in operations.items()
        if method in HTTP_METHODS and operation.get("security") == [{}]
    }
    assert anonymous == public


def test_every_api_route_documents_the_caller_and_store_failures_it_can_answer():
    for route in function_app.ROUTES:
        if route.public:
            continue
        responses = DOCUMENT["paths"]["/" + route.path][route.method.lower()]["responses"]
        assert {"401", "503"} <= set(responses), f"{route.method} /{route.path}"


def open_objects(schema: Any, where: str) -> list[str]:
    """Object schemas that would accept fields the document does not name, or miss a required one."""
    found = []
    if isinstance(schema, dict):
        if "properties" in schema:
            if schema.get("additionalProperties") is not False:
                found.append(f"{where}: additionalProperties is not false")
            missing = set(schema["properties"]) - set(schema.get("required", []))
            if missing:
                found.append(f"{where}: {sorted(missing)} not required")
        for key, value in schema.items():
            found += open_objects(value, f"{where}/{key}")
    elif isinstance(schema, list):
        for index, value in enumerate(schema):
            found += open_objects(value, f"{where}[{index}]")
    return found


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        section = "responses" if "/responses/" in schema["$ref"] else "schemas"
        schema = DOCUMENT["components"][section][name]
    return schema


def test_every_response_body_schema_is_closed_and_names_every_field_it_requires():
    problems = []
    for path, operations in DOCUMENT["paths"].items():
        if path == "/openapi.json":
            continue  # the document itself
        for method, operation in operations.items():
            if method not in HTTP_METHODS:
                continue
            for status, response in operation["responses"].items():
                for media, content in resolve(response).get("content", {}).items():
                    schema = content.get("schema", {})
                    problems += open_objects(resolve(schema), f"{method.upper()} {path} {status} {media}")
                    problems += [p for ref in refs(schema) for p in open_objects(resolve(ref), ref["$ref"])]
    assert problems == []


def refs(schema: Any) -> list[dict[str, Any]]:
    if isinstance(schema, dict):
        own = [schema] if "$ref" in schema else []
        return own + [r for value in schema.values() for r in refs(value)]
    if isinstance(schema, list):
        return [r for value in schema for r in refs(value)]
    return []
