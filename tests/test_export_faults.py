"""Export failures named at run time, with the fix, as `check-config --probe` names them; gRPC's own
C-core log lines kept off the program's stderr (issue 14)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PYTHON, run_launcher
from otlp_receiver import Fault, Receiver, make_self_signed_cert
from typer.testing import CliRunner

from cryostorm_run import TelemetrySettings
from cryostorm_run.cli._app import app
from cryostorm_run.common.faults import Target, classify
from cryostorm_run.launch.plan import plan_launch

# -- the classification, on error texts the exporters really produce (grpcio 1.85, requests 2.34) --------

GRPC = Target("https://127.0.0.1:4317", grpc=True)
GRPC_PLAIN = Target("http://127.0.0.1:4317", grpc=True)
HTTP = Target("https://127.0.0.1:4318/v1/traces", grpc=False)
HTTP_PLAIN = Target("http://127.0.0.1:4318/v1/traces", grpc=False)

CASES = [
    ("tls_plaintext_collector", GRPC, "Transient error StatusCode.UNAVAILABLE encountered while exporting metrics to "
     "127.0.0.1:4317, retrying in 0.84s. Error details: failed to connect to all addresses; last error: UNKNOWN: "
     "ipv4:127.0.0.1:4317: Tls handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:100000f7:SSL "
     "routines:OPENSSL_internal:WRONG_VERSION_NUMBER: Invalid certificate verification context: OK"),
    ("tls_plaintext_collector", HTTP, "SSLError: HTTPSConnectionPool(host='127.0.0.1', port=4318): Max retries "
     "exceeded with url: /v1/traces (Caused by SSLError(SSLError(1, '[SSL: WRONG_VERSION_NUMBER] wrong version "
     "number (_ssl.c:1006)')))"),
    ("tls_untrusted", GRPC, "gRPC UNAVAILABLE: failed to connect to all addresses; last error: UNKNOWN: "
     "ipv4:127.0.0.1:4317: Tls handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:1000007d:SSL "
     "routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED: self signed certificate: OK"),
    ("tls_untrusted", HTTP, "Transient error HTTPSConnectionPool(host='127.0.0.1', port=4318): Max retries exceeded "
     "with url: /v1/logs (Caused by SSLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] "
     "certificate verify failed: self-signed certificate (_ssl.c:1006)'))) encountered while exporting logs batch"),
    ("tls_expected", GRPC_PLAIN, "gRPC UNAVAILABLE: failed to connect to all addresses; last error: UNAVAILABLE: "
     "ipv4:127.0.0.1:4317: Socket closed"),
    ("tls_expected", HTTP_PLAIN, "Transient error ('Connection aborted.', ConnectionResetError(104, 'Connection reset "
     "by peer')) encountered while exporting metrics batch, retrying in 1.16s."),
    ("refused", GRPC_PLAIN, "Failed to export metrics to 127.0.0.1:4317, error code: StatusCode.UNAVAILABLE, error "
     "details: failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:4317: Failed to connect to "
     "remote host: Connection refused"),
    ("refused", HTTP_PLAIN, "ConnectionError: HTTPConnectionPool(host='127.0.0.1', port=4318): Max retries exceeded "
     "with url: /v1/traces (Caused by NewConnectionError(\"HTTPConnection(host='127.0.0.1', port=4318): Failed to "
     "establish a new connection: [Errno 111] Connection refused\"))"),
    ("timeout", GRPC_PLAIN, "Failed to export metrics to 127.0.0.1:4317, error code: StatusCode.DEADLINE_EXCEEDED, "
     "error details: Deadline Exceeded"),
    ("timeout", HTTP_PLAIN, "ReadTimeout: HTTPConnectionPool(host='127.0.0.1', port=4318): Read timed out. "
     "(read timeout=1.5)"),
    ("unauthenticated", GRPC_PLAIN, "Failed to export metrics to 127.0.0.1:4317, error code: "
     "StatusCode.UNAUTHENTICATED, error details: missing or wrong required header(s): authorization"),
    ("unauthenticated", HTTP_PLAIN, "Failed to export metrics batch code: 401, reason: Unauthorized"),
    ("permission_denied", GRPC_PLAIN, "gRPC PERMISSION_DENIED: test fault: permission denied"),
    ("permission_denied", HTTP_PLAIN, "HTTP 403: \\x08\\x07\\x12\\x1dtest fault: permission denied"),
]


@pytest.mark.parametrize(("kind", "target", "text"), CASES, ids=[f"{c[0]}-{'grpc' if c[1].grpc else 'http'}"
                                                                  for c in CASES])
def test_each_class_is_named_with_its_fix(kind: str, target: Target, text: str) -> None:
    fault = classify(text, target)
    assert fault is not None and fault.kind == kind, fault


def test_the_fixes_are_the_probes() -> None:
    assert classify(CASES[0][2], GRPC).fix == (  # type: ignore[union-attr]
        "for a plaintext collector use an http:// URL (gRPC: with otlp.insecure unset or true; false makes it TLS too)")
    assert classify(CASES[6][2], GRPC_PLAIN).fix == "is the collector running and listening on port 4317?"  # type: ignore[union-attr]
    assert classify(CASES[4][2], GRPC_PLAIN).fix == "if the collector serves TLS on this port, use https://"  # type: ignore[union-attr]


# What each of CASES says and its fix, word for word (what the program's stderr line is made of).
WHAT_AND_FIX = [
    ("TLS is configured but 127.0.0.1:4317 answers in plaintext (WRONG_VERSION_NUMBER)",
     "for a plaintext collector use an http:// URL (gRPC: with otlp.insecure unset or true; false makes it TLS too)"),
    ("TLS is configured but 127.0.0.1:4318 answers in plaintext (WRONG_VERSION_NUMBER)",
     "for a plaintext collector use an http:// URL"),
    ("the TLS certificate of 127.0.0.1:4317 is not trusted (self signed certificate)",
     "set otlp.certificate_file to the CA bundle that signed the collector's certificate"),
    ("the TLS certificate of 127.0.0.1:4318 is not trusted (self-signed certificate)",
     "set otlp.certificate_file to the CA bundle that signed the collector's certificate"),
    ("127.0.0.1:4317 closed the connection without an answer (Socket closed): it may expect TLS",
     "if the collector serves TLS on this port, use https://"),
    ("127.0.0.1:4318 closed the connection without an answer (Connection aborted): it may expect TLS, or be an "
     "OTLP/gRPC port", "if the collector serves TLS on this port, use https://; if it is the OTLP/gRPC port, send "
     "OTLP/HTTP to the collector's OTLP/HTTP port (4318 by default), or set otlp.protocol=grpc"),
    ("connection to 127.0.0.1:4317 refused", "is the collector running and listening on port 4317?"),
    ("connection to 127.0.0.1:4318 refused", "is the collector running and listening on port 4318?"),
    ("no answer from 127.0.0.1:4317 in time (DEADLINE_EXCEEDED)",
     "the collector is slow or overloaded, or this port is not an OTLP receiver"),
    ("no answer from 127.0.0.1:4318 in time (ReadTimeout)",
     "the collector is slow or overloaded, or this port is not an OTLP receiver"),
    ("the collector answered UNAUTHENTICATED", "check otlp.headers (e.g. the authorization token)"),
    ("the collector answered HTTP 401", "check otlp.headers (e.g. the authorization token)"),
    ("the collector answered PERMISSION_DENIED", "the credentials in otlp.headers are not allowed to export here"),
    ("the collector answered HTTP 403", "the credentials in otlp.headers are not allowed to export here"),
]


@pytest.mark.parametrize(("case", "what_and_fix"), list(zip(CASES, WHAT_AND_FIX, strict=True)),
                         ids=[c[0] for c in CASES])
def test_each_class_says_what_happened_and_the_fix(case: tuple[str, Target, str],
                                                   what_and_fix: tuple[str, str]) -> None:
    kind, target, text = case
    assert classify(text, target) == (kind, *what_and_fix)


HANDSHAKE_FIX_GRPC = ("does the collector serve TLS on port 4317? for a plaintext collector use an http:// URL "
                      "(gRPC: with otlp.insecure unset or true; false makes it TLS too)")
MORE_CASES = [
    (Target("http://collector.invalid:4317", grpc=True), "failed to connect to all addresses; last error: "
     "UNAVAILABLE: dns:collector.invalid:4317: DNS resolution failed for collector.invalid:4317",
     ("dns", "the host name of collector.invalid:4317 does not resolve", "check the host name in the collector URL")),
    (Target("http://collector.invalid:4317", grpc=True), "gRPC UNAVAILABLE: errors resolving collector.invalid:"
     "4317: [field:hostname lookup error:address lookup failed for collector.invalid:4317: Domain name not found]",
     ("dns", "the host name of collector.invalid:4317 does not resolve", "check the host name in the collector URL")),
    (Target("http://collector.invalid:4318/v1/logs", grpc=False), "ConnectionError: HTTPConnectionPool(host="
     "'collector.invalid', port=4318): Max retries exceeded with url: /v1/logs (Caused by NameResolutionError("
     "\"Failed to resolve 'collector.invalid' ([Errno -2] Name or service not known)\"))",
     ("dns", "the host name of collector.invalid:4318 does not resolve", "check the host name in the collector URL")),
    (GRPC, "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:4317: Tls handshake failed "
     "(TSI_PROTOCOL_FAILURE): SSL_ERROR_SYSCALL",
     ("tls", "the TLS handshake with 127.0.0.1:4317 failed (Tls handshake failed)", HANDSHAKE_FIX_GRPC)),
    (HTTP, "SSLError: HTTPSConnectionPool(host='127.0.0.1', port=4318): Max retries exceeded (Caused by SSLError("
     "SSLError(1, '[SSL: SSLV3_ALERT_HANDSHAKE_FAILURE] sslv3 alert handshake failure (_ssl.c:1006)')))",
     ("tls", "the TLS handshake with 127.0.0.1:4318 failed (SSLError)",
      "does the collector serve TLS on port 4318? for a plaintext collector use an http:// URL")),
    (Target("http://10.0.0.1:4318/v1/traces", grpc=False), "ConnectTimeout: HTTPConnectionPool(host='10.0.0.1', "
     "port=4318): Max retries exceeded with url: /v1/traces (Caused by ConnectTimeoutError(<urllib3.connection."
     "HTTPConnection object>, 'Connection to 10.0.0.1 timed out. (connect timeout=10)'))",
     ("timeout", "no connection to 10.0.0.1:4318 in time (ConnectTimeout)",
      "check the host and port, and any firewall in between")),
    (Target("https://127.0.0.1:4317", grpc=True, certificate="/etc/ca.pem"), "CERTIFICATE_VERIFY_FAILED",
     ("tls_untrusted", "the TLS certificate of 127.0.0.1:4317 is not trusted (CERTIFICATE_VERIFY_FAILED)",
      "check that otlp.certificate_file (/etc/ca.pem) holds the CA that signed the collector's certificate")),
    (GRPC_PLAIN, "gRPC UNIMPLEMENTED: unknown service opentelemetry.proto.collector.trace.v1.TraceService",
     ("not_found", "the collector answered UNIMPLEMENTED",
      "is this an OTLP/gRPC port, with a pipeline for this signal?")),
    (HTTP_PLAIN, "Failed to export batch code: 404, reason: Not Found",
     ("not_found", "the collector answered HTTP 404",
      "no OTLP receiver at this path: check the collector path (cryostorm adds /v1/<signal>)")),
    # the port a URL without one is reached on, as the exporters do
    (Target("https://collector.example", grpc=False), "Connection refused",
     ("refused", "connection to collector.example:443 refused", "is the collector running and listening on port 443?")),
    (Target("collector.example", grpc=True), "Connection refused",
     ("refused", "connection to collector.example:80 refused", "is the collector running and listening on port 80?")),
    (Target("http://[::1]:4317", grpc=True), "Connection refused",  # the port is after the last colon
     ("refused", "connection to ::1:4317 refused", "is the collector running and listening on port 4317?")),
]


@pytest.mark.parametrize(("target", "text", "expected"), MORE_CASES, ids=[c[2][0] for c in MORE_CASES])
def test_dns_handshake_connect_timeout_and_status_classes(target: Target, text: str,
                                                          expected: tuple[str, str, str]) -> None:
    assert classify(text, target) == expected


@pytest.mark.parametrize(("target", "text"), [
    (HTTP_PLAIN, "Failed to export batch code: 500, reason: Internal Server Error"),  # no class of its own
    (GRPC_PLAIN, "Failed to export metrics, code: 401"),  # an HTTP code in a gRPC exporter's text
    (HTTP_PLAIN, "gRPC UNAUTHENTICATED"),  # a gRPC status in an HTTP exporter's text
    (GRPC_PLAIN, "SSL_ERROR_SYSCALL"),  # TLS words from a plaintext channel
    (Target("http://127.0.0.1:4317", grpc=True, tls=True), "Socket closed"),  # TLS asked for by flag, not scheme
])
def test_texts_that_name_no_class_are_not_guessed(target: Target, text: str) -> None:
    assert classify(text, target) is None


def test_a_closed_socket_on_a_tls_channel_is_not_called_a_tls_port() -> None:
    assert classify("gRPC UNAVAILABLE: ipv4:127.0.0.1:4317: Socket closed", GRPC) is None


# -- gRPC's own logging -------------------------------------------------------------------------------


def test_grpc_verbosity_is_none_unless_the_user_set_it_or_traces_grpc() -> None:
    settings = TelemetrySettings()
    base = {"PATH": "/usr/bin:/bin"}
    assert plan_launch(settings, ["true"], base).env["GRPC_VERBOSITY"] == "NONE"
    assert plan_launch(settings, ["true"], {**base, "GRPC_VERBOSITY": "DEBUG"}).env["GRPC_VERBOSITY"] == "DEBUG"
    assert "GRPC_VERBOSITY" not in plan_launch(settings, ["true"], {**base, "GRPC_TRACE": "tcp"}).env
    shown = CliRunner().invoke(app, ["print-env"], env={}).stdout  # print-env lists what the program gets
    assert "# default: no gRPC C-core log lines (cryostorm names export errors)\nexport GRPC_VERBOSITY=NONE\n" in shown


# -- end to end: a program under cryostorm-run exporting to the wrong kind of collector -------------------

PROGRAM = """
import logging, sys, time
from opentelemetry import metrics, trace
tracer = trace.get_tracer("faults")
with tracer.start_as_current_span("work"):
    pass
metrics.get_meter("faults").create_counter("work").add(1)
logging.getLogger("app").warning("app log")
print("program out", flush=True)
print("program err", file=sys.stderr, flush=True)
time.sleep(3)
"""


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return make_self_signed_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_receiver(cert: tuple[str, str]) -> Iterator[Receiver]:
    with Receiver(tls=cert) as rcv:
        yield rcv


def run_program(collector: str, protocol: str, tmp_path: Path) -> str:
    """The program's stderr, after checking that every line that is not cryostorm's is the program's own:
    no gRPC C-core line (`I1130 12:00:00.000 123 ssl_transport_security.cc:2563] Handshake failed ...`)."""
    script = tmp_path / "program.py"
    script.write_text(PROGRAM)
    env = {"CRYOSTORM_EXPORTER_TYPE": "otlp", "CRYOSTORM_COLLECTOR": collector, "CRYOSTORM_OTLP__PROTOCOL": protocol,
           "CRYOSTORM_SERVICE__NAME": "faults", "CRYOSTORM_SERVICE__ENVIRONMENT": "production",
           "CRYOSTORM_TRACING__EXPORT_CONFIG__SCHEDULE_DELAY_MILLIS": "100",
           "CRYOSTORM_LOGGING__EXPORT_CONFIG__SCHEDULE_DELAY_MILLIS": "100",
           "CRYOSTORM_METRICS__EXPORT_INTERVAL_MILLIS": "500", "CRYOSTORM_SHUTDOWN_TIMEOUT_MILLIS": "1000",
           # The SDK's gRPC exporter retries UNAVAILABLE inside gRPC until its timeout: its line comes then.
           "CRYOSTORM_OTLP__TIMEOUT_MILLIS": "1500",
           # What may be an outage (refused, closed) is told when a batch's retries end: end them soon.
           "CRYOSTORM_TRACING__EXPORT_CONFIG__TIMEOUT_MILLIS": "1000",
           "CRYOSTORM_LOGGING__EXPORT_CONFIG__TIMEOUT_MILLIS": "1000"}
    done = run_launcher(["--quiet", "--", PYTHON, str(script)], env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "program out\n"
    theirs = [line for line in done.stderr.splitlines() if not line.startswith("cryostorm: ")]
    assert theirs == ["app log", "program err"], done.stderr
    return done.stderr


def endpoint(rcv: Receiver, protocol: str) -> str:
    return rcv.grpc_endpoint if protocol == "grpc" else rcv.http_endpoint


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_tls_to_a_plaintext_collector_is_named_with_the_fix(otlp_receiver: Receiver, protocol: str,
                                                            tmp_path: Path) -> None:
    plain = endpoint(otlp_receiver, protocol)
    stderr = run_program(plain.replace("http://", "https://"), protocol, tmp_path)
    port = plain.rsplit(":", 1)[1]
    fix = "for a plaintext collector use an http:// URL" + (
        " (gRPC: with otlp.insecure unset or true; false makes it TLS too)" if protocol == "grpc" else "")
    for signal in ("traces", "metrics", "logs"):  # own span transport; the SDK's metric and log exporters
        assert re.search(rf"^cryostorm: \w+: {signal} export to https://127\.0\.0\.1:{port}\S* failed: TLS is "
                         rf"configured but 127\.0\.0\.1:{port} answers in plaintext \(WRONG_VERSION_NUMBER\); "
                         rf"fix: {re.escape(fix)}", stderr, re.M), stderr
    assert "Transient error" not in stderr  # the raw exporter text is replaced, not repeated


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_plaintext_to_a_tls_collector_and_an_untrusted_certificate(tls_receiver: Receiver, protocol: str,
                                                                   tmp_path: Path) -> None:
    tls = endpoint(tls_receiver, protocol)
    stderr = run_program(tls.replace("https://", "http://"), protocol, tmp_path)
    # Told as given up ("failed"), or, when a batch's retry budget ends before the exit, as kept for the next
    # attempt: the same cause and fix either way.
    assert re.search(r"^cryostorm: \w+: traces export to http://\S+(?: failed|: still failing, kept in the queue to "
                     r"be retried): 127\.0\.0\.1:\d+ closed the connection "
                     r"without an answer \(.*\): it may expect TLS(, or be an OTLP/gRPC port)?; fix: if the "
                     r"collector serves TLS on this port, use https://(; if it is the OTLP/gRPC port, .*)?$", stderr,
                     re.M), stderr
    stderr = run_program(tls, protocol, tmp_path)  # TLS, but the self-signed CA is not given
    assert re.search(r"^cryostorm: \w+: metrics export to https://\S+ failed: the TLS certificate of 127\.0\.0\.1:\d+ "
                     r"is not trusted \(self.signed certificate\); fix: set otlp\.certificate_file to the CA bundle "
                     r"that signed the collector's certificate$", stderr, re.M), stderr


def test_an_unauthenticated_export_names_the_headers(tmp_path: Path) -> None:
    with Receiver(required_headers={"authorization": "Bearer right"}) as rcv:
        stderr = run_program(rcv.http_endpoint, "http/protobuf", tmp_path)
    for signal in ("traces", "metrics", "logs"):
        assert re.search(rf"^cryostorm: \w+: {signal} export to http://\S+/v1/{signal} failed: the collector answered "
                         r"HTTP 401; fix: check otlp\.headers \(e\.g\. the authorization token\)", stderr, re.M), stderr


# -- an export cut short by the exporter's own shutdown -----------------------------------------------------


def test_an_export_cancelled_by_shutdown_is_told_as_such_not_as_retried_out(otlp_receiver: Receiver,
                                                                            caplog: pytest.LogCaptureFixture) -> None:
    # The exit's deadline shuts the exporter down with a request under way: its channel is closed under it
    # (gRPC CANCELLED). That was told as "failed (retried until the budget ran out)", with 30 s of budget left.
    import threading
    import time

    from cryostorm_run.export.otlp_send import GrpcSender, deliver

    otlp_receiver.set_fault(Fault.SLOW, delay=30, times=1)  # takes the request, answers only after the test
    sender = GrpcSender({"endpoint": otlp_receiver.grpc_endpoint, "timeout": 30})
    stop = threading.Event()
    done: list[object] = []
    worker = threading.Thread(target=lambda: done.append(deliver(
        sender, b"", budget_s=30, stop=stop, on_answer=lambda ok, seconds: None, what="5 spans", kept=True)))
    with caplog.at_level("WARNING", logger="opentelemetry.cryostorm.export.transport"):
        worker.start()
        deadline = time.monotonic() + 10
        while otlp_receiver.current_fault is Fault.SLOW and time.monotonic() < deadline:  # the request arrived
            time.sleep(0.02)
        stop.set()  # what the exporter's shutdown does: stop retrying, close the channel
        sender.close()
        worker.join(10)
    assert done and not done[0].ok and "CANCELLED" in done[0].error, done  # type: ignore[attr-defined]
    told = [record.getMessage() for record in caplog.records]
    assert told == [f"exporting 5 spans to {otlp_receiver.grpc_endpoint.partition('://')[2]} failed and was not "
                    "retried: the exporter was shut down (gRPC CANCELLED: Channel closed!)"], told


def test_an_untrusted_certificate_over_http_names_the_ca_bundle_variable_requests_uses(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """requests verifies with REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE over the exporter's certificate file: the fix named
    the certificate file, which was right (the probe and the start-up warning already said so)."""
    text = "SSLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed'))"
    http, grpc = (Target("https://127.0.0.1:4318", grpc=False, certificate="/etc/ca.pem"),
                  Target("https://127.0.0.1:4317", grpc=True, certificate="/etc/ca.pem"))
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.setenv("CURL_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    assert classify(text, http)[2] == ("CURL_CA_BUNDLE is set: requests verifies with it instead of "
                                       "otlp.certificate_file; unset it for the program, or point it at the "
                                       "collector's CA bundle")
    assert classify(text, grpc)[2].startswith("check that otlp.certificate_file (/etc/ca.pem) holds the CA")
    monkeypatch.delenv("CURL_CA_BUNDLE")
    assert classify(text, http)[2].startswith("check that otlp.certificate_file (/etc/ca.pem) holds the CA")


OVERSIZED = """
from opentelemetry import trace
tracer = trace.get_tracer("big")
for i in range(64):
    with tracer.start_as_current_span(f"big-{i}") as span:
        span.set_attribute("payload", "x" * 4000)
"""


def test_a_batch_over_the_collectors_size_limit_is_told_with_the_fix_and_not_retried_for_ever() -> None:
    """RESOURCE_EXHAUSTED "Received message larger than max" was retried as an overload (it fails whenever sent
    again), then told as 'exporters still busy' with no reason."""
    from otlp_receiver import Receiver

    with Receiver(max_grpc_message=64 * 1024) as rcv:
        env = {"CRYOSTORM_EXPORTER_TYPE": "otlp", "CRYOSTORM_COLLECTOR": rcv.grpc_endpoint,
               "CRYOSTORM_SERVICE__NAME": "big", "CRYOSTORM_METRICS__ENABLED": "false",
               "CRYOSTORM_LOGGING__ENABLED": "false", "CRYOSTORM_SHUTDOWN_TIMEOUT_MILLIS": "3000"}
        result = run_launcher(["--", PYTHON, "-c", OVERSIZED], env=env)
    assert result.returncode == 0, result.stderr
    assert ("the collector refused the export as too large (Received message larger than max" in result.stderr
            and "fix: export fewer items per request (<signal>.export_config.batch_size, e.g. 128), or raise the "
            "collector's limit (its OTLP receiver's max_recv_msg_size_mib)" in result.stderr), result.stderr
    assert "64 spans not delivered" in result.stderr and "still busy" not in result.stderr, result.stderr


def test_an_http_413_is_told_as_too_large_with_the_fix() -> None:
    fault = classify('HTTP 413: {"error":"nope"}', Target("http://127.0.0.1:4318", grpc=False))
    assert fault is not None and fault[0] == "too_large" and fault[2].startswith("export fewer items per request")


def test_grpc_sent_to_an_http_port_is_told_as_the_wrong_protocol() -> None:
    """gRPC to the OTLP/HTTP port got the raw 'Failed parsing HTTP/2' (and no reason at exit)."""
    text = ("gRPC UNAVAILABLE: failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:4318: Trying "
            "to connect an http1.x server (HTTP status 400)")
    fault = classify(text, Target("http://127.0.0.1:4318", grpc=True))
    assert fault == ("wrong_protocol", "127.0.0.1:4318 answers HTTP/1, not gRPC (Trying to connect an http1.x "
                     "server): an OTLP/HTTP port?", "send gRPC to the collector's OTLP/gRPC port (4317 by default), "
                     "or set otlp.protocol=http/protobuf for this one")
    other = classify("Failed parsing HTTP/2 (Expected SETTINGS frame as the first frame, got frame type 72)",
                     Target("http://127.0.0.1:4318", grpc=True))
    assert other is not None and other[0] == "wrong_protocol"


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A collector address that never completes a TCP connection, as behind a firewall that drops it: a
    listening socket that accepts nothing, its one-place backlog already taken (Linux then drops the SYNs)."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    held = []
    while True:  # fill the backlog: the first connection that does not complete says it is full
        probe = socket.socket()
        probe.settimeout(0.3)
        try:
            probe.connect(("127.0.0.1", port))
        except OSError:
            probe.close()
            break
        held.append(probe)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for sock in [*held, listener]:
            sock.close()


def test_a_grpc_collector_that_never_accepts_the_connection_is_told_as_no_connection_not_as_slow(
        black_hole: str, tmp_path: Path) -> None:
    # gRPC says only "Deadline Exceeded" either way, unless its own connect attempt ended first; a TCP check
    # after a deadline tells them apart, for cryostorm's span transport and the SDK's metric and log exporters.
    stderr = run_program(black_hole, "grpc", tmp_path)
    where = black_hole.removeprefix("http://")
    said = (r"( failed|: still failing, kept in the queue to be retried): no connection to "
            rf"{re.escape(where)} in time \((TCP )?connect(\(\))? timed out|tcp handshaker shutdown\); "
            r"fix: check the host and port, and any firewall in between$")
    for signal in ("traces", "metrics", "logs"):
        assert re.search(rf"^cryostorm: \w+: {signal} export to {re.escape(black_hole)}\S*{said}", stderr, re.M), stderr
    assert "slow or overloaded" not in stderr


def test_a_grpc_collector_that_accepts_but_does_not_answer_is_still_told_as_slow(tmp_path: Path) -> None:
    with Receiver() as rcv:
        rcv.set_fault(Fault.SLOW, delay=5)
        stderr = run_program(rcv.grpc_endpoint, "grpc", tmp_path)
    where = rcv.grpc_endpoint.removeprefix("http://")
    assert re.search(rf"^cryostorm: \w+: traces export to {re.escape(rcv.grpc_endpoint)}\S*( failed|: still failing, "
                     rf"kept in the queue to be retried): no answer from {re.escape(where)} in time "
                     rf"\(DEADLINE_EXCEEDED\); fix: the collector is slow", stderr, re.M), stderr
    assert "no connection" not in stderr


def test_a_grpc_deadline_without_a_connection_is_checked_and_told_apart_from_a_slow_answer(black_hole: str) -> None:
    from cryostorm_run.export.otlp_send import GrpcSender

    attempt = GrpcSender({"endpoint": black_hole, "timeout": 1}).send(b"", 1)
    where = black_hole.removeprefix("http://")
    assert attempt.error.startswith("gRPC DEADLINE_EXCEEDED: Deadline Exceeded; no TCP connection to "), attempt
    assert classify(attempt.error, Target(black_hole, grpc=True)) == (
        "timeout", f"no connection to {where} in time (TCP connect timed out)",
        "check the host and port, and any firewall in between")


@pytest.mark.parametrize("text", [  # grpcio's own words when its connect attempt ends before the deadline
    "gRPC UNAVAILABLE: failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:4317: Failed to "
    "connect to remote host: connect() timed out",
    "gRPC UNAVAILABLE: failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:4317: tcp handshaker "
    "shutdown"])
def test_grpcs_own_connect_timeouts_are_told_as_no_connection(text: str) -> None:
    fault = classify(text, GRPC_PLAIN)
    assert fault is not None and fault.what.startswith("no connection to 127.0.0.1:4317 in time"), fault
