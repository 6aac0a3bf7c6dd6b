"""One conversation turn: load the session, run the agent once, save it conditionally.

The store and agents are parameters, so unit tests pass fakes and integration
tests the real Cosmos store. Nothing is written unless the model succeeded,
and the write is conditional on the etag read at the start: two turns racing
on one session cannot both land, so no turn silently overwrites another.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import _telemetry as telemetry
from ._agents import Agents
from ._errors import (
    ModeConflictError,
    ModelCallError,
    SessionConflictError,
    SessionExistsError,
    ValidationError,
)
from ._settings import HistoryMode
from ._store import RecordStore, SessionRecord, utc_now

TITLE_CHARS = 60


@dataclass(frozen=True)
class TurnResult:
    session_id: str
    reply: str
    turn: int
    mode: HistoryMode

    def to_json(self) -> dict[str, Any]:
        return {"sessionId": self.session_id, "reply": self.reply, "turn": self.turn, "mode": self.mode}


@telemetry.traced_turn
async def run_turn(
    store: RecordStore,
    agents: Agents,
    *,
    session_id: str,
    message: str,
    mode: HistoryMode | None = None,
) -> TurnResult:
    """Run exactly one agent turn on ``session_id``, creating the session if it does not exist.

    Raises:
        ModeConflictError: ``mode`` differs from the existing session's mode.
        ModelCallError: the model failed; the stored session is unchanged.
        SessionConflictError: another request changed the session during this turn.
    """
    with telemetry.phase("load"):
        record = await store.load(session_id)
    if record is None:
        record = SessionRecord.new(session_id, user_id=store.user_id, mode=mode or store.default_mode)
    elif mode is not None and mode != record.mode:
        raise ModeConflictError(
            f"Session {session_id!r} uses history mode {record.mode!r}; a session's mode never changes."
        )
    telemetry.note_session(record.mode, record.turns)
    agent = agent_for(agents, record.mode)
    try:
        with telemetry.phase("model"):
            response = await agent.run(message, session=record.session)
    except Exception as error:  # any failure of the model call: nothing has been written
        raise ModelCallError("The model call failed; the session was left unchanged. Retry later.") from error
    telemetry.note_model_response(response)

    previous_etag = record.etag
    record.turns += 1
    record.updated_at = utc_now()
    if record.title is None and record.mode == "local":
        record.title = title_from(message)
    try:
        with telemetry.phase("save"):
            saved = await store.save(record, etag=previous_etag)
    except SessionExistsError:
        # A first turn raced another request creating the same id. If that was another user,
        # load raises SessionNotFoundError: their session must look exactly like a missing one.
        await store.load(session_id)
        raise SessionConflictError(
            "The session was created by another request at the same time. Retry.", retry_after=1
        ) from None
    return TurnResult(saved.id, response.text, saved.turns, saved.mode)


def agent_for(agents: Agents, mode: HistoryMode) -> Any:
    """The agent for ``mode``, or a clear error when the configured model API cannot serve it."""
    try:
        return agents[mode]
    except KeyError:
        raise ValidationError("History mode 'service' needs MODEL_API=responses on this deployment.") from None


def title_from(message: str) -> str:
    """The first words of the first message, cut at a word boundary (local mode only: service
    mode documents must hold no message text)."""
    words = " ".join(message.split())
    if len(words) <= TITLE_CHARS:
        return words
    cut = words[:TITLE_CHARS].rsplit(" ", 1)[0] or words[:TITLE_CHARS]
    return cut + "…"
