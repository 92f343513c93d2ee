"""OTEL_PYTHON_DISABLED_INSTRUMENTATIONS with a misspelt name: the instrumentation stays on, and that is said;
`*` disables every instrumentation, as opentelemetry-instrument."""

from __future__ import annotations

import http.server
import sys
import threading

import pytest
from conftest import run_launcher
from otlp_receiver import Receiver


def test_a_misspelt_disabled_instrumentation_is_named_with_the_one_meant() -> None:
    program = ["--quiet", "--", sys.executable, "-c", "import requests; print('ran')"]
    env = {"CRYOSTORM_EXPORTER_TYPE": "console", "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "reqests,not-installed-here"}
    result = run_launcher(program, env=env)
    assert (result.returncode, result.stdout) == (0, "ran\n"), result.stderr
    # a name no installed instrumentation is close to (a variable shared by services) is not mentioned
    assert result.stderr.splitlines() == [
        "cryostorm: OTEL_PYTHON_DISABLED_INSTRUMENTATIONS names 'reqests', which is no installed instrumentation, "
        "so 'requests' stays instrumented: did you mean 'requests'?"], result.stderr


def test_a_correctly_named_disabled_instrumentation_is_not_mentioned() -> None:
    env = {"CRYOSTORM_EXPORTER_TYPE": "console", "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "requests"}
    result = run_launcher(["--quiet", "--", sys.executable, "-c", "import requests; print('ran')"], env=env)
    assert (result.returncode, result.stdout, result.stderr) == (0, "ran\n", "")


CALLS_IN_A_SPAN = """
import sys
import httpx, requests
from opentelemetry import trace
with trace.get_tracer("mine").start_as_current_span("own-span"):
    requests.get(sys.argv[1], timeout=10)
    httpx.get(sys.argv[1], timeout=10)
print("called")
"""


@pytest.mark.parametrize("disabled", [None, "*", " requests , * "])
def test_a_wildcard_disables_every_instrumentation(otlp_receiver: Receiver, disabled: str | None) -> None:
    """`*` disables them all, as opentelemetry-instrument (its SKIPPED_INSTRUMENTATIONS_WILDCARD): no CLIENT
    span, no traceparent sent by requests or httpx; the program's own span is still exported, nothing is said.
    Break checked: instrument.instrument comparing `*` as a name -> both instrumented."""
    seen: list[str | None] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("traceparent"))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {"CRYOSTORM_EXPORTER_TYPE": "otlp", "CRYOSTORM_COLLECTOR": f"http://127.0.0.1:{otlp_receiver.grpc_port}",
           "CRYOSTORM_SERVICE__NAME": "wildcard", "CRYOSTORM_SERVICE__ENVIRONMENT": "production",
           "CRYOSTORM_TRACING__PROCESSOR_TYPE": "simple", "CRYOSTORM_METRICS__ENABLED": "false",
           "CRYOSTORM_LOGGING__ENABLED": "false"}
    if disabled is not None:
        env["OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"] = disabled
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        result = run_launcher(["--quiet", "--", sys.executable, "-c", CALLS_IN_A_SPAN, url], env=env)
    finally:
        server.shutdown()
        server.server_close()
    assert (result.returncode, result.stdout, result.stderr) == (0, "called\n", ""), result.stderr
    otlp_receiver.wait_for_spans(lambda got: any(s.name == "own-span" for s in got))
    scopes = sorted(s.scope for s in otlp_receiver.spans())
    if disabled is None:  # the control: both instrumentations make their CLIENT span and send the trace on
        otlp_receiver.wait_for_spans(lambda got: len(got) == 3)
        scopes = sorted(s.scope for s in otlp_receiver.spans())
        assert scopes == ["mine", "opentelemetry.instrumentation.httpx", "opentelemetry.instrumentation.requests"]
        assert len(seen) == 2 and all(seen), seen
    else:
        assert scopes == ["mine"]
        assert seen == [None, None]
