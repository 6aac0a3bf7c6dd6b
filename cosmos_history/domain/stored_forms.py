"""A save writes the loaded messages that did not change in the JSON form they were read in.

``AgentSession.to_dict()`` serializes every message of the window on every save, although all but the
turn's new ones were loaded unchanged. The store keeps, for each loaded history message, the stored JSON form
it was restored from and its fingerprint at that moment (:func:`~.message_keys.message_key`);
:func:`session_dict` then serializes only the messages that are new or no longer match their fingerprint, and
places the stored forms of the others where they were. A context provider may change a loaded message in
place: its fingerprint then differs and it is serialized afresh, so a stale copy is never written back.

What this relies on: a stored form is what ``to_dict()`` gives for the message restored from it (the framework's
serialization is a fixed point over a JSON round trip; ``tests/test_stored_forms.py`` checks it for every kind of
content a turn stores). A form written by an older framework version is written back as it was read, unchanged,
as long as its message is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agent_framework import AgentSession, InMemoryHistoryProvider, Message

from cosmos_history.domain.message_keys import message_key

HISTORY = InMemoryHistoryProvider.DEFAULT_SOURCE_ID


@dataclass(frozen=True)
class _Loaded:
    """One loaded history message, its fingerprint at load and the JSON form it was read in."""

    message: Message
    """Held, so that its ``id`` cannot be reused by another object while the record lives."""
    key: bytes
    form: dict[str, Any]


@dataclass
class StoredForms:
    """The loaded history messages' stored forms, by the identity of the message restored from each."""

    loaded: dict[int, _Loaded] = field(default_factory=dict)

    @classmethod
    def of(cls, messages: Sequence[Message], forms: Sequence[Any]) -> StoredForms:
        """The forms of ``messages``, restored in order from ``forms`` (messages without a fingerprint are left out)."""
        loaded = {}
        if len(messages) == len(forms):
            for message, form in zip(messages, forms, strict=True):
                key = message_key(message) if isinstance(form, dict) else None
                if key is not None:
                    loaded[id(message)] = _Loaded(message, key, form)
        return cls(loaded)

    def form_of(self, message: Message) -> dict[str, Any] | None:
        """The stored form of ``message`` if it is a loaded message still as it was loaded, else ``None``."""
        entry = self.loaded.get(id(message))
        if entry is None or entry.message is not message or message_key(message) != entry.key:
            return None
        return entry.form

    def form_ids(self) -> set[int]:
        """The ids of the stored forms (values read from a stored document: JSON, checked before they were written)."""
        return {id(entry.form) for entry in self.loaded.values()}

    def __len__(self) -> int:
        return len(self.loaded)


def history_forms(session: dict[str, Any]) -> list[Any]:
    """The stored history messages of a serialized session (``AgentSession.to_dict()``), in order."""
    history = session.get("state", {}).get(HISTORY)
    messages = history.get("messages") if isinstance(history, dict) else None
    return messages if isinstance(messages, list) else []


def session_dict(session: AgentSession, forms: StoredForms | None) -> dict[str, Any]:
    """``session.to_dict()``, with each loaded, unchanged history message in the form it was stored in."""
    history = session.state.get(HISTORY)
    messages = history.get("messages") if isinstance(history, dict) else None
    if not forms or type(session) is not AgentSession or not isinstance(messages, list):
        return session.to_dict()
    reused = [forms.form_of(message) if type(message) is Message else None for message in messages]
    if all(form is None for form in reused):
        return session.to_dict()
    assert isinstance(history, dict)
    fresh = [message for message, form in zip(messages, reused, strict=True) if form is None]
    shadow = AgentSession(session_id=session.session_id, service_session_id=session.service_session_id)
    shadow.state = {**session.state, HISTORY: {**history, "messages": fresh}}
    data = shadow.to_dict()
    serialized = iter(data["state"][HISTORY]["messages"])
    data["state"][HISTORY]["messages"] = [form if form is not None else next(serialized) for form in reused]
    return data
