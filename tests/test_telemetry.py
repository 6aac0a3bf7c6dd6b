"""Telemetry of a turn: the spans, attributes, metrics and logs it emits, and that none carries message text.

The registered functions run against the local Cosmos DB with an in-memory OpenTelemetry
SDK installed for this test process; only the model is faked. What happens without
a connection string is checked in a fresh interpreter, where no provider was ever set.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cosmos_history import SessionRecord, load_settings
from cosmos_history import telemetry as _telemetry
from devtools.devhost import DevContext

from .apphost import ROOT
from .http_calls import post_message, request, stored_document

pytestmark = pytest.mark.integration


class Telemetry:
    """The in-memory SDK this process exports to."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.metrics = InMemoryMetricReader()

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def turn_span(self, session_id: str) -> ReadableSpan:
        turns = [s for s in self.finished() if s.name == "turn" and s.attributes["session.id"] == session_id]
        assert len(turns) == 1, [s.name for s in self.finished()]
        return turns[0]

    def children(self, parent: ReadableSpan) -> list[ReadableSpan]:
        return [s for s in self.finished() if s.parent is not None and s.parent.span_id == parent.context.span_id]

    def points(self, name: str) -> list[Any]:
        data = self.metrics.get_metrics_data()
        return [
            point
            for resource in (data.resource_metrics if data else [])
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]

    def total(self, name: str, **labels: str) -> float:
        """The counter's value, or the histogram's count, over the points matching ``labels``."""
        matching = [p for p in self.points(name) if all(p.attributes.get(k) == v for k, v in labels.items())]
        return sum(getattr(p, "value", None) if hasattr(p, "value") else p.count for p in matching)


@pytest.fixture(scope="session")
def otel() -> Telemetry:
    """Install an in-memory SDK as this process's providers, as Azure Monitor would, and the
    framework's instrumentation without sensitive data (what ``configure_telemetry`` does)."""
    from agent_framework.observability import enable_instrumentation

    installed = Telemetry()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(installed.spans))
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[installed.metrics]))
    enable_instrumentation(enable_sensitive_data=False)
    _telemetry.install_log_context()
    return installed


@pytest.fixture
def telemetry(otel: Telemetry) -> Iterator[Telemetry]:
    otel.spans.clear()
    yield otel


def all_span_text(spans: list[ReadableSpan]) -> str:
    """Every attribute, event and status a span exporter would send, as one string."""
    parts: list[Any] = []
    for span in spans:
        parts += [span.name, dict(span.attributes or {}), span.status.description]
        parts += [(event.name, dict(event.attributes or {})) for event in span.events]
    return json.dumps(parts, default=str)


# --- spans ---------------------------------------------------------------------------------------


async def test_a_turn_is_one_span_with_load_lease_model_and_save_children(functions, model, telemetry, session_id):
    await post_message(functions, session_id, "Hello")

    turn = telemetry.turn_span(session_id)
    children = telemetry.children(turn)
    # The lease is claimed in the load's own request (one batch), and released by the save's.
    assert [s.name for s in sorted(children, key=lambda s: s.start_time)] == [
        "session.load",
        "model.call",
        "session.save",
    ]


async def test_the_frameworks_agent_span_is_nested_in_the_model_call(functions, model, telemetry, session_id):
    await post_message(functions, session_id, "Hello")

    (model_call,) = [s for s in telemetry.children(telemetry.turn_span(session_id)) if s.name == "model.call"]
    agent_spans = [s for s in telemetry.children(model_call) if s.name.startswith("invoke_agent")]
    assert len(agent_spans) == 1


async def test_each_tool_call_is_a_framework_span_under_the_turn_with_its_name_and_outcome_but_no_content(
    functions, model, telemetry, session_id
):
    model.tool_call = ("current_time", {"time_zone": "Secret/Zone-4711"})

    await post_message(functions, session_id, "What time is it?")

    turn = telemetry.turn_span(session_id)
    tools = [s for s in telemetry.finished() if s.name == "execute_tool current_time"]
    assert len(tools) == 1 and turn.context.trace_id == tools[0].context.trace_id
    assert within(tools[0], turn, telemetry.finished())
    assert tools[0].attributes["gen_ai.tool.name"] == "current_time" and tools[0].status.is_ok
    assert "Secret/Zone-4711" not in all_span_text(telemetry.finished())


def within(span: ReadableSpan, ancestor: ReadableSpan, spans: list[ReadableSpan]) -> bool:
    by_id = {s.context.span_id: s for s in spans}
    while span.parent is not None:
        if span.parent.span_id == ancestor.context.span_id:
            return True
        span = by_id[span.parent.span_id]
    return False


async def test_the_turn_span_names_the_session_mode_turn_and_a_hashed_user(functions, model, telemetry, session_id):
    await post_message(functions, session_id, "first")
    telemetry.spans.clear()
    await post_message(functions, session_id, "second")

    attributes = telemetry.turn_span(session_id).attributes
    assert attributes["session.id"] == session_id
    assert attributes["session.history_mode"] == "local"
    assert attributes["turn.number"] == 2
    assert attributes["turn.outcome"] == "ok"
    assert attributes["enduser.hash"] == hashlib.sha256(b"alice").hexdigest()[:16]
    assert "alice" not in all_span_text(telemetry.finished())


async def test_the_turn_span_carries_request_charges_and_the_stored_document_size(
    functions, model, runtime, telemetry, session_id
):
    await post_message(functions, session_id, "Hello")

    attributes = telemetry.turn_span(session_id).attributes
    document = await stored_document(runtime, session_id)
    system = {k: v for k, v in document.items() if k.startswith("_")}
    assert attributes["cosmos.load.request_charge"] > 0
    assert attributes["cosmos.save.request_charge"] > 0
    assert attributes["cosmos.throttled_retries"] == 0
    # What was written is the document without the properties Cosmos DB adds (_etag, _ts...).
    assert 0 < attributes["session.document_bytes"] <= len(json.dumps(document).encode()) - len(json.dumps(system))


async def test_model_latency_and_reported_tokens_are_on_the_turn_span(functions, model, telemetry, session_id):
    model.usage = {"input_token_count": 12, "output_token_count": 3, "total_token_count": 15}
    try:
        await post_message(functions, session_id, "Hello")
    finally:
        model.usage = None

    attributes = telemetry.turn_span(session_id).attributes
    assert attributes["model.latency_ms"] >= 0
    assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]) == (12, 3)


async def test_a_conflict_is_the_turn_outcome_and_is_counted(functions, model, runtime, telemetry, session_id):
    await post_message(functions, session_id, "first")
    before = telemetry.total("cosmos_history.turn.conflicts")
    store = runtime.store.for_user("alice")
    original_run = runtime.agents["assistant"].by_mode["local"].run

    async def run_while_someone_else_writes(*args: Any, **kwargs: Any) -> Any:
        result = await original_run(*args, **kwargs)
        winner = await store.load(session_id)
        assert isinstance(winner, SessionRecord)
        await store.save(winner, etag=winner.etag)
        return result

    runtime.agents["assistant"].by_mode["local"].run = run_while_someone_else_writes
    telemetry.spans.clear()
    try:
        status, _, _ = await post_message(functions, session_id, "loser")
    finally:
        del runtime.agents["assistant"].by_mode["local"].run

    assert status == 409
    turn = telemetry.turn_span(session_id)
    assert turn.attributes["turn.outcome"] == "session-conflict"
    assert turn.status.status_code == trace.StatusCode.ERROR
    assert telemetry.total("cosmos_history.turn.conflicts") == before + 1


async def test_a_streamed_turn_is_one_span_with_the_same_children(functions, model, telemetry, session_id):
    req = request("POST", "/", body={"message": "Hi", "stream": True}, route={"id": session_id})
    response = await functions["post_message_route"](req)
    body = "".join([chunk async for chunk in response.body_iterator])

    turn = telemetry.turn_span(session_id)
    children = [s.name for s in sorted(telemetry.children(turn), key=lambda s: s.start_time)]
    assert "event: done" in body
    assert children == ["session.load", "model.call", "session.save"]
    assert turn.attributes["turn.outcome"] == "ok" and turn.attributes["turn.number"] == 1


# --- metrics -------------------------------------------------------------------------------------


async def test_a_turn_records_count_duration_request_units_and_document_size(functions, model, telemetry, session_id):
    before = {
        name: telemetry.total(name)
        for name in (
            "cosmos_history.turns",
            "cosmos_history.turn.duration",
            "cosmos_history.cosmos.request_units",
            "cosmos_history.session.document_size",
        )
    }

    await post_message(functions, session_id, "Hello")

    assert telemetry.total("cosmos_history.turns") == before["cosmos_history.turns"] + 1
    assert telemetry.total("cosmos_history.turn.duration") == before["cosmos_history.turn.duration"] + 1
    # One request-units record each for the load (which claims the lease) and the save (which releases it).
    assert telemetry.total("cosmos_history.cosmos.request_units") == before["cosmos_history.cosmos.request_units"] + 2
    assert telemetry.total("cosmos_history.session.document_size") == before["cosmos_history.session.document_size"] + 1
    assert telemetry.total("cosmos_history.turns", outcome="ok", mode="local") >= 1


async def test_a_turn_answered_from_a_stored_result_counts_as_a_replay(telemetry):
    @dataclass
    class Replayed:
        turn: int = 3
        mode: str = "local"
        replayed: bool = True

    before = telemetry.total("cosmos_history.turn.idempotent_replays", mode="local")

    async with _telemetry.traced_turn(session_id="replay-1", user_id=None) as trace:
        trace.completed(Replayed())

    assert telemetry.turn_span("replay-1").attributes["turn.outcome"] == "replayed"
    assert telemetry.total("cosmos_history.turn.idempotent_replays", mode="local") == before + 1


async def test_idempotent_replays_are_counted(telemetry):
    before = telemetry.total("cosmos_history.turn.idempotent_replays")

    _telemetry.record_idempotent_replay("local")

    assert telemetry.total("cosmos_history.turn.idempotent_replays") == before + 1


# --- no message text, ids in logs ----------------------------------------------------------------


async def test_no_message_text_reaches_any_span_or_log_record(functions, model, telemetry, session_id, caplog):
    caplog.set_level(logging.INFO)
    await post_message(functions, session_id, "tell-nobody-about-the-cake")
    model.fail_with = RuntimeError("the model choked on tell-nobody-about-the-cake")
    await post_message(functions, session_id, "tell-nobody-about-the-cake again")

    spans = telemetry.finished()
    assert spans and "tell-nobody" not in all_span_text(spans)
    assert "reply 1" not in all_span_text(spans)
    for record in caplog.records:
        assert "tell-nobody" not in record.getMessage()
        assert "tell-nobody" not in json.dumps({k: str(v) for k, v in vars(record).items() if k != "exc_info"})


async def test_log_records_of_a_request_carry_its_invocation_id_and_session_id(
    functions, model, telemetry, session_id, caplog
):
    caplog.set_level(logging.INFO, logger="cosmos_history")
    req = request("POST", "/", body={"message": "hi"}, route={"id": session_id})

    await functions["post_message_route"](req, context=DevContext("invocation-42", "post_message_route"))

    turn_logs = [r for r in caplog.records if r.name == "cosmos_history.telemetry" and "Turn ok" in r.getMessage()]
    assert len(turn_logs) == 1
    assert (turn_logs[0].invocation_id, turn_logs[0].session_id) == ("invocation-42", session_id)


# --- configuration -------------------------------------------------------------------------------


def test_without_a_connection_string_nothing_is_configured_or_even_imported(cosmos_env):
    script = textwrap.dedent(
        """
        import asyncio, sys
        from opentelemetry import metrics, trace
        from agent_framework.observability import OBSERVABILITY_SETTINGS
        from cosmos_history import load_settings, run_turn
        from cosmos_history.runtime import LazyRuntime

        async def main():
            source = LazyRuntime(load_settings())
            runtime = await source.get()  # configures telemetry once, as the first request does
            result = await run_turn(
                runtime.store, runtime.agents, session_id="no-telemetry", message="hi", policy=runtime.policy
            )
            assert result.turn >= 1
            assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"
            assert type(metrics.get_meter_provider()).__name__ == "_ProxyMeterProvider"
            assert not OBSERVABILITY_SETTINGS.ENABLED, "the framework must not build spans nobody records"
            loaded = [m for m in sys.modules if m.startswith(("azure.monitor", "opentelemetry.sdk"))]
            assert loaded == [], loaded
            await source.close()

        asyncio.run(main())
        print("no telemetry")
        """
    )
    env = {**cosmos_env, "APPLICATIONINSIGHTS_CONNECTION_STRING": "", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "no telemetry"


def test_a_connection_string_configures_azure_monitor_with_the_managed_identity(monkeypatch):
    from azure.identity import ManagedIdentityCredential
    from azure.monitor import opentelemetry as azure_monitor

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(azure_monitor, "configure_azure_monitor", lambda **options: calls.append(options))
    monkeypatch.setattr(_telemetry, "_configured", None)
    settings = load_settings(
        {
            "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=00000000-0000-0000-0000-000000000000",
            "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Authorization=AAD;ClientId=client-1",
        }
    ).telemetry

    assert _telemetry.configure_telemetry(settings) is True

    (options,) = calls
    assert options["connection_string"].startswith("InstrumentationKey=")
    assert isinstance(options["credential"], ManagedIdentityCredential)
    from agent_framework.observability import OBSERVABILITY_SETTINGS

    assert OBSERVABILITY_SETTINGS.ENABLED and not OBSERVABILITY_SETTINGS.enable_sensitive_data


def test_the_authentication_string_names_the_identity_or_falls_back_to_azure_client_id():
    aad = "Authorization=AAD"
    with_id = load_settings({"APPLICATIONINSIGHTS_AUTHENTICATION_STRING": aad + ";ClientId=abc"}).telemetry
    fallback = load_settings({"APPLICATIONINSIGHTS_AUTHENTICATION_STRING": aad, "AZURE_CLIENT_ID": "def"}).telemetry
    keyed = load_settings({"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=x"}).telemetry

    assert (with_id.use_managed_identity, with_id.client_id) == (True, "abc")
    assert (fallback.use_managed_identity, fallback.client_id) == (True, "def")
    assert keyed.enabled and not keyed.use_managed_identity


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("APPLICATIONINSIGHTS_CONNECTION_STRING", "not-a-connection-string"),
        ("APPLICATIONINSIGHTS_AUTHENTICATION_STRING", "Authorization=Basic"),
        ("ENABLE_SENSITIVE_DATA", "maybe"),
    ],
)
def test_malformed_telemetry_settings_fail_at_start_up(name, value):
    from cosmos_history.domain.errors import SettingsError

    with pytest.raises(SettingsError, match=name):
        load_settings({name: value})


# --- background turns ------------------------------------------------------------------------------------


async def test_the_span_of_a_background_turn_links_to_the_request_that_queued_it(
    cosmos_env, storage_env, telemetry, session_id
):
    import base64
    import uuid

    from azure.storage.queue.aio import QueueClient

    import function_app
    from cosmos_history import build_agents, build_runtime, create_app
    from cosmos_history.background_jobs import background_triggers
    from cosmos_history.triggers import func

    from .fakes import RecordingChatClient

    settings = load_settings({**cosmos_env, **storage_env, "BACKGROUND_QUEUE": f"otel-{uuid.uuid4().hex[:12]}"})
    runtime = await build_runtime(settings, agents=build_agents(settings, RecordingChatClient()))
    app = create_app(function_app.ROUTES, triggers=background_triggers(settings), runtime=runtime)
    functions = {f.get_function_name(): f.get_user_function() for f in app.get_functions()}
    tracer = trace.get_tracer("test")
    try:
        with tracer.start_as_current_span("POST /api/sessions/{id}/messages") as queuing:  # the host's request span
            body = {"message": "later", "background": True}
            await functions["post_message_route"](request("POST", "/x", body=body, route={"id": session_id}))
        async with QueueClient.from_connection_string(storage_env["AzureWebJobsStorage"], settings.queue.name) as q:
            [message] = [m async for m in q.receive_messages(max_messages=1)]
        await functions["background_turn"](func.QueueMessage(id=message.id, body=base64.b64decode(message.content)))
    finally:
        await runtime.close()

    [job] = [s for s in telemetry.finished() if s.name == "background turn"]
    turn = telemetry.turn_span(session_id)
    assert [link.context.span_id for link in job.links] == [queuing.get_span_context().span_id]
    assert job.parent is None, "linked, not a child: the job runs later, maybe more than once"
    assert turn.parent is not None and turn.parent.span_id == job.context.span_id
