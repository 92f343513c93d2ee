"""The `pretty` console exporter: one readable tree per trace, on stderr."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator

import pytest
from conftest import run_launcher
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from cryostorm_run import ExporterType, TelemetrySettings
from cryostorm_run.export.pretty import PrettySpanExporter
from cryostorm_run.export.signals import LOG_EXPORTERS, METRIC_READERS, SPAN_EXPORTERS
from cryostorm_run.launch.envmap import settings_env
from cryostorm_run.testing import SequentialIdGenerator

T0 = 1_700_000_000_000_000_000
MS = 1_000_000


@pytest.fixture
def tracer_and_out() -> Iterator[tuple[trace.Tracer, io.StringIO, PrettySpanExporter]]:
    out = io.StringIO()
    exporter = PrettySpanExporter(out, color=False)
    provider = TracerProvider(resource=Resource({"service.name": "checkout"}), id_generator=SequentialIdGenerator(),
                              shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("test"), out, exporter
    provider.shutdown()


def request_trace(tracer: trace.Tracer) -> None:
    root = tracer.start_span("GET /items/{id}", kind=SpanKind.SERVER, start_time=T0, attributes={
        "http.request.method": "GET", "http.route": "/items/{id}", "http.response.status_code": 200,
        "http.request.header.authorization": "Bearer should-not-show", "net.peer.port": 51000})
    inside = trace.set_span_in_context(root)
    query = tracer.start_span("SELECT items", context=inside, kind=SpanKind.CLIENT, start_time=T0 + 1 * MS,
                              attributes={"db.system": "sqlite", "db.statement": "SELECT *\n  FROM items WHERE id = ?"})
    tracer.start_span("fetch row", context=trace.set_span_in_context(query), start_time=T0 + MS + MS // 10
                      ).end(end_time=T0 + MS + MS // 5)
    query.end(end_time=T0 + 3 * MS + MS // 10)
    price = tracer.start_span("fetch price", context=inside, start_time=T0 + 4 * MS)
    price.record_exception(TimeoutError("upstream took too long"), timestamp=T0 + 8 * MS)
    price.set_status(Status(StatusCode.ERROR, "timeout"))
    price.end(end_time=T0 + 9 * MS)
    root.end(end_time=T0 + 12 * MS + 3 * MS // 10)


def test_a_trace_is_one_tree_with_durations_status_and_key_attributes(
        tracer_and_out: tuple[trace.Tracer, io.StringIO, PrettySpanExporter]) -> None:
    tracer, out, _ = tracer_and_out
    request_trace(tracer)
    assert out.getvalue() == (
        "trace 00000000000000000000000000000001  checkout\n"
        "GET /items/{id}  12.3 ms  OK  server  http.request.method=GET http.route=/items/{id} "
        "http.response.status_code=200 (+2 more)\n"
        "├─ SELECT items  2.1 ms  OK  client  db.system=sqlite db.statement=SELECT * FROM items WHERE id = ?\n"
        "│  └─ fetch row  0.10 ms  OK\n"
        "└─ fetch price  5.0 ms  ERROR: timeout\n"
        "     ! TimeoutError: upstream took too long\n"
    )


def test_nothing_is_written_until_the_root_ends(
        tracer_and_out: tuple[trace.Tracer, io.StringIO, PrettySpanExporter]) -> None:
    tracer, out, _ = tracer_and_out
    with tracer.start_as_current_span("job"):
        with tracer.start_as_current_span("step"):
            pass
        assert out.getvalue() == ""
    lines = out.getvalue().splitlines()
    assert lines[1].startswith("job  ") and lines[2].startswith("└─ step  ")


def test_flush_writes_spans_whose_root_has_not_ended(
        tracer_and_out: tuple[trace.Tracer, io.StringIO, PrettySpanExporter]) -> None:
    tracer, out, exporter = tracer_and_out
    root = tracer.start_span("long job")
    tracer.start_span("done part", context=trace.set_span_in_context(root)).end()
    assert out.getvalue() == ""
    exporter.force_flush()
    assert out.getvalue().splitlines()[1].startswith("done part  ")
    root.end()


def test_remote_parent_makes_a_local_root(tracer_and_out: tuple[trace.Tracer, io.StringIO, PrettySpanExporter]) -> None:
    tracer, out, _ = tracer_and_out
    remote = trace.SpanContext(trace_id=0xABC, span_id=0xDEF, is_remote=True,
                               trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED))
    tracer.start_span("handle message", context=trace.set_span_in_context(trace.NonRecordingSpan(remote)),
                      kind=SpanKind.CONSUMER).end()
    lines = out.getvalue().splitlines()
    assert lines[0] == f"trace {0xABC:032x}  checkout"
    assert lines[1].startswith("handle message  ") and "  consumer" in lines[1]


def test_colors_only_when_asked_and_ascii_fallback() -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from cryostorm_run.export.pretty import render_trace

    memory = InMemorySpanExporter()
    provider = TracerProvider(id_generator=SequentialIdGenerator(), shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("a"), tracer.start_as_current_span("b"):
        pass
    spans = memory.get_finished_spans()
    colored = render_trace(spans, color=True)
    assert "\x1b[32mOK\x1b[0m" in colored and "\x1b[1ma\x1b[0m" in colored
    assert "\x1b[" not in render_trace(spans)
    assert render_trace(spans, unicode=False).splitlines()[2].startswith("`- b  ")
    provider.shutdown()


def test_not_a_tty_means_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    provider = TracerProvider(shutdown_on_exit=False)
    tty, pipe = Tty(), io.StringIO()
    provider.add_span_processor(SimpleSpanProcessor(PrettySpanExporter(tty)))
    provider.add_span_processor(SimpleSpanProcessor(PrettySpanExporter(pipe)))
    provider.get_tracer("t").start_span("x").end()
    assert "\x1b[" in tty.getvalue() and "\x1b[" not in pipe.getvalue()
    monkeypatch.setenv("NO_COLOR", "1")
    tty.seek(0)
    tty.truncate()
    provider.get_tracer("t").start_span("y").end()
    assert "\x1b[" not in tty.getvalue()
    provider.shutdown()


def test_pretty_is_an_exporter_name_for_every_signal() -> None:
    assert ExporterType("pretty") is ExporterType.CONSOLE_PRETTY
    env = settings_env(TelemetrySettings(exporter_type="pretty"))
    assert env["OTEL_TRACES_EXPORTER"] == env["OTEL_METRICS_EXPORTER"] == env["OTEL_LOGS_EXPORTER"] == "pretty"
    # Metrics and logs have no tree to draw: one line per point and per record (tests/test_console_output.py);
    # `console` chooses by terminal, `pretty` is always for people.
    assert METRIC_READERS["pretty"] is not METRIC_READERS["console"]
    assert LOG_EXPORTERS["pretty"] is not LOG_EXPORTERS["console"]
    assert SPAN_EXPORTERS["console"] is not SPAN_EXPORTERS["pretty"]


def test_pretty_through_the_real_hook() -> None:
    program = ("from opentelemetry import trace\n"
               "tracer = trace.get_tracer('demo')\n"
               "with tracer.start_as_current_span('outer', attributes={'http.route': '/x'}):\n"
               "    with tracer.start_as_current_span('inner'):\n"
               "        pass\n"
               "print('out')\n")
    result = run_launcher(["--quiet", "--exporter", "pretty", "--service-name", "demo", "--", sys.executable, "-c",
                           program], env={"CRYOSTORM_METRICS__ENABLED": "false", "CRYOSTORM_LOGGING__ENABLED": "false"})
    assert result.returncode == 0, result.stderr
    assert result.stdout == "out\n"
    lines = result.stderr.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("trace "))
    assert lines[header].endswith("  demo")
    assert lines[header + 1].startswith("outer  ") and lines[header + 1].endswith("  OK  http.route=/x")
    assert lines[header + 2].startswith("└─ inner  ")
    assert '"name": "outer"' not in result.stderr  # no JSON blobs
