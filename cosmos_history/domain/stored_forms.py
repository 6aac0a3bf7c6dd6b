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

The same check decides what a commit may leave behind for the next turn (:class:`Window`, kept by
:class:`~.kept_windows.KeptWindows`): the messages it wrote in their stored form, still as restored from it, are
exactly what restoring that form again would give, so :func:`restore` takes them back instead of deserializing
them; the others are restored from the document as any load restores them.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agent_framework import AgentSession, InMemoryHistoryProvider, Message

from cosmos_history.domain.archive import history_messages, json_size
from cosmos_history.domain.message_keys import message_key

HISTORY = InMemoryHistoryProvider.DEFAULT_SOURCE_ID


@dataclass
class _Loaded:
    """One loaded history message, its fingerprint at load and the JSON form it was read in."""

    message: Message
    """Held, so that its ``id`` cannot be reused by another object while the record lives."""
    key: bytes
    form: dict[str, Any]
    size: int | None = None
    """``json_size(form)``, once measured (a message keeps it for as long as it is written unchanged)."""

    def measured(self) -> int:
        if self.size is None:
            self.size = json_size(self.form)
        return self.size


@dataclass(frozen=True)
class Kept:
    """A history message a commit wrote in the form it was restored from, unchanged: what restoring it gives."""

    message: Message
    key: bytes
    size: int


@dataclass(frozen=True)
class Window:
    """The history a commit wrote, as the next turn may take it back: each message written unchanged in its
    stored form (:class:`Kept`), or ``None`` for one serialized afresh (restored from the document, as any load
    restores it)."""

    kept: tuple[Kept | None, ...]
    size: int
    """The kept messages' memory, estimated (:func:`memory_of`)."""


@dataclass
class StoredForms:
    """The loaded history messages' stored forms, by the identity of the message restored from each; and, for one
    save, what it found out about the history it writes (each message fingerprinted and serialized once)."""

    loaded: dict[int, _Loaded] = field(default_factory=dict)
    _checked: tuple[list[Message], list[_Loaded | None]] | None = field(default=None, repr=False)
    _fresh: dict[int, tuple[Message, bytes, Any]] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, messages: Sequence[Message], forms: Sequence[Any], window: Window | None = None) -> StoredForms:
        """The forms of ``messages``, restored in order from ``forms`` (messages without a fingerprint are left out);
        with the ``window`` they were taken back from, the kept ones keep their fingerprint and size."""
        loaded = {}
        kept: Sequence[Kept | None] = window.kept if window is not None else [None] * len(forms)
        if len(messages) == len(forms) == len(kept):
            for message, form, known in zip(messages, forms, kept, strict=True):
                if known is not None and known.message is message and isinstance(form, dict):
                    loaded[id(message)] = _Loaded(message, known.key, form, known.size)
                    continue
                key = message_key(message) if isinstance(form, dict) else None
                if key is not None:
                    loaded[id(message)] = _Loaded(message, key, form)
        return cls(loaded)

    def _entry(self, message: Message) -> _Loaded | None:
        entry = self.loaded.get(id(message)) if type(message) is Message else None
        if entry is None or entry.message is not message or message_key(message) != entry.key:
            return None
        return entry

    def form_of(self, message: Message) -> dict[str, Any] | None:
        """The stored form of ``message`` if it is a loaded message still as it was loaded, else ``None``."""
        entry = self._entry(message)
        return entry.form if entry is not None else None

    def sizes(self, messages: Sequence[Message]) -> list[int]:
        """Bytes of each of ``messages`` in the document a save writes: a loaded message's still as it was loaded is
        its stored form's (measured once), any other's is its serialized form's (:meth:`fresh_forms`).

        Each message is fingerprinted once for the save: the document it writes (:func:`written`) takes these same
        answers when its history is still the very same messages. The budget measures and the save builds the
        document in one step of the domain, with no other code in between (a history that changed meanwhile, by
        archiving, say, is checked anew)."""
        entries = [self._entry(message) for message in messages]
        self._checked = (list(messages), entries)
        fresh = iter(self.fresh_forms([m for m, entry in zip(messages, entries, strict=True) if entry is None]))
        return [entry.measured() if entry is not None else json_size(next(fresh)) for entry in entries]

    def checked(self, messages: Sequence[Message]) -> list[_Loaded | None]:
        """The entry of each of ``messages`` still as it was loaded (``None`` for the others): :meth:`sizes`' answers
        when they were for these very messages (taken: used once), else fingerprinted now."""
        answers, self._checked = self._checked, None
        if answers is not None and len(answers[0]) == len(messages) and all(map(operator.is_, answers[0], messages)):
            return answers[1]
        return [self._entry(message) for message in messages]

    def fresh_forms(self, messages: Sequence[Message]) -> list[Any]:
        """Each message serialized as ``AgentSession.to_dict()`` writes it into the history, made once: a form made
        earlier in this save is reused while the message's fingerprint is the one it was made from."""
        keys = [message_key(message) for message in messages]
        forms = [self._made(message, key) for message, key in zip(messages, keys, strict=True)]
        missing = [message for message, form in zip(messages, forms, strict=True) if form is None]
        if missing:
            made = iter(_serialized(missing))
            forms = [form if form is not None else next(made) for form in forms]
            for message, key, form in zip(messages, keys, forms, strict=True):
                if key is not None:
                    self._fresh[id(message)] = (message, key, form)
        return forms

    def _made(self, message: Message, key: bytes | None) -> Any:
        made = self._fresh.get(id(message)) if key is not None else None
        return made[2] if made is not None and made[0] is message and made[1] == key else None

    def form_ids(self) -> set[int]:
        """The ids of the stored forms (values read from a stored document: JSON, checked before they were written)."""
        return {id(entry.form) for entry in self.loaded.values()}

    def __len__(self) -> int:
        return len(self.loaded)


def _serialized(messages: list[Message]) -> list[Any]:
    """``messages`` as ``AgentSession.to_dict()`` serializes them in a history."""
    shadow = AgentSession(session_id="forms")
    shadow.state = {HISTORY: {"messages": messages}}
    return shadow.to_dict()["state"][HISTORY]["messages"]  # type: ignore[no-any-return]


def history_forms(session: dict[str, Any]) -> list[Any]:
    """The stored history messages of a serialized session (``AgentSession.to_dict()``), in order."""
    history = session.get("state", {}).get(HISTORY)
    messages = history.get("messages") if isinstance(history, dict) else None
    return messages if isinstance(messages, list) else []


def session_dict(session: AgentSession, forms: StoredForms | None) -> dict[str, Any]:
    """``session.to_dict()``, with each loaded, unchanged history message in the form it was stored in."""
    return written(session, forms)[0]


def written(session: AgentSession, forms: StoredForms | None) -> tuple[dict[str, Any], Window | None]:
    """:func:`session_dict`, and the :class:`Window` a commit of it leaves for the next turn (``None``: no history,
    or a session the framework serializes on its own)."""
    history = session.state.get(HISTORY)
    messages = history.get("messages") if isinstance(history, dict) else None
    if type(session) is not AgentSession or not isinstance(messages, list) or not messages:
        return session.to_dict(), None
    reused = forms.checked(messages) if forms else []
    if not any(reused):
        return session.to_dict(), None
    assert forms is not None and isinstance(history, dict)
    fresh = iter(forms.fresh_forms([message for message, entry in zip(messages, reused, strict=True) if not entry]))
    shadow = AgentSession(session_id=session.session_id, service_session_id=session.service_session_id)
    shadow.state = {**session.state, HISTORY: {**history, "messages": []}}
    data = shadow.to_dict()
    data["state"][HISTORY]["messages"] = [entry.form if entry else next(fresh) for entry in reused]
    return data, _window(reused)


def _window(reused: list[_Loaded | None]) -> Window:
    """What the next turn may take back: each loaded message written unchanged, once (a message the history holds
    twice is restored the second time, as restoring the document would give two objects)."""
    seen: set[int] = set()
    kept: list[Kept | None] = []
    for entry in reused:
        if entry is None or id(entry.message) in seen:
            kept.append(None)
            continue
        seen.add(id(entry.message))
        kept.append(Kept(entry.message, entry.key, entry.measured()))
    return Window(tuple(kept), sum(memory_of(k) for k in kept if k is not None))


OBJECT_BYTES = 1_700
"""Memory of a message's or a content's attributes (``__dict__``s of some 10 and 45 entries), measured with
:mod:`tracemalloc` on restored messages (3.4 kB for a one-text message; 2 kB more per kB of its text)."""


def memory_of(kept: Kept) -> int:
    """The memory a kept message holds, estimated: its objects, and its text twice (in them and in its
    fingerprint)."""
    return OBJECT_BYTES * (1 + len(kept.message.contents)) + 2 * kept.size


def restore(data: dict[str, Any], window: Window | None = None) -> tuple[AgentSession, StoredForms | None]:
    """``AgentSession.from_dict(data)`` and its history's stored forms; with the ``window`` the commit that wrote
    ``data`` left (the caller vouches for that: same document version), its kept messages are taken back in place
    of restoring them. A window that does not match the document's history is ignored."""
    forms = history_forms(data)
    if window is None or not forms or len(window.kept) != len(forms):
        session = AgentSession.from_dict(data)
        messages = history_messages(session.state)
        return session, (StoredForms.of(messages, forms) if messages else None)
    # Identity is never trusted alone: a kept message changed since its commit is restored from its form instead.
    window = Window(tuple(k if k is not None and message_key(k.message) == k.key else None for k in window.kept), 0)
    state = data["state"]
    fresh = [form for form, kept in zip(forms, window.kept, strict=True) if kept is None]
    session = AgentSession.from_dict({**data, "state": {**state, HISTORY: {**state[HISTORY], "messages": fresh}}})
    restored = iter(session.state[HISTORY]["messages"])
    messages = [kept.message if kept is not None else next(restored) for kept in window.kept]
    session.state[HISTORY]["messages"] = messages
    return session, StoredForms.of(messages, forms, window)
