"""Proves tests/otlp_receiver.py against the real OpenTelemetry SDK exporters and raw OTLP requests."""

from __future__ import annotations

import gzip
import http.client
import json
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format
from google.rpc import error_details_pb2, status_pb2
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.exporter.otlp.proto.http.version import __version__ as http_exporter_version
from opentelemetry.metrics import Observation
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context
from otlp_receiver import Fault, Receiver, make_self_signed_cert, otlp_receiver_fixture  # noqa: F401

TRANSPORTS = ["grpc", "http"]
RESOURCE = Resource({"service.name": "receiver-test", "deployment.environment": "ci"})
OK, FAILED = SpanExportResult.SUCCESS, SpanExportResult.FAILURE
# The HTTP exporter retries 429 (honouring Retry-After) from 1.45 on, through opentelemetry-exporter-otlp-common;
# up to 1.44 it retried only 408 and 5xx (checked: 1.40-1.44 and 1.45.2).
HTTP_RETRIES_429 = tuple(int(n) for n in http_exporter_version.split(".")[:2]) >= (1, 45)
SIGNALS = ("traces", "metrics", "logs")
EXPORTERS = {  # transport -> signal -> exporter class
    "grpc": dict(zip(SIGNALS, (GrpcSpanExporter, GrpcMetricExporter, GrpcLogExporter), strict=True)),
    "http": dict(zip(SIGNALS, (HttpSpanExporter, HttpMetricExporter, HttpLogExporter), strict=True)),
}
SERVICES = {  # signal -> (stub class, pb2 module, message name prefix)
    "traces": (trace_service_pb2_grpc.TraceServiceStub, trace_service_pb2, "ExportTraceService"),
    "metrics": (metrics_service_pb2_grpc.MetricsServiceStub, metrics_service_pb2, "ExportMetricsService"),
    "logs": (logs_service_pb2_grpc.LogsServiceStub, logs_service_pb2, "ExportLogsService"),
}


def message(signal_name, kind):  # kind: "Request" | "Response"
    _, module, prefix = SERVICES[signal_name]
    return getattr(module, prefix + kind)


def exporter(signal_name, transport, rcv, **kw):
    if transport == "grpc":
        return EXPORTERS["grpc"][signal_name](endpoint=rcv.grpc_endpoint, insecure=True, **kw)
    return EXPORTERS["http"][signal_name](endpoint=f"{rcv.http_endpoint}/v1/{signal_name}", **kw)


def finished_spans(*names):
    """Real SDK spans, finished in a private provider (to hand to an exporter directly)."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE, shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    for name in names:
        provider.get_tracer("t").start_span(name).end()
    provider.shutdown()
    return memory.get_finished_spans()


def export_spans(span_exporter, names=("op",)):
    """Export spans once through `span_exporter` (then shut it down) and return the exporter's result."""
    try:
        return span_exporter.export(finished_spans(*names))
    finally:
        span_exporter.shutdown()


def post(port, path, body=b"", headers=None, *, context=None, method="POST"):
    """Raw HTTP request -> (status, lower-case headers, body)."""
    tls = {"context": context} if context else {}
    conn = (http.client.HTTPSConnection if context else http.client.HTTPConnection)("127.0.0.1", port, timeout=5, **tls)
    try:
        conn.request(method, path, body, {"Content-Type": "application/x-protobuf", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def grpc_export(port, signal_name="traces", request=None, credentials=None, timeout=5):
    """Raw gRPC Export call -> response; raises grpc.RpcError on failure."""
    stub_cls, req_cls = SERVICES[signal_name][0], message(signal_name, "Request")
    target = f"127.0.0.1:{port}"
    with grpc.secure_channel(target, credentials) if credentials else grpc.insecure_channel(target) as channel:
        return stub_cls(channel).Export(request or req_cls(), timeout=timeout)


def _kv(key, **value):
    return KeyValue(key=key, value=AnyValue(**value))


def any_value_request():
    arr = ArrayValue(values=[AnyValue(int_value=1), AnyValue(string_value="two")])
    attrs = [_kv("s", string_value="x"), _kv("b", bool_value=True), _kv("i", int_value=-7)]
    attrs += [_kv("d", double_value=2.5), _kv("raw", bytes_value=b"\x00\xff"), _kv("arr", array_value=arr)]
    attrs += [_kv("kv", kvlist_value=KeyValueList(values=[_kv("in", array_value=ArrayValue())])), KeyValue(key="e")]
    span = trace_pb2.Span(trace_id=bytes(range(16)), span_id=bytes(range(8)), name="raw", attributes=attrs)
    span.kind = trace_pb2.Span.SPAN_KIND_PRODUCER
    req = trace_service_pb2.ExportTraceServiceRequest()
    req.resource_spans.add().scope_spans.add(spans=[span]).scope.name = "raw-scope"
    return req


ANY_VALUE_ATTRS = {"s": "x", "b": True, "i": -7, "d": 2.5, "raw": b"\x00\xff", "arr": [1, "two"], "kv": {"in": []}}
ANY_VALUE_ATTRS["e"] = None


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sdk_spans_arrive_with_structure(otlp_receiver, transport):
    provider = TracerProvider(resource=RESOURCE, shutdown_on_exit=False)
    span_exp = exporter("traces", transport, otlp_receiver, headers={"x-tenant": "t1"})
    provider.add_span_processor(SimpleSpanProcessor(span_exp))
    tracer = provider.get_tracer("my.scope")
    with tracer.start_as_current_span("GET /x", kind=SpanKind.SERVER, attributes={"http.status_code": 200}) as root:
        attrs = {"db.rows": 3, "ratio": 0.5, "cached": False, "tags": ["a", "b"]}
        child = tracer.start_span("db", kind=SpanKind.CLIENT, context=set_span_in_context(root), attributes=attrs)
        child.add_event("retry", {"attempt": 2})
        child.set_status(Status(StatusCode.ERROR, "boom"))
        child.end()
    provider.shutdown()

    spans = {s.name: s for s in otlp_receiver.wait_for_spans(2)}
    root_s, child_s = spans["GET /x"], spans["db"]
    assert (root_s.kind, child_s.kind) == ("SERVER", "CLIENT")
    assert (root_s.parent_span_id, child_s.parent_span_id) == (None, root_s.span_id)
    assert child_s.trace_id == root_s.trace_id == format(root.get_span_context().trace_id, "032x")
    assert root_s.span_id == format(root.get_span_context().span_id, "016x")
    assert (root_s.attributes, child_s.attributes) == ({"http.status_code": 200}, attrs)
    assert (child_s.status_code, child_s.status_message, root_s.status_code) == ("ERROR", "boom", "UNSET")
    assert child_s.events == (("retry", {"attempt": 2}),)
    assert root_s.resource == {**RESOURCE.attributes}
    assert {(s.scope, s.transport) for s in spans.values()} == {("my.scope", transport)}
    reqs = otlp_receiver.requests()
    seen = [(r.transport, r.signal, r.accepted, r.headers["x-tenant"]) for r in reqs]
    assert seen == [(transport, "traces", True, "t1")] * 2


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sdk_metrics_arrive(otlp_receiver, transport):
    reader = PeriodicExportingMetricReader(exporter("metrics", transport, otlp_receiver), 3_600_000)
    provider = MeterProvider(resource=RESOURCE, metric_readers=[reader], shutdown_on_exit=False)
    meter = provider.get_meter("my.meter")
    meter.create_counter("requests").add(3, {"route": "/a"})
    meter.create_up_down_counter("inflight").add(-2)
    hist = meter.create_histogram("latency", unit="ms")
    for v in (1.0, 4.0, 10.0):
        hist.record(v, {"route": "/a"})
    meter.create_observable_gauge("temp", callbacks=[lambda _opts: [Observation(21.5, {"room": "x"})]])
    assert provider.force_flush()
    provider.shutdown()

    metrics = {m.name: m for m in otlp_receiver.wait_for_metrics("temp")}
    monotonic = [(m.kind, m.is_monotonic) for m in (metrics["requests"], metrics["inflight"])]
    assert monotonic == [("sum", True), ("sum", False)]
    assert metrics["requests"].points == ({"attributes": {"route": "/a"}, "value": 3},)
    assert metrics["inflight"].points == ({"attributes": {}, "value": -2},)
    assert (metrics["latency"].kind, metrics["latency"].unit) == ("histogram", "ms")
    assert metrics["latency"].points == ({"attributes": {"route": "/a"}, "count": 3, "sum": 15.0},)
    assert metrics["temp"].kind == "gauge"
    assert metrics["temp"].points == ({"attributes": {"room": "x"}, "value": 21.5},)
    where = {(m.scope, m.transport, m.resource["service.name"]) for m in metrics.values()}
    assert where == {("my.meter", transport, "receiver-test")}
    assert otlp_receiver.counts()["metrics_points"] >= 4


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sdk_logs_arrive(otlp_receiver, transport):
    provider = LoggerProvider(resource=RESOURCE, shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter("logs", transport, otlp_receiver)))
    tracer_provider = TracerProvider(shutdown_on_exit=False)
    body = {"msg": "hello", "n": [1, 2]}
    with tracer_provider.get_tracer("t").start_as_current_span("ctx") as span:
        provider.get_logger("my.logger").emit(
            body=body, severity_number=SeverityNumber.WARN, severity_text="WARN", attributes={"user": "bob"}
        )
    provider.get_logger("my.logger").emit(body="plain", severity_number=SeverityNumber.INFO)
    provider.shutdown()
    tracer_provider.shutdown()

    logs = otlp_receiver.wait_for_logs(2)
    first, second = sorted(logs, key=lambda r: r.body != body)
    assert (first.body, first.attributes, first.severity_text) == (body, {"user": "bob"}, "WARN")
    assert first.severity_number == SeverityNumber.WARN.value
    ctx = span.get_span_context()
    assert (first.trace_id, first.span_id) == (format(ctx.trace_id, "032x"), format(ctx.span_id, "016x"))
    assert (second.body, second.trace_id, second.span_id) == ("plain", None, None)
    where = {(r.transport, r.scope, r.resource["service.name"]) for r in logs}
    assert where == {(transport, "my.logger", "receiver-test")}
    assert otlp_receiver.wait_for_logs("plain") == logs


def test_any_value_conversion_on_both_transports_and_gzip(otlp_receiver):
    grpc_export(otlp_receiver.grpc_port, request=any_value_request())
    gz = gzip.compress(any_value_request().SerializeToString())
    status, headers, body = post(otlp_receiver.http_port, "/v1/traces", gz, {"Content-Encoding": "gzip"})
    assert (status, headers["content-type"]) == (200, "application/x-protobuf")
    assert not trace_service_pb2.ExportTraceServiceResponse.FromString(body).HasField("partial_success")
    spans = otlp_receiver.wait_for_spans(2)
    assert [s.transport for s in spans] == ["grpc", "http"]
    for span in spans:
        assert span.attributes == ANY_VALUE_ATTRS
        ids = (bytes(range(16)).hex(), bytes(range(8)).hex())
        assert (span.kind, span.trace_id, span.span_id, span.scope) == ("PRODUCER", *ids, "raw-scope")
    assert otlp_receiver.requests()[1].headers["content-encoding"] == "gzip"


def test_http_json_and_rejections(otlp_receiver):
    record = {"body": {"stringValue": "from json"}, "severityNumber": 9, "traceId": "ab" * 16, "spanId": "cd" * 8}
    doc = {"resourceLogs": [{"scopeLogs": [{"logRecords": [record]}]}]}
    port = otlp_receiver.http_port
    status, headers, body = post(port, "/v1/logs", json.dumps(doc).encode(), {"Content-Type": "application/json"})
    assert (status, headers["content-type"]) == (200, "application/json")
    json_format.Parse(body, logs_service_pb2.ExportLogsServiceResponse())
    (log,) = otlp_receiver.wait_for_logs(1)
    assert (log.body, log.severity_number, log.trace_id, log.span_id) == ("from json", 9, "ab" * 16, "cd" * 8)

    otlp_receiver.clear()
    assert post(port, "/v1/trace")[0] == 404
    assert post(port, "/")[0] == 404
    assert post(port, "/v1/traces", method="GET")[0] == 405
    assert post(port, "/v1/traces", b"x", {"Content-Type": "text/plain"})[0] == 415
    status, _, body = post(port, "/v1/traces", b"\xff\xff\xff")
    assert status == 400
    assert "cannot decode" in status_pb2.Status.FromString(body).message
    assert otlp_receiver.spans() == []
    seen = [(r.signal, r.http_status, r.accepted) for r in otlp_receiver.requests()]
    assert seen == [("", 404, False)] * 2 + [("traces", 415, False), ("traces", 400, False)]


ERROR_FAULTS = {Fault.UNAVAILABLE: 503, Fault.RESOURCE_EXHAUSTED: 429, Fault.UNAUTHENTICATED: 401}
ERROR_FAULTS[Fault.PERMISSION_DENIED] = 403


@pytest.mark.parametrize("fault", ERROR_FAULTS, ids=lambda f: f.name)
def test_error_faults(otlp_receiver, fault):
    grpc_code, http_status = grpc.StatusCode[fault.name], ERROR_FAULTS[fault]
    otlp_receiver.set_fault(fault, retry_after=7)
    with pytest.raises(grpc.RpcError) as err:
        grpc_export(otlp_receiver.grpc_port, request=any_value_request())
    assert err.value.code() == grpc_code
    status, headers, body = post(otlp_receiver.http_port, "/v1/traces", any_value_request().SerializeToString())
    assert (status, status_pb2.Status.FromString(body).code) == (http_status, grpc_code.value[0])
    retry_info = dict(err.value.trailing_metadata()).get("google.rpc.retryinfo-bin")
    if fault is Fault.RESOURCE_EXHAUSTED:
        assert headers["retry-after"] == "7"
        assert error_details_pb2.RetryInfo.FromString(retry_info).retry_delay.seconds == 7
    else:
        assert ("retry-after" in headers, retry_info) == (False, None)
    assert otlp_receiver.spans() == []
    seen = [(r.transport, r.accepted, r.fault) for r in otlp_receiver.requests()]
    assert seen == [("grpc", False, fault.name), ("http", False, fault.name)]


def test_drop_connection_and_slow_faults(otlp_receiver):
    otlp_receiver.set_fault(Fault.DROP_CONNECTION)
    with pytest.raises(grpc.RpcError) as err:
        grpc_export(otlp_receiver.grpc_port)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        post(otlp_receiver.http_port, "/v1/traces")
    assert [r.accepted for r in otlp_receiver.requests()] == [False, False]

    otlp_receiver.set_fault(Fault.SLOW, delay=0.4)
    started = time.monotonic()
    grpc_export(otlp_receiver.grpc_port, request=any_value_request())
    assert post(otlp_receiver.http_port, "/v1/traces", any_value_request().SerializeToString())[0] == 200
    assert time.monotonic() - started >= 0.8
    assert [s.transport for s in otlp_receiver.spans()] == ["grpc", "http"]
    # A client that gives up while the receiver sleeps: nothing is stored, the request is not accepted.
    with pytest.raises(grpc.RpcError) as err:
        grpc_export(otlp_receiver.grpc_port, request=any_value_request(), timeout=0.1)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    last = otlp_receiver.wait_for_requests(5)[-1]
    assert (last.accepted, last.grpc_code, len(otlp_receiver.spans())) == (False, "CANCELLED", 2)


@pytest.mark.parametrize(
    ("signal_name", "field"),
    list(zip(SIGNALS, ("rejected_spans", "rejected_data_points", "rejected_log_records"), strict=True)),
)
def test_partial_success_fault(otlp_receiver, signal_name, field):
    otlp_receiver.set_fault(Fault.PARTIAL_SUCCESS, rejected=5)
    grpc_resp = grpc_export(otlp_receiver.grpc_port, signal_name)
    status, _, body = post(otlp_receiver.http_port, f"/v1/{signal_name}")
    assert status == 200
    for resp in (grpc_resp, message(signal_name, "Response").FromString(body)):
        assert (getattr(resp.partial_success, field), resp.partial_success.error_message) == (5, "test rejection")
    assert [(r.signal, r.accepted) for r in otlp_receiver.requests()] == [(signal_name, True)] * 2


def test_fault_times_then_back_to_normal(otlp_receiver):
    otlp_receiver.set_fault(Fault.UNAVAILABLE, times=2)
    assert post(otlp_receiver.http_port, "/v1/traces")[0] == 503
    with pytest.raises(grpc.RpcError):
        grpc_export(otlp_receiver.grpc_port)
    assert post(otlp_receiver.http_port, "/v1/traces")[0] == 200
    grpc_export(otlp_receiver.grpc_port)
    otlp_receiver.set_fault(Fault.PERMISSION_DENIED)
    assert [post(otlp_receiver.http_port, "/v1/traces")[0] for _ in range(2)] == [403, 403]
    otlp_receiver.set_fault(Fault.NONE)
    assert post(otlp_receiver.http_port, "/v1/traces")[0] == 200
    assert [r.accepted for r in otlp_receiver.requests()] == [False, False, True, True, False, False, True]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sdk_exporter_behaviour_under_faults(otlp_receiver, transport):
    def run(fault, names=("op",), **kw):
        otlp_receiver.clear()
        otlp_receiver.set_fault(fault, **kw)
        return export_spans(exporter("traces", transport, otlp_receiver, timeout=2), names)

    if transport == "grpc" or HTTP_RETRIES_429:
        # A throttle with Retry-After / RetryInfo of 0 s is retried at once and then succeeds.
        assert run(Fault.RESOURCE_EXHAUSTED, retry_after=0, times=1) is OK
        assert [r.accepted for r in otlp_receiver.requests()] == [False, True]
    else:  # an older HTTP exporter: 429 is a permanent error whatever Retry-After says
        assert run(Fault.RESOURCE_EXHAUSTED, retry_after=0, times=1) is FAILED
        assert [r.accepted for r in otlp_receiver.requests()] == [False]
    # A throttle longer than the exporter timeout fails at once, without a retry.
    assert run(Fault.RESOURCE_EXHAUSTED, retry_after=30) is FAILED
    assert len(otlp_receiver.requests()) == 1
    # Auth failures are permanent: a single attempt.
    assert run(Fault.UNAUTHENTICATED) is FAILED
    assert len(otlp_receiver.requests()) == 1
    # Partial success is reported as plain SUCCESS by the SDK.
    assert run(Fault.PARTIAL_SUCCESS, ["a", "b"], rejected=1) is OK
    assert sorted(s.name for s in otlp_receiver.spans()) == ["a", "b"]


def test_sdk_exporters_with_required_headers():
    with Receiver(required_headers={"Authorization": "Bearer s3cret"}) as rcv:
        for transport in TRANSPORTS:
            assert export_spans(exporter("traces", transport, rcv, timeout=2)) is FAILED
            good = exporter("traces", transport, rcv, timeout=2, headers={"authorization": "Bearer s3cret"})
            assert export_spans(good, [f"auth-{transport}"]) is OK
        assert post(rcv.http_port, "/v1/traces", headers={"Authorization": "Bearer wrong"})[0] == 401
        with pytest.raises(grpc.RpcError) as err:
            grpc_export(rcv.grpc_port)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert sorted(s.name for s in rcv.spans()) == ["auth-grpc", "auth-http"]
        assert [r.accepted for r in rcv.requests()] == [False, True, False, True, False, False]


def _refused(port):
    with socket.socket() as s:
        try:
            s.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            return True
    return False


def test_down_and_up_keep_ports_and_data(otlp_receiver):
    # Exporters (with their gRPC channel / pooled keep-alive HTTP connection) live through the outage.
    grpc_exp = exporter("traces", "grpc", otlp_receiver, timeout=5)
    http_exp = exporter("traces", "http", otlp_receiver, timeout=0.5)
    try:
        assert [grpc_exp.export(finished_spans("b-grpc")), http_exp.export(finished_spans("b-http"))] == [OK, OK]
        ports = (otlp_receiver.grpc_port, otlp_receiver.http_port)

        otlp_receiver.down()
        assert [_refused(port) for port in ports] == [True, True]
        assert http_exp.export(finished_spans("lost")) is FAILED
        with pytest.raises(grpc.RpcError) as err:
            grpc_export(ports[0])
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert [s.name for s in otlp_receiver.spans()] == ["b-grpc", "b-http"]

        otlp_receiver.up()
        assert (otlp_receiver.grpc_port, otlp_receiver.http_port) == ports
        assert [grpc_exp.export(finished_spans("a-grpc")), http_exp.export(finished_spans("a-http"))] == [OK, OK]
    finally:
        grpc_exp.shutdown()
        http_exp.shutdown()
    assert [s.name for s in otlp_receiver.spans()] == ["b-grpc", "b-http", "a-grpc", "a-http"]


def test_tls(tmp_path, monkeypatch):
    # requests lets these env vars override the exporter's certificate_file (Session.verify).
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    cert, key = make_self_signed_cert(tmp_path)
    cert_pem = Path(cert).read_bytes()
    assert (b"BEGIN CERTIFICATE" in cert_pem, b"PRIVATE KEY" in Path(key).read_bytes()) == (True, True)
    with Receiver(tls=(cert, key)) as rcv:
        assert (rcv.grpc_endpoint[:8], rcv.http_endpoint[:8]) == ("https://", "https://")
        creds = grpc.ssl_channel_credentials(root_certificates=cert_pem)
        grpc_export(rcv.grpc_port, request=any_value_request(), credentials=creds)
        trusting = ssl.create_default_context(cafile=cert)
        assert post(rcv.http_port, "/v1/traces", any_value_request().SerializeToString(), context=trusting)[0] == 200
        grpc_exp = GrpcSpanExporter(endpoint=rcv.grpc_endpoint, credentials=creds, timeout=5)
        assert export_spans(grpc_exp, ["tls-grpc"]) is OK
        url = rcv.http_endpoint + "/v1/traces"
        http_exp = HttpSpanExporter(endpoint=url, certificate_file=cert, timeout=5, compression=Compression.Gzip)
        assert export_spans(http_exp, ["tls-http"]) is OK
        with pytest.raises(ssl.SSLCertVerificationError):  # a client not trusting the cert
            post(rcv.http_port, "/v1/traces", context=ssl.create_default_context())
        assert [s.name for s in rcv.spans()] == ["raw", "raw", "tls-grpc", "tls-http"]
        assert rcv.requests()[-1].headers["content-encoding"] == "gzip"


def test_wait_timeout_reports_what_arrived_and_clear(otlp_receiver):
    export_spans(exporter("traces", "http", otlp_receiver), ["alpha", "beta"])
    with pytest.raises(AssertionError, match=r"alpha.*beta|beta.*alpha"):
        otlp_receiver.wait_for_spans(lambda spans: any(s.name == "gamma" for s in spans), timeout=0.2)
    with pytest.raises(AssertionError, match="received 0"):
        otlp_receiver.wait_for_metrics("nope", timeout=0.1)
    assert len(otlp_receiver.wait_for_spans("beta", timeout=0.1)) == 2
    otlp_receiver.clear()
    assert (otlp_receiver.spans(), otlp_receiver.requests()) == ([], [])
    assert otlp_receiver.counts() == {"spans": 0, "metrics_points": 0, "logs": 0, "server_spans": 0}


def test_counts_server_spans_apart_for_the_benchmarks(otlp_receiver):
    request = trace_service_pb2.ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    for n, kind in enumerate((trace_pb2.Span.SPAN_KIND_SERVER, trace_pb2.Span.SPAN_KIND_INTERNAL,
                              trace_pb2.Span.SPAN_KIND_SERVER, trace_pb2.Span.SPAN_KIND_CLIENT)):
        spans.add(trace_id=bytes(range(16)), span_id=bytes([n + 1] * 8), name=f"s{n}", kind=kind)
    assert post(otlp_receiver.http_port, "/v1/traces", request.SerializeToString())[0] == 200
    counts = otlp_receiver.counts()
    assert (counts["spans"], counts["server_spans"]) == (4, 2)


def test_standalone_sink_script():
    script = Path(__file__).with_name("otlp_receiver.py")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        ready = proc.stdout.readline().split()
        assert ready[0] == "READY", ready
        ports = dict(item.split("=") for item in ready[1:])
        rcv = Receiver(grpc_port=int(ports["grpc"]), http_port=int(ports["http"]))  # not started: endpoints only
        assert export_spans(exporter("traces", "grpc", rcv), ["a", "b"]) is OK
        assert export_spans(exporter("traces", "http", rcv), ["c"]) is OK
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    assert out.strip().splitlines()[-1] == "spans=3 metrics_points=0 logs=0"
