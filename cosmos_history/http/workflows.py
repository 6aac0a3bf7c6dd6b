"""The routes of workflows: list them, start a run (202; it runs on the queue), read a run, answer its requests.

Runs belong to their caller: another user's run id is a 404, as an unknown one is.
"""

from __future__ import annotations

import re
from typing import Any

from azurefunctions.extensions.http.fastapi import Response

from cosmos_history.domain.errors import BackgroundNotConfiguredError, BadRequestError
from cosmos_history.domain.workflows import WorkflowRunNotFoundError, WorkflowRuns
from cosmos_history.http.calls import Call
from cosmos_history.http.responses import json_response
from cosmos_history.http.sse import stored_events_stream
from cosmos_history.http.turns import parse_after

_RUN_ID = re.compile(r"^wfrun-[0-9a-f]{32}$")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _runs(call: Call) -> WorkflowRuns:
    if call.workflows is None:
        raise BackgroundNotConfiguredError("This app runs no workflows.")
    return call.workflows


def _run_id(call: Call) -> str:
    run_id = call.route("id")
    if not _RUN_ID.match(run_id):
        raise WorkflowRunNotFoundError(f"This caller has no workflow run {run_id[:80]!r}.")
    return run_id


def run_location(run_id: str) -> str:
    return f"/api/workflows/runs/{run_id}"


async def list_workflows_route(call: Call) -> Response:
    return json_response({"workflows": _runs(call).listing() if call.workflows is not None else []})


async def start_run_route(call: Call) -> Response:
    """``{"input": ...}``: 202 with the queued run and its Location."""
    body = await call.json_body()
    unknown = sorted(set(body) - {"input"})
    if unknown or "input" not in body:
        raise BadRequestError('The body must be {"input": ...}' + (f"; unknown fields: {unknown}" if unknown else ""))
    run = await _runs(call).start(call.route("name"), body["input"], caller=call.user_id)
    return json_response(run.public_json(), status=202, headers={"Location": run_location(run.id)})


async def get_run_route(call: Call) -> Response:
    run = await _runs(call).read(_run_id(call), caller=call.user_id)
    return json_response(run.public_json())


async def run_events_route(call: Call) -> Response:
    """SSE: the run's events after the client's last one (``Last-Event-ID`` or ``?after=``), then its new ones
    until it ends or waits for input (from storage: any instance serves it)."""
    run_id = _run_id(call)
    after = parse_after(call, None)
    return stored_events_stream(await _runs(call).follow(run_id, caller=call.user_id, after=after))


async def respond_route(call: Call) -> Response:
    """``{"responses": [{"id", "data"}]}``: 202 with the run queued again to take the answers."""
    run_id = _run_id(call)
    body = await call.json_body()
    run = await _runs(call).respond(run_id, _responses(body), caller=call.user_id)
    return json_response(run.public_json(), status=202, headers={"Location": run_location(run.id)})


async def cancel_run_route(call: Call) -> Response:
    """200 the run, ``cancelled``; 409 when it had ended."""
    run = await _runs(call).cancel(_run_id(call), caller=call.user_id)
    return json_response(run.public_json())


def _responses(body: dict[str, Any]) -> list[tuple[str, Any]]:
    given = body.get("responses")
    if set(body) != {"responses"} or not isinstance(given, list):
        raise BadRequestError('The body must be {"responses": [{"id": "<request id>", "data": <answer>}]}.')
    answers = []
    for item in given:
        if not isinstance(item, dict) or set(item) != {"id", "data"} or not isinstance(item["id"], str):
            raise BadRequestError('Each response must be {"id": "<request id>", "data": <answer>}.')
        if not _REQUEST_ID.match(item["id"]):
            raise BadRequestError("A request id is letters, digits, '.', '_', ':' or '-' (at most 128).")
        answers.append((item["id"], item["data"]))
    return answers
