"""What a running turn tells its subscribers: a closed set of typed events, published asynchronously.

The turn publishes them to an :class:`EventSink` as they happen. The live SSE stream
(:mod:`cosmos_history.http.sse`) and the OpenAI-compatible stream encoder (:mod:`cosmos_history.http.openai.run`)
read the same events; a durable event log is one more sink (:class:`Fanout`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from cosmos_history.domain.results import TurnResult


@dataclass(frozen=True)
class TurnStarted:
    """The turn passed its checks and holds the session (or is a replay): its number is known. Shown by no stream."""

    session_id: str
    turn: int
    mode: str
    agent: str | None
    replayed: bool = False
    request_signalled: bool = False
    """The turn's model client calls :func:`model_request_sent` once its request has gone out."""


SIGNALS_REQUEST_SENT = "signals_request_sent"
"""The attribute by which a chat client says it calls :func:`model_request_sent` (``True``)."""
_on_request_sent: ContextVar[Callable[[], None] | None] = ContextVar("on_model_request_sent", default=None)


def when_model_request_sent(callback: Callable[[], None]) -> None:
    """Have ``callback`` called once the running turn's model request has gone out (this task's, from now on)."""
    _on_request_sent.set(callback)


def model_request_sent() -> None:
    """Called by a model client once a request of the running turn has been sent whole (its body written)."""
    callback = _on_request_sent.get()
    if callback is not None:
        callback()


@dataclass(frozen=True)
class ModelAnswering:
    """The model's first update arrived (it may carry nothing to show yet): the turn's checks all passed."""


@dataclass(frozen=True)
class TextDelta:
    """New text of the reply; the deltas of a turn add up to its reply exactly once."""

    text: str


@dataclass(frozen=True)
class ToolCalled:
    """A tool call whose arguments are complete."""

    id: str
    name: str
    arguments: Any


@dataclass(frozen=True)
class ToolResult:
    """A tool ran: its result and its outcome (``ok``, ``error`` or ``unknown``)."""

    id: str
    result: Any
    status: str


@dataclass(frozen=True)
class ApprovalRequired:
    """The turn ends waiting for the client to approve this call."""

    id: str
    name: str
    arguments: Any


@dataclass(frozen=True)
class TurnCompleted:
    """The turn is saved (or replayed): its result. Always the last event of a turn that succeeded."""

    result: TurnResult


@dataclass(frozen=True)
class TurnFailed:
    """The turn ended without saving. Always the last event of a turn that failed."""

    error: BaseException


TurnEvent = (
    TurnStarted | ModelAnswering | TextDelta | ToolCalled | ToolResult | ApprovalRequired | TurnCompleted | TurnFailed
)
"""Every event a turn publishes."""


def shown(event: TurnEvent) -> bool:
    """Whether a stream shows ``event`` (and numbers it): all but the turn's start and the model's first update."""
    return not isinstance(event, TurnStarted | ModelAnswering)


class EventSink(Protocol):
    """Where a turn publishes its events; ``publish`` may wait (a durable log writes before it returns)."""

    async def publish(self, event: TurnEvent) -> None: ...


class Fanout:
    """Publishes each event to several sinks, in order."""

    def __init__(self, sinks: Iterable[EventSink]) -> None:
        self._sinks = tuple(sinks)

    async def publish(self, event: TurnEvent) -> None:
        for sink in self._sinks:
            await sink.publish(event)
