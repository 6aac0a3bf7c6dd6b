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

With the window a commit may keep the document it wrote (the very dict it sent, with the etag the write returned,
and its size as sent). The next claim then asks Cosmos DB for that version only if it changed (``If-None-Match`` on
its read): an unchanged document comes back as 304 with no body, and the claim rebuilds the record from the kept
document (:meth:`KeptWindows.take_version`) instead of receiving and parsing it again. Nobody changes a kept document:
the save built it for the write alone (every container in it new, but for the stored forms of history messages, which
no code changes, see :mod:`~.stored_forms`), the SDK only serializes it, and the claim that takes it restores a new
session from it as from a document read.

Bounded by a count and by memory (the kept messages' estimated by :func:`~.stored_forms.memory_of`, a kept
document's as :data:`DOCUMENT_MEMORY_PER_BYTE` times its size; the least recently kept dropped first), so memory stays
flat however many sessions an instance serves; ``max_bytes=0`` turns it off.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from cosmos_history.domain.stored_forms import Window

SessionKey = tuple[str, str]
"""A session: the user's id and the session's store key."""

DOCUMENT_MEMORY_PER_BYTE = 3
"""Memory of a kept document per byte of its JSON: a session document parsed by ``json.loads`` takes 2.8 times its
size (measured with :mod:`tracemalloc` on a 12 kB document of 30 messages); one built by a save shares the text of
its new messages with their objects and takes less."""


@dataclass(frozen=True)
class KeptVersion:
    """A version of a session as the commit that created it wrote it: the history window it left, and the document
    it sent (``None`` when the commit did not keep it) with its size as sent."""

    etag: str
    window: Window
    document: dict[str, Any] | None = None
    document_bytes: int = 0

    @property
    def memory(self) -> int:
        """The memory it holds, estimated."""
        return self.window.size + DOCUMENT_MEMORY_PER_BYTE * self.document_bytes


class KeptWindows:
    """At most ``max_windows`` windows (one per session: its newest version) holding at most ``max_bytes`` of memory
    together, the least recently kept dropped first."""

    def __init__(self, *, max_bytes: int, max_windows: int = 256) -> None:
        self.max_bytes = max_bytes
        self.max_windows = max_windows
        self._windows: OrderedDict[SessionKey, KeptVersion] = OrderedDict()
        self._bytes = 0

    def keep(
        self,
        session: SessionKey,
        etag: str,
        window: Window | None,
        *,
        document: dict[str, Any] | None = None,
        document_bytes: int | None = None,
    ) -> None:
        """Keep ``window`` as the one a commit that succeeded wrote, creating version ``etag`` of ``session`` (it
        replaces any window of an older version: only the newest can be read again), and with it the ``document``
        it wrote when its size as sent (``document_bytes``) is known; nobody may change the document from now on.
        Too large a version is not kept, and neither is any other of the session then."""
        self._pop(session)
        if window is None or self.max_windows < 1:
            return
        whole = document is not None and document_bytes is not None
        kept = KeptVersion(etag, window, document, document_bytes or 0) if whole else KeptVersion(etag, window)
        if kept.memory > self.max_bytes and kept.document is not None:
            kept = KeptVersion(etag, window)  # the window alone, then: the claim reads the document
        if kept.memory > self.max_bytes:
            return
        self._windows[session] = kept
        self._bytes += kept.memory
        while len(self._windows) > self.max_windows or self._bytes > self.max_bytes:
            _, oldest = self._windows.popitem(last=False)
            self._bytes -= oldest.memory

    def document_etag(self, session: SessionKey) -> str | None:
        """The version of ``session`` whose document is kept, if any (nothing is removed: a claim asks for the
        document only if it is no longer this version, and takes the version once the answer says)."""
        kept = self._windows.get(session)
        return kept.etag if kept is not None and kept.document is not None else None

    def take(self, session: SessionKey, etag: str | None) -> Window | None:
        """The window kept for exactly version ``etag`` of ``session``, removed: the caller owns it from now on.
        A window of another version is dropped (that version was replaced, or never read back here)."""
        kept = self._pop(session)
        return kept.window if kept is not None and etag is not None and kept.etag == etag else None

    def take_version(self, session: SessionKey, etag: str) -> KeptVersion | None:
        """The whole version ``etag`` of ``session`` (its window and its document), removed as :meth:`take` removes
        it; ``None`` when it is not kept with its document (taken meanwhile by another claim, dropped, replaced)."""
        kept = self._windows.get(session)
        taken = self.take(session, etag)  # the one way a window leaves for a claim
        return kept if taken is not None and kept is not None and kept.document is not None else None

    def _pop(self, session: SessionKey) -> KeptVersion | None:
        kept = self._windows.pop(session, None)
        if kept is not None:
            self._bytes -= kept.memory
        return kept

    @property
    def memory_bytes(self) -> int:
        """The kept windows' and documents' memory, estimated."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._windows)
