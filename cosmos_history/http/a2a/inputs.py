"""What an A2A message asks of a turn: new text for the agent, or the answers to a task's pending approvals.

Text parts make the message (joined by newlines). A data part ``{"approvals": [{"id", "approved"}]}`` (the
native API's approvals body) answers the approvals a task waits on, and then the message carries nothing
else; the same JSON as a raw ``application/json`` part is read alike (the framework's ``A2AAgent`` sends
data that way). Files and other data are refused with A2A's ``ContentTypeNotSupportedError``: the agents
take text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from a2a.helpers import get_data_parts
from a2a.types import Message, Role
from a2a.utils.errors import ContentTypeNotSupportedError, InvalidParamsError

from cosmos_history.domain.errors import ProblemError
from cosmos_history.http.bodies import parse_approvals
from cosmos_history.http.calls import is_unicode

JSON = "application/json"


@dataclass(frozen=True)
class Ask:
    """New text for the agent: one turn of the session."""

    text: str


@dataclass(frozen=True)
class Answer:
    """Answers to the pending approvals of the task the message names."""

    approvals: tuple[tuple[str, bool], ...]


def parse_message(message: Message, max_chars: int) -> Ask | Answer:
    """The turn ``message`` asks for.

    Raises:
        InvalidParamsError: not the user's message, empty, too long, or malformed answers.
        ContentTypeNotSupportedError: a part that is neither text nor the approvals' data part.
    """
    if message.role != Role.ROLE_USER:
        raise InvalidParamsError(message="The message must be the user's (role ROLE_USER).")
    texts: list[str] = []
    data: list[object] = []
    for part in message.parts:
        kind = part.WhichOneof("content")
        if kind == "text":
            texts.append(part.text)
        elif kind == "data":
            data.extend(get_data_parts([part]))
        elif kind == "raw" and part.media_type.split(";")[0].strip().lower() == JSON:
            data.append(_json(part.raw))
        else:
            raise ContentTypeNotSupportedError(
                message="This agent takes text parts (and a data part answering approvals), not files."
            )
    if data:
        return _answers(data, texts)
    text = "\n".join(texts)
    if not text.strip():
        raise InvalidParamsError(message="The message has no text: send at least one non-empty text part.")
    if len(text) > max_chars:
        raise InvalidParamsError(message=f"The message is longer than {max_chars} characters.")
    if not is_unicode(text):
        raise InvalidParamsError(message="The message holds a string that is not valid Unicode.")
    return Ask(text)


def _json(raw: bytes) -> object:
    try:
        value = json.loads(raw, parse_constant=_refuse)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidParamsError(message="An application/json part holds no valid JSON.") from None
    if not is_unicode(value):
        raise InvalidParamsError(message="An application/json part holds a string that is not valid Unicode.")
    return value


def _refuse(literal: str) -> object:
    raise ValueError(literal)


def _answers(data: list[object], texts: list[str]) -> Answer:
    body = data[0]
    if len(data) != 1 or texts or not isinstance(body, dict) or set(body) != {"approvals"}:
        raise InvalidParamsError(
            message='A data part answers approvals and comes alone: {"approvals": [{"id": "...", "approved": true}]}.'
        )
    try:
        return Answer(tuple(parse_approvals(body).answers))
    except ProblemError as error:
        raise InvalidParamsError(message=error.detail) from None
