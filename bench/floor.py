"""What a local-mode turn would cost without the per-message work that stays optional: a measurement, never a setting.

``python -m bench compare --floor`` serves this checkout a second time with ``BENCH_FLOOR=1``; that host's
``bench.bench_app`` then calls :func:`switch_off_for_process`. Switched off:

- **this app's fingerprint checks** (``message_key``, ``token_key``): each object is fingerprinted once and trusted
  from then on. The real app fingerprints a window message again at the claim, in the input budget and in the
  budget check, because a provider, a tool or the response may change it in place across an ``await``;
- **the framework's per-turn copies of the window** (``SessionContext.extend_messages`` and the function-invocation
  layer's): the window's own objects go to the model call.

Everything else runs as it does in the app: the document's bytes through the Cosmos DB SDK both ways, the new
messages serialized once, the budget's archive planning, the summary step and the token count of the input. So the
floor's ratio to service mode is as close to #23 target 2's 1.2x as this app can get by removing its own checks:
the rest is what carrying a window costs in the framework and the SDK (bench/optimisations.md, "Where #23 stands").
Unsafe by design: a message changed in place is written back stale. Never import this outside the benchmark.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from unittest import mock

from agent_framework import _sessions as framework_sessions
from agent_framework import _tools as framework_tools
from agent_framework._types import normalize_messages

from cosmos_history.domain import message_keys, stored_forms

ENV = "BENCH_FLOOR"
"""Set to ``1`` in a benchmark host's environment to switch the checks off for that process."""

_MEMO_LIMIT = 200_000


def _memoized(fingerprint: Callable[[Any], bytes | None]) -> Callable[[Any], bytes | None]:
    """``fingerprint`` computed once per object and trusted afterwards (the object is held, so its id stays its)."""
    memo: dict[int, tuple[Any, bytes | None]] = {}

    def once(value: Any) -> bytes | None:
        known = memo.get(id(value))
        if known is None or known[0] is not value:
            if len(memo) >= _MEMO_LIMIT:
                memo.clear()
            known = memo[id(value)] = (value, fingerprint(value))
        return known[1]

    return once


def _extend_without_copies(
    self: Any, source: str | object, messages: Sequence[Any], *, origin_session_ids: Sequence[str] | None = None
) -> None:
    """``SessionContext.extend_messages`` keeping the messages themselves (no copy, no attribution)."""
    source_id = source if isinstance(source, str) else str(source.source_id)  # type: ignore[attr-defined]
    self.context_messages.setdefault(source_id, []).extend(messages)


def _listed(messages: Any) -> list[Any]:
    """The function-invocation layer's input as a list of its own, holding the same messages (not copies)."""
    return list(normalize_messages(messages))


def _switches() -> list[tuple[Any, str, Any]]:
    return [
        (stored_forms, "message_key", _memoized(message_keys.message_key)),
        (message_keys, "token_key", _memoized(message_keys.token_key)),
        (framework_sessions.SessionContext, "extend_messages", _extend_without_copies),
        (framework_tools, "_copy_messages_for_function_invocation", _listed),
    ]


@contextlib.contextmanager
def checks_off() -> Iterator[list[str]]:
    """Switch the checks off until the block ends; yields what was switched (a name the installed framework no
    longer has is left out, and so missing from the list)."""
    with contextlib.ExitStack() as stack:
        switched = []
        for owner, name, replacement in _switches():
            if hasattr(owner, name):
                stack.enter_context(mock.patch.object(owner, name, replacement))
                switched.append(f"{getattr(owner, '__name__', owner)}.{name}")
        yield switched


_FOR_PROCESS = contextlib.ExitStack()
"""Holds the process-wide switch: a context manager nobody holds is closed when collected, switching back on."""


def switch_off_for_process() -> list[str]:
    """:func:`checks_off` for the rest of this process (a benchmark host started with ``BENCH_FLOOR=1``)."""
    return _FOR_PROCESS.enter_context(checks_off())
