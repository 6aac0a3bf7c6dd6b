"""Cheap content fingerprints of messages, so work done on a message once need not be done again each turn.

A local-mode turn loads the window, and each turn the framework counts every window message's tokens again and
``AgentSession.to_dict()`` serializes every one of them again, although all but the newest were loaded
unchanged. A message's fingerprint is the :mod:`marshal` bytes of its own attributes and of its contents'
(plain values only: ``marshal`` is written in C and refuses anything else), so two messages with the same
fingerprint hold the same values of the same types and serialize, and count, alike. A message holding a value
``marshal`` cannot write (an SDK object in ``raw_representation``, a registered custom type) has no fingerprint:
it is simply measured as before. Identity is never trusted: a context provider may change a loaded message in
place, and then its fingerprint changes with it.

Fingerprints are written in marshal's format version 2 (:data:`_FORMAT`): from version 3 on, marshal flags every
object referenced more than once at that moment so that it can share it, and so the same unchanged message gave
other bytes as soon as anything else held one of its strings (the framework's per-turn copies of the window do):
a message loaded unchanged looked changed on the next save, and its token count was counted again.

:class:`TokenCounts` keeps the framework's token count of each message by fingerprint, in a bounded table shared
by the process (a window's messages come back every turn of their session).
"""

from __future__ import annotations

import hashlib
import marshal
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from agent_framework import Content, Message

_TYPES = (Message, Content)
"""The framework types walked by their attributes: their ``to_dict`` is a function of those attributes alone."""
_PLAIN = (str, int, float, bool, type(None))
_FORMAT = 2
"""marshal's format version: the last whose bytes depend only on values, never on reference counts."""
_WALKED = "walked"
"""Tags a fingerprint made by :func:`_plain`'s walk, where every tuple is a tag, as distinct from marshal's own."""


class _NotPlain(Exception):
    """A value a fingerprint cannot cover."""


def _plain(value: Any) -> Any:
    """``value`` made of marshal's types only: messages and contents as ``(class name, attributes)``."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is list or kind is tuple:
        return (kind.__name__, [_plain(item) for item in value])
    if kind is dict:
        return {key: _plain(item) for key, item in value.items()} if all(type(k) is str for k in value) else _bad()
    if kind in _TYPES:
        return (kind.__qualname__, _plain(vars(value)))
    return _bad()


def _bad() -> Any:
    raise _NotPlain


def content_key(content: Content) -> bytes | None:
    """The fingerprint of one content (``None``: it holds a value a fingerprint cannot cover)."""
    if type(content) is not Content:
        return None
    state = vars(content)
    items = state.get("items")
    try:
        if items is None:  # the common case: marshal walks the attributes alone
            return marshal.dumps((Content.__qualname__, state), _FORMAT)
        if type(items) is list and all(type(item) is Content for item in items):  # a result's items
            nested = [content_key(item) for item in items]
            if None in nested:
                return None
            rest = {name: value for name, value in state.items() if name != "items"}
            return marshal.dumps((Content.__qualname__, rest, nested), _FORMAT)
    except ValueError:  # marshal: "unmarshallable object" (a nested content, say): walked below
        pass
    try:  # tagged: a walked value never reads like one marshal wrote directly
        return marshal.dumps((_WALKED, _plain(content)), _FORMAT)
    except (ValueError, _NotPlain):
        return None


def _contents_key(message: Message) -> list[bytes] | None:
    keys = []
    for content in message.contents:
        key = content_key(content)
        if key is None:
            return None
        keys.append(key)
    return keys


def message_key(message: Message) -> bytes | None:
    """The fingerprint of everything ``message.to_dict()`` is made of (``None``: not fingerprintable)."""
    if type(message) is not Message:
        return None
    contents = _contents_key(message)
    if contents is None:
        return None
    others = {name: value for name, value in vars(message).items() if name != "contents"}
    try:
        return marshal.dumps((Message.__qualname__, others, contents), _FORMAT)
    except ValueError:
        try:
            return marshal.dumps((_WALKED, Message.__qualname__, _plain(others), contents), _FORMAT)
        except (ValueError, _NotPlain):
            return None


def token_key(message: Message) -> bytes | None:
    """The fingerprint of what the framework's token count reads: role, message id and contents. Not the
    message's ``additional_properties``, where the per-turn copies carry their attribution and annotations."""
    contents = _contents_key(message)
    if contents is None or type(message.role) is not str or type(message.message_id) not in (str, type(None)):
        return None
    return hashlib.blake2b(
        marshal.dumps((message.role, message.message_id, contents), _FORMAT), digest_size=20
    ).digest()


class TokenCounts:
    """The framework's token count of each message seen, by :func:`token_key`, at most ``limit`` of them.

    ``count`` is the exact counter (the framework's own, on one message); the table only saves calling it again.
    """

    def __init__(self, count: Callable[[Message], Awaitable[int]], *, limit: int = 16_384) -> None:
        self._count = count
        self._limit = limit
        self._known: dict[bytes, int] = {}

    async def of(self, message: Message) -> int:
        key = token_key(message)
        if key is None:
            return await self._count(message)
        known = self._known.get(key)
        if known is None:
            known = await self._count(message)
            if len(self._known) >= self._limit:
                del self._known[next(iter(self._known))]  # the oldest entry
            self._known[key] = known
        return known

    async def total(self, messages: Sequence[Message]) -> int:
        return sum([await self.of(message) for message in messages])

    def __len__(self) -> int:
        return len(self._known)
