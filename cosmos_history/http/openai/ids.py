"""Response ids: each stored response names the session and the turn that made it, so continuing from
one (``previous_response_id``) needs no lookup table, and the id of a turn never changes.

An id is ``resp_`` plus the base64url of ``"<turn>:<session id>"``. Responses that were not stored
(``store: false``) get a random ``resp_tmp_`` id that names no turn. Ids are not secrets: a session is
read only for its owner, so another user's response id is as unknown as a made-up one.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass

from cosmos_history.domain.errors import ResponseNotFoundError

PREFIX = "resp_"
UNSTORED_PREFIX = "resp_tmp_"


@dataclass(frozen=True)
class ResponseRef:
    session_id: str
    turn: int

    @property
    def id(self) -> str:
        return response_id(self.session_id, self.turn)


def response_id(session_id: str, turn: int) -> str:
    raw = f"{turn}:{session_id}".encode("utf-8", "surrogatepass")
    return PREFIX + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def unstored_response_id() -> str:
    return UNSTORED_PREFIX + uuid.uuid4().hex


def parse_response_id(value: str, *, param: str | None = None) -> ResponseRef:
    """The session and turn a response id names.

    Only the one spelling this app issues is an id: base64 has others for the same bytes, and each
    response has exactly one id.

    Raises:
        ResponseNotFoundError: the id was not made here, or names a response that was never stored.
    """
    not_found = ResponseNotFoundError(not_found_message(value), param=param)
    if not value.startswith(PREFIX) or value.startswith(UNSTORED_PREFIX):
        raise not_found
    encoded = value[len(PREFIX) :]
    try:
        decoded = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode("utf-8", "surrogatepass")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise not_found from None
    turn, _, session_id = decoded.partition(":")
    if not turn.isascii() or not turn.isdigit() or int(turn) < 1 or not session_id or len(session_id) > 128:
        raise not_found
    ref = ResponseRef(session_id, int(turn))
    if ref.id != value:  # another spelling of the same bytes (padding, unused bits, a leading zero): not issued here
        raise not_found
    return ref


def not_found_message(value: str) -> str:
    """The one wording for a response id that names none of the caller's responses, whatever the reason."""
    return f"No response with id {value[:200]!r} was found."


def item_id(kind: str, seed: str | None = None) -> str:
    """An output or input item's id (``msg_…``, ``fc_…``): from ``seed`` when the item has one, else random."""
    return f"{kind}_{seed or uuid.uuid4().hex}"
