"""The history windows this instance's commits just wrote, kept for the next turn on the same session.

A local-mode turn restores its session's window from the document it reads (``AgentSession.from_dict``: every
message and content rebuilt, then fingerprinted and measured), although, when the previous turn ran on this same
instance, those are the very messages that turn committed. After a commit that succeeded, the store keeps the
:class:`~.stored_forms.Window` it wrote under the version the commit created (the session's key and the etag the
write returned); the next turn's read that returns that same version takes it (:meth:`KeptWindows.take`) and is
restored by :func:`~.stored_forms.restore` with the kept messages in place. The document is still read and
parsed: the version, and everything but the kept messages, come from it.

Why this is safe:

- A version is identified by its etag, which changes with every write: another instance's write, a tool journal's
  note, a deletion and re-creation all give a version this table holds nothing for.
- A window is owned by one turn at a time: :meth:`~KeptWindows.take` removes it, and only a commit that succeeded
  puts one back, under the etag it returned. A turn that fails, loses its commit or raises keeps nothing, so its
  changes (a context provider may change messages in place) are never served; the next turn restores as usual.
- It holds only messages written unchanged in the form they were restored from (fingerprint-checked at the
  save), so each is what restoring that form gives; the rest are restored from the document.

Bounded by a count and by the kept messages' memory (estimated by :func:`~.stored_forms.memory_of`; the least
recently kept dropped first), so memory stays flat however many sessions an instance serves; ``max_bytes=0`` turns
it off.
"""

from __future__ import annotations

from collections import OrderedDict

from cosmos_history.domain.stored_forms import Window

SessionKey = tuple[str, str]
"""A session: the user's id and the session's store key."""


class KeptWindows:
    """At most ``max_windows`` windows (one per session: its newest version) holding at most ``max_bytes`` of memory
    together, the least recently kept dropped first."""

    def __init__(self, *, max_bytes: int, max_windows: int = 256) -> None:
        self.max_bytes = max_bytes
        self.max_windows = max_windows
        self._windows: OrderedDict[SessionKey, tuple[str, Window]] = OrderedDict()
        self._bytes = 0

    def keep(self, session: SessionKey, etag: str, window: Window | None) -> None:
        """Keep ``window`` as the one a commit that succeeded wrote, creating version ``etag`` of ``session`` (it
        replaces any window of an older version: only the newest can be read again). Too large a window is not
        kept, and neither is any other of the session then."""
        self._pop(session)
        if window is None or window.size > self.max_bytes or self.max_windows < 1:
            return
        self._windows[session] = (etag, window)
        self._bytes += window.size
        while len(self._windows) > self.max_windows or self._bytes > self.max_bytes:
            _, (_, oldest) = self._windows.popitem(last=False)
            self._bytes -= oldest.size

    def take(self, session: SessionKey, etag: str | None) -> Window | None:
        """The window kept for exactly version ``etag`` of ``session``, removed: the caller owns it from now on.
        A window of another version is dropped (that version was replaced, or never read back here)."""
        kept = self._pop(session)
        return kept[1] if kept is not None and etag is not None and kept[0] == etag else None

    def _pop(self, session: SessionKey) -> tuple[str, Window] | None:
        kept = self._windows.pop(session, None)
        if kept is not None:
            self._bytes -= kept[1].size
        return kept

    @property
    def memory_bytes(self) -> int:
        """The kept windows' memory, estimated."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._windows)
