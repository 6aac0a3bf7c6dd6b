"""Traces, metrics and structured logs: one span per turn, with the cost of each step.

Everything observable about a turn lives here so the turn logic stays readable:
Each turn runs inside :func:`traced_turn` and marks its four steps (load, lease, model,
save) with :func:`phase`. Spans and instruments come from the OpenTelemetry API, which is a
no-op until a provider is installed; :func:`configure_telemetry` installs one
(Azure Monitor) only when ``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set, and
imports the exporter only then, because cold starts pay for every import.

Nothing recorded here carries message text: spans and logs name the session id,
a hash of the user id, counts, sizes, durations and request charges.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics, trace
from opentelemetry.trace import Span, Status, StatusCode

if TYPE_CHECKING:  # the domain imports this module, and must not load settings with it
    from cosmos_history.settings import TelemetrySettings

logger = logging.getLogger(__name__)

INSTRUMENTATION_NAME = "cosmos_history"
_tracer = trace.get_tracer(INSTRUMENTATION_NAME)
_meter = metrics.get_meter(INSTRUMENTATION_NAME)

# Instruments from the API's proxy meter bind to whatever provider is installed later, so they can be
# module-level; without a provider every call is a no-op.
TURNS = _meter.create_counter("cosmos_history.turns", unit="{turn}", description="Turns run, by outcome and mode")
TURN_DURATION = _meter.create_histogram(
    "cosmos_history.turn.duration", unit="s", description="Wall time of a turn: load, model call and save"
)
CONFLICTS = _meter.create_counter(
    "cosmos_history.turn.conflicts", unit="{conflict}", description="Turns refused because another request wrote first"
)
IDEMPOTENT_REPLAYS = _meter.create_counter(
    "cosmos_history.turn.idempotent_replays",
    unit="{turn}",
    description="Requests answered from a stored result instead of running the turn again",
)
REQUEST_UNITS = _meter.create_histogram(
    "cosmos_history.cosmos.request_units", unit="{RU}", description="Cosmos DB request charge per turn step"
)
DOCUMENT_SIZE = _meter.create_histogram(
    "cosmos_history.session.document_size", unit="By", description="Size of the session document written by a turn"
)

USER_HASH_CHARS = 16


# --- process set-up ----------------------------------------------------------------------------

_configured: bool | None = None


def configure_telemetry(settings: TelemetrySettings) -> bool:
    """Install the exporters once per process; returns whether telemetry is exported.

    Without a connection string no SDK provider is installed (the API's no-op tracer and
    meter stay in place) and the framework's own instrumentation is switched off, so a
    turn does no telemetry work at all.
    """
    global _configured
    if _configured is not None:
        return _configured
    install_log_context()
    from agent_framework.observability import OBSERVABILITY_SETTINGS, enable_instrumentation

    if not settings.enabled:
        OBSERVABILITY_SETTINGS.enable_instrumentation = False
        _configured = False
        return False

    from azure.monitor.opentelemetry import configure_azure_monitor  # only paid for where it is used

    options: dict[str, Any] = {
        "connection_string": settings.connection_string,
        # Only this app's loggers: the Functions host already collects the worker's own logs.
        "logger_name": INSTRUMENTATION_NAME,
    }
    if settings.use_managed_identity:
        from azure.identity import ManagedIdentityCredential

        options["credential"] = ManagedIdentityCredential(client_id=settings.client_id)
    configure_azure_monitor(**options)
    # Agent and model spans come from the framework; message text stays out unless asked for.
    enable_instrumentation(enable_sensitive_data=settings.sensitive_data)
    _configured = True
    logger.info("Telemetry is exported to Application Insights")
    return True


# --- structured logs ----------------------------------------------------------------------------

_invocation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("invocation_id", default=None)
_session_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("session_id", default=None)
_log_context_installed = False


def install_log_context() -> None:
    """Stamp every log record made inside a request with its invocation id and session id.

    A record factory (rather than a handler filter) reaches every handler, including the
    exporter's, and costs one context-variable read per record outside requests.
    """
    global _log_context_installed
    if _log_context_installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        invocation_id = _invocation_id.get()
        if invocation_id is not None:
            record.invocation_id = invocation_id
            session_id = _session_id.get()
            if session_id:
                record.session_id = session_id
        return record

    logging.setLogRecordFactory(factory)
    _log_context_installed = True


@contextmanager
def request_context(invocation_id: str, session_id: str | None) -> Iterator[None]:
    """Log records made inside carry these ids (see :func:`install_log_context`)."""
    tokens = (_invocation_id.set(invocation_id), _session_id.set(session_id))
    try:
        yield
    finally:
        _session_id.reset(tokens[1])
        _invocation_id.reset(tokens[0])


def hash_user_id(user_id: str) -> str:
    """A stable pseudonym: turns of one user correlate, but the id itself is never recorded."""
    return hashlib.sha256(user_id.encode()).hexdigest()[:USER_HASH_CHARS]


# --- the turn span ------------------------------------------------------------------------------


class _Step:
    """What Cosmos DB reported for the requests of one step of a turn (the two bookkeeping classes here are plain:
    building a dataclass costs a cold start about 0.1 ms, bench/optimisations.md)."""

    __slots__ = ("name", "request_charge", "requests", "throttled", "written_bytes")

    def __init__(self, name: str) -> None:
        self.name = name
        self.request_charge = 0.0
        self.requests = 0
        self.throttled = 0
        self.written_bytes: int | None = None


class _Turn:
    """The span of the turn running in this context, and its steps by name."""

    __slots__ = ("mode", "span", "steps")

    def __init__(self, span: Span) -> None:
        self.span = span
        self.mode: str | None = None
        self.steps: dict[str, _Step] = {}


_current_turn: contextvars.ContextVar[_Turn | None] = contextvars.ContextVar("turn", default=None)
_current_step: contextvars.ContextVar[_Step | None] = contextvars.ContextVar("turn_step", default=None)


class TurnTrace:
    """The turn being traced: tell it the result, so the span and metrics know its number and outcome."""

    def __init__(self, turn: _Turn) -> None:
        self._turn = turn
        self.outcome = "ok"

    def completed(self, result: Any) -> None:
        """Record a finished turn: its mode, number, and ``replayed`` when it was answered from a stored result."""
        turn = self._turn
        turn.mode = result.mode or turn.mode
        turn.span.set_attribute("turn.number", result.turn)
        if result.replayed:
            self.outcome = "replayed"
            record_idempotent_replay(turn.mode)


@asynccontextmanager
async def traced_turn(*, session_id: str, user_id: str | None) -> AsyncIterator[TurnTrace]:
    """A ``turn`` span around one turn of ``session_id`` for ``user_id`` (stored hashed), and its metrics.

    The turn's outcome is the error's problem slug (``session-conflict``, ``model-error``...),
    ``replayed`` for a result answered from the stored result of an idempotent retry (see
    :meth:`TurnTrace.completed`), or ``ok``. A conflict also counts in ``turn.conflicts``, a replay in
    ``turn.idempotent_replays``.
    """
    attributes: dict[str, Any] = {"session.id": session_id}
    if user_id is not None:
        attributes["enduser.hash"] = hash_user_id(user_id)
    started = time.perf_counter()
    with _tracer.start_as_current_span(
        "turn", attributes=attributes, record_exception=False, set_status_on_exception=False
    ) as span:
        turn = _Turn(span)
        token = _current_turn.set(turn)
        trace = TurnTrace(turn)
        try:
            yield trace
        except Exception as error:
            trace.outcome = getattr(error, "slug", None) or "internal-error"
            # The type only: exception messages may quote user input.
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            span.set_attribute("error.type", type(error).__name__)
            raise
        finally:
            _current_turn.reset(token)
            _finish(turn, trace.outcome, time.perf_counter() - started)


def _finish(turn: _Turn, outcome: str, duration: float) -> None:
    span = turn.span
    span.set_attribute("turn.outcome", outcome)
    if turn.mode:
        span.set_attribute("session.history_mode", turn.mode)
    labels = {"outcome": outcome, "mode": turn.mode or "unknown"}
    TURNS.add(1, labels)
    TURN_DURATION.record(duration, labels)
    if outcome == "session-conflict":
        CONFLICTS.add(1, {"mode": turn.mode or "unknown"})
    throttled = 0
    for step in turn.steps.values():
        throttled += step.throttled
        if step.requests:
            span.set_attribute(f"cosmos.{step.name}.request_charge", step.request_charge)
            REQUEST_UNITS.record(step.request_charge, {"step": step.name})
        if step.written_bytes is not None and step.name == "save":  # the lease item is not the document
            span.set_attribute("session.document_bytes", step.written_bytes)
            DOCUMENT_SIZE.record(step.written_bytes, {"mode": turn.mode or "unknown"})
    span.set_attribute("cosmos.throttled_retries", throttled)
    logger.info(
        "Turn %s in %.0f ms (mode %s, %.1f RU)",
        outcome,
        duration * 1000,
        turn.mode or "unknown",
        sum(s.request_charge for s in turn.steps.values()),
        extra={"turn_outcome": outcome, "turn_duration_ms": round(duration * 1000, 1)},
    )


@contextmanager
def phase(name: str) -> Iterator[Span]:
    """A child span of the turn for one step (``load``, ``lease``, ``model``, ``save``).

    Cosmos DB requests made inside are charged to this step (see :func:`cosmos_response_hook`);
    the model step's duration becomes ``model.latency_ms`` on the turn span.
    """
    turn = _current_turn.get()
    step = _Step(name)
    if turn is not None:
        turn.steps[name] = step
    token = _current_step.set(step)
    started = time.perf_counter()
    span_name = "model.call" if name == "model" else f"session.{name}"
    try:
        with _tracer.start_as_current_span(span_name, record_exception=False, set_status_on_exception=False) as span:
            try:
                yield span
            except BaseException as error:
                # The type only: exception messages may quote user input.
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
                raise
    finally:
        _current_step.reset(token)
        if turn is not None and name == "model":
            turn.span.set_attribute("model.latency_ms", round((time.perf_counter() - started) * 1000, 1))


def note_session(mode: str, turns_before: int) -> None:
    """Record the loaded (or new) session's mode and the number this turn will get."""
    turn = _current_turn.get()
    if turn is not None:
        turn.mode = mode
        turn.span.set_attribute("session.history_mode", mode)
        turn.span.set_attribute("turn.number", turns_before + 1)


def note_model_response(response: Any) -> None:
    """Token counts, when the model reported usage (attribute names follow the GenAI conventions)."""
    turn = _current_turn.get()
    usage: Mapping[str, Any] | None = getattr(response, "usage_details", None)
    if turn is None or not usage:
        return
    for key, attribute in (
        ("input_token_count", "gen_ai.usage.input_tokens"),
        ("output_token_count", "gen_ai.usage.output_tokens"),
    ):
        value = usage.get(key)
        if isinstance(value, int):
            turn.span.set_attribute(attribute, value)


def record_idempotent_replay(mode: str | None = None) -> None:
    """Count a request answered from a stored result.

    :func:`traced_turn` calls it for results marked ``replayed``; other replay paths call it directly.
    """
    IDEMPOTENT_REPLAYS.add(1, {"mode": mode or "unknown"})
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute("turn.idempotent_replay", True)


# --- Cosmos DB request charges ------------------------------------------------------------------


def note_batch_extras(extra_bytes: int) -> None:
    """The current step's last write was a transactional batch of which ``extra_bytes`` were not the session
    document (the lease's release, a replay entry, a stored response): the document's size is the rest."""
    step = _current_step.get()
    if step is not None and step.written_bytes is not None:
        step.written_bytes -= extra_bytes


def cosmos_response_hook(pipeline_response: Any) -> None:
    """Charge every Cosmos DB HTTP response (retries included) to the current turn step.

    Installed on the client as ``raw_response_hook``: it sees each attempt, so throttled
    (429) attempts are counted too. Outside a turn step it returns at once.
    """
    step = _current_step.get()
    if step is None:
        return
    try:
        response = pipeline_response.http_response
        step.requests += 1
        step.request_charge += float(response.headers.get("x-ms-request-charge") or 0)
        if response.status_code == 429:
            step.throttled += 1
        request = pipeline_response.http_request
        if request.method in ("POST", "PUT") and 200 <= response.status_code < 300 and request.body is not None:
            body = request.body
            step.written_bytes = len(body if isinstance(body, bytes) else str(body).encode())
    except (AttributeError, TypeError, ValueError):  # telemetry must never break a request
        logger.debug("Could not read the Cosmos DB response headers", exc_info=True)


# --- background turns: the request that queued a turn, linked from the span that runs it ----------------


def carrier() -> dict[str, str]:
    """The current trace context as W3C headers (``traceparent``), to travel with a queued job."""
    from opentelemetry import propagate

    headers: dict[str, str] = {}
    propagate.inject(headers)
    return headers


@contextmanager
def linked_job(name: str, headers: Mapping[str, Any] | None) -> Iterator[Span]:
    """A ``name`` span for a queued job, linked to the span of the request that queued it (from ``headers``,
    see :func:`carrier`): a link, not a parent, as the job runs later, elsewhere, maybe more than once."""
    from opentelemetry import propagate

    links = []
    if isinstance(headers, Mapping):
        context = trace.get_current_span(propagate.extract({k: str(v) for k, v in headers.items()})).get_span_context()
        if context.is_valid:
            links.append(trace.Link(context, {"link.kind": "queued-by"}))
    with _tracer.start_as_current_span(name, links=links, kind=trace.SpanKind.CONSUMER) as span:
        yield span
