"""Validation of request bodies and query strings: clear 4xx errors before any I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cosmos_history.domain.errors import BadRequestError, InvalidSessionIdError, ValidationError
from cosmos_history.domain.records import MAX_LIST_LIMIT
from cosmos_history.settings import HISTORY_MODES, MULTITASKS, HistoryMode, Multitask, Settings

MAX_TITLE_CHARS = 200
_URL_SESSION_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_IDEMPOTENCY_KEY = r"[\x21-\x7e]{1,200}"
"""Compiled on first use (by ``re``'s cache): most requests carry no key."""
DEFAULT_LIST_LIMIT = 20


MAX_APPROVALS = 100
MAX_NAME_CHARS = 64


@dataclass(frozen=True)
class NewSession:
    """A checked ``POST /api/sessions`` body."""

    id: str | None
    mode: HistoryMode | None
    title: str | None
    agent: str | None = None


@dataclass(frozen=True)
class NewMessage:
    """A checked ``POST /api/sessions/{id}/messages`` body."""

    message: str
    mode: HistoryMode | None
    stream: bool = False
    """``"stream": true`` asks for Server-Sent Events, like ``Accept: text/event-stream``."""
    agent: str | None = None
    background: bool = False
    """``"background": true`` queues the turn: 202 at once, the turn runs in a queue worker."""
    multitask: Multitask = "reject"
    """What the message does while another turn of the session runs (the ``MULTITASK`` setting by default)."""


@dataclass(frozen=True)
class Approvals:
    """A person's answers to the tool calls a session waits on: ``(approval id, approved)``."""

    answers: tuple[tuple[str, bool], ...]
    stream: bool = False
    background: bool = False
    multitask: Multitask = "reject"


def parse_idempotency_key(value: str) -> str:
    if not re.fullmatch(_IDEMPOTENCY_KEY, value):
        raise BadRequestError("Idempotency-Key must be 1-200 visible ASCII characters.")
    return value


def parse_session_id(value: str) -> str:
    """A session id as the HTTP API accepts it (in URLs and bodies): 1-128 URL-safe characters, and not
    ``.`` or ``..``, which URL normalisation would turn into another path."""
    if not _URL_SESSION_ID.fullmatch(value) or value in (".", ".."):
        raise InvalidSessionIdError(
            "A session id is 1-128 characters of letters, digits, '.', '_', ':' or '-', and not '.' or '..'."
        )
    return value


def parse_new_session(body: dict[str, Any]) -> NewSession:
    session_id = body.get("id")
    if session_id is not None and not isinstance(session_id, str):
        raise ValidationError("'id' must be a string.")
    if session_id is not None:
        parse_session_id(session_id)
    title = body.get("title")
    if title is not None and (not isinstance(title, str) or len(title) > MAX_TITLE_CHARS):
        raise ValidationError(f"'title' must be a string of at most {MAX_TITLE_CHARS} characters.")
    return NewSession(session_id, parse_mode(body.get("mode")), title, parse_agent(body.get("agent")))


def parse_new_message(body: dict[str, Any], settings: Settings) -> NewMessage:
    message = body.get("message")
    if not isinstance(message, str) or not message.strip():
        raise ValidationError("'message' is required and must be a non-empty string.")
    if len(message) > settings.max_message_chars:
        raise ValidationError(f"'message' is longer than {settings.max_message_chars} characters.")
    return NewMessage(
        message,
        parse_mode(body.get("mode")),
        parse_stream(body),
        parse_agent(body.get("agent")),
        *parse_background(body, settings),
    )


def parse_background(body: dict[str, Any], settings: Settings) -> tuple[bool, Multitask]:
    """``background`` (true/false) and ``multitask`` (one of MULTITASKS; default: the setting). A background
    turn's events are read from its turn, so it cannot stream in the same request."""
    background = body.get("background", False)
    if not isinstance(background, bool):
        raise ValidationError("'background' must be true or false.")
    if background and body.get("stream") is True:
        raise ValidationError(
            "A background turn answers 202 at once: stream its events from its turn's events route instead."
        )
    multitask = body.get("multitask", settings.multitask)
    for choice in MULTITASKS:
        if multitask == choice:
            return background, choice
    raise ValidationError(f"'multitask' must be one of {', '.join(MULTITASKS)}.")


def parse_approvals(body: dict[str, Any], settings: Settings | None = None) -> Approvals:
    """``{"approvals": [{"id": "...", "approved": true}]}``: every answer an id and a boolean decision."""
    answers = body.get("approvals")
    if not isinstance(answers, list) or not 1 <= len(answers) <= MAX_APPROVALS:
        raise ValidationError(f"'approvals' must be a list of 1 to {MAX_APPROVALS} answers.")
    parsed = []
    for answer in answers:
        if not isinstance(answer, dict) or set(answer) != {"id", "approved"}:
            raise ValidationError("Each approval is an object with exactly 'id' and 'approved'.")
        approval_id, approved = answer["id"], answer["approved"]
        if not isinstance(approval_id, str) or not 1 <= len(approval_id) <= 200 or not isinstance(approved, bool):
            raise ValidationError("An approval's 'id' is a non-empty string and 'approved' is true or false.")
        parsed.append((approval_id, approved))
    return Approvals(tuple(parsed), parse_stream(body), *parse_background(body, settings or Settings()))


def parse_stream(body: dict[str, Any]) -> bool:
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ValidationError("'stream' must be true or false.")
    return stream


def parse_agent(value: Any) -> str | None:
    """An agent name as sent; whether such an agent exists is the catalog's answer (404 when not)."""
    if value is not None and (not isinstance(value, str) or not 1 <= len(value) <= MAX_NAME_CHARS):
        raise ValidationError(f"'agent' must be an agent's name (a string of 1 to {MAX_NAME_CHARS} characters).")
    return value


def parse_mode(value: Any) -> HistoryMode | None:
    if value is None:
        return None
    for mode in HISTORY_MODES:
        if value == mode:
            return mode
    raise ValidationError(f"'mode' must be one of {', '.join(HISTORY_MODES)}.")


def parse_limit(raw: str | None, *, default: int = DEFAULT_LIST_LIMIT, maximum: int = MAX_LIST_LIMIT) -> int:
    if raw is None or raw == "":
        return default
    if not _is_small_decimal(raw) or not 1 <= int(raw) <= maximum:
        raise BadRequestError(f"'limit' must be an integer from 1 to {maximum}.")
    return int(raw)


def parse_before(raw: str | None) -> int | None:
    """The history position to page back from (exclusive); absent means the newest message."""
    if raw is None or raw == "":
        return None
    if not _is_small_decimal(raw):
        raise BadRequestError("'before' must be a non-negative integer message index.")
    return int(raw)


def _is_small_decimal(raw: str) -> bool:
    """ASCII digits only (``str.isdigit`` also accepts '²' and other digits ``int`` rejects), and short."""
    return raw.isascii() and raw.isdigit() and len(raw) <= 12
