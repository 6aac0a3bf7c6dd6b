"""``POST /api/ag-ui/{agent}``: one AG-UI run of an agent, answered as AG-UI events over SSE.

The route only builds a request for the one turn service (:meth:`Turns.stream`, as the native API's
messages and approvals routes do), so a run is exactly the turn the native API runs: same session
document, lease, etag, idempotency and exactly-once approvals.

Errors: a request that is no run at all (not JSON, not a ``RunAgentInput``, a bad ``threadId``, an unknown
agent, a client tool shadowing the agent's, no valid caller, too large) is a 4xx problem+json, as on every
route, and so is a store outage (503 with Retry-After). A run the turn service refuses (approvals pending
or already answered, a turn in progress, another agent's thread, a failing model) is a run that failed:
``RUN_STARTED`` then ``RUN_ERROR`` whose ``code`` is the problem's slug, which AG-UI clients show as the
run's error. Nothing is stored for either. Disconnecting ends the response, never the turn (its reply is
saved all the same).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from ag_ui.core import BaseEvent
from ag_ui.encoder import EventEncoder
from azurefunctions.extensions.http.fastapi import Response, StreamingResponse

from cosmos_history.domain.errors import AgentNotFoundError, ProblemError, StoreUnavailableError
from cosmos_history.domain.streaming import TurnStream
from cosmos_history.http.agui.encoder import RunEncoder, finished, run_error
from cosmos_history.http.agui.requests import HISTORY_FACTOR, RunRequest, parse_run
from cosmos_history.http.agui.snapshot import Thread, load_thread, snapshot
from cosmos_history.http.calls import Call, read_json_object

_ENCODER = EventEncoder()


async def agui_route(call: Call) -> Response:
    """Run the agent once on the thread (or show the thread to a client joining it)."""
    agent = call.route("agent")
    if agent not in call.agents:
        raise AgentNotFoundError(f"No agent is called {agent[:64]!r} (GET /api/agents lists them).")
    body = await read_json_object(call.request, call.settings.max_request_bytes * HISTORY_FACTOR)
    run = parse_run(body, call.settings)
    call.turns.check_client_tools(agent, run.client_tools)
    encoder = RunEncoder(run.thread_id, run.run_id)
    try:
        thread = None
        if run.joins or not run.holds_history:  # the client may not know the thread's history: show it
            thread = await load_thread(call.store, run.thread_id, agent=agent, default_agent=call.agents.default)
        if run.joins:
            return _sse(_joined(encoder, thread, agent))
        stream = await call.turns.stream(run.turn_request(agent), caller=call.user_id)
    except StoreUnavailableError:
        raise  # a 503 with Retry-After, and the runtime's chance to recreate a deleted container
    except ProblemError as error:
        return _sse(_refused(encoder, error))
    return _sse(_turn(encoder, _shown(thread, run), stream))


def _shown(thread: Thread | None, run: RunRequest) -> list[BaseEvent]:
    """The snapshot a run opens with: the stored history and the run's new messages, when there is history."""
    if thread is None or not thread.messages:
        return []
    return [snapshot([*thread.messages, *run.new_messages])]


async def _joined(encoder: RunEncoder, thread: Thread | None, agent: str) -> AsyncIterator[BaseEvent]:
    """A run that runs no turn: the thread's history, and its pending approvals as the run's interrupts."""
    yield encoder.started()
    if thread is None:
        thread = Thread(turns=0, agent=agent, messages=[], pending=[])
    if thread.messages:
        yield snapshot(thread.messages)
    status = "awaiting_approval" if thread.pending else "completed"
    result = {"sessionId": encoder.thread_id, "turn": thread.turns, "status": status, "agent": thread.agent or agent}
    yield finished(encoder.thread_id, encoder.run_id, result, thread.pending)


async def _refused(encoder: RunEncoder, error: ProblemError) -> AsyncIterator[BaseEvent]:
    yield encoder.started()
    yield run_error(error)


async def _turn(encoder: RunEncoder, opening: Sequence[BaseEvent], stream: TurnStream) -> AsyncIterator[BaseEvent]:
    """The turn's events as AG-UI events; the last one is ``RUN_FINISHED`` or ``RUN_ERROR``."""
    yield encoder.started()
    for event in opening:
        yield event
    try:
        async for turn_event in stream.events():
            for event in encoder.feed(turn_event):
                yield event
    except Exception as error:  # an encoding failure: the turn itself goes on and is saved
        yield run_error(error)


def _sse(events: AsyncIterator[BaseEvent]) -> StreamingResponse:
    async def encoded() -> AsyncIterator[str]:
        async for event in events:
            yield _ENCODER.encode(event)

    return StreamingResponse(
        encoded(),
        media_type=_ENCODER.get_content_type(),
        # Proxies must pass each event on as it comes instead of buffering the answer.
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


__all__ = ["agui_route"]
