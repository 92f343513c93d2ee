"""FastAPI requests: FastAPI's native telemetry by default, the contrib middleware on request.

Real uvicorn under `cryostorm-run`, exporting over real OTLP/gRPC to the test receiver.

FastAPI has native telemetry from 0.142 on, and those releases require opentelemetry-api>=1.44:
on an older line (the floor, API 1.40) the resolver installs a FastAPI without it. There the
native-mode tests assert the documented fallback instead (the contrib middleware whatever the
setting), so each test checks on every line the path that line really takes.
"""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from conftest import CRYOSTORM_RUN, PYTHON, ROOT, child_env, run_launcher
from otlp_receiver import ReceivedSpan, Receiver
from test_otlp_e2e import free_port, wait_until_serving

APPS = ROOT / "tests" / "apps"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
CONTRIB_SCOPE = "opentelemetry.instrumentation.fastapi"
# Looked up in the test's own interpreter (the same venv the served app runs in), not through cryostorm.
NATIVE = importlib.util.find_spec("fastapi.telemetry") is not None


@contextmanager
def serving(rcv: Receiver, tmp_path: Path, **env: str) -> Iterator[str]:
    """uvicorn serving tests/apps/fastapi_modes.py under cryostorm-run; stopped (SIGTERM) on exit."""
    port = free_port()
    log = tmp_path / "uvicorn.log"
    variables = {"CRYOSTORM_EXPORTER_TYPE": "otlp", "CRYOSTORM_COLLECTOR": rcv.grpc_endpoint,
                 "CRYOSTORM_SERVICE__NAME": "modes", "CRYOSTORM_SERVICE__ENVIRONMENT": "production",
                 "CRYOSTORM_METRICS__EXPORT_INTERVAL_MILLIS": "500", **env}
    with log.open("wb") as out:
        proc = subprocess.Popen([CRYOSTORM_RUN, "--quiet", "--", PYTHON, "-m", "uvicorn", "fastapi_modes:app",
                                 "--host", "127.0.0.1", "--port", str(port), "--app-dir", str(APPS)],
                                env=child_env(variables), stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until_serving(proc, f"http://127.0.0.1:{port}", log)
        yield f"http://127.0.0.1:{port}"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)  # spans are flushed at exit
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    output = log.read_text()  # uvicorn logs the app's own /boom error; nothing else may fail
    assert output.count("Traceback") == output.count("RuntimeError: boom"), output


def get_item(base: str) -> None:
    headers = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}
    assert httpx.get(f"{base}/items/42", headers=headers, timeout=10).json() == {"item_id": 42}


def server_spans(rcv: Receiver) -> list[ReceivedSpan]:
    return [s for s in rcv.spans() if s.kind == "SERVER"]


def test_native_by_default_one_server_span_with_stable_semantic_conventions(
    otlp_receiver: Receiver, tmp_path: Path
) -> None:
    with serving(otlp_receiver, tmp_path) as base:
        get_item(base)
        assert httpx.get(f"{base}/boom", timeout=10).status_code == 500
        otlp_receiver.wait_for_metrics("http.server.request.duration", timeout=15)
    # contrib 0.61b0 puts the port in server.address too (its value, not cryostorm's)
    address = "127.0.0.1" if NATIVE else base.removeprefix("http://")
    spans = otlp_receiver.spans()
    assert sorted(s.name for s in spans) == ["GET /boom", "GET /items/{item_id}"]  # /health: excluded
    item = next(s for s in spans if s.name == "GET /items/{item_id}")
    # Without native telemetry: the documented fallback, the contrib middleware (its own scope; the
    # stable conventions too, as cryostorm sets OTEL_SEMCONV_STABILITY_OPT_IN=http by default).
    scope = "fastapi" if NATIVE else CONTRIB_SCOPE
    assert (item.kind, item.trace_id, item.parent_span_id, item.scope) == ("SERVER", TRACE_ID, PARENT_ID, scope)
    assert {k: item.attributes.get(k) for k in ("http.request.method", "url.path", "url.scheme", "http.route",
                                                 "http.response.status_code", "server.address")} == {
        "http.request.method": "GET", "url.path": "/items/42", "url.scheme": "http",
        "http.route": "/items/{item_id}", "http.response.status_code": 200, "server.address": address}
    failed = next(s for s in spans if s.name == "GET /boom")
    assert failed.status_code == "ERROR"
    [duration] = [m for m in otlp_receiver.metrics() if m.name == "http.server.request.duration"][-1:]
    routes = {p["attributes"].get("http.route") for p in duration.points}
    assert {"/items/{item_id}", "/boom"} <= routes
    exception_logs = [log for log in otlp_receiver.logs() if log.event_name == "http.server.request.exception"]
    if NATIVE:  # native telemetry's own: error.type on the span and a log record per unhandled exception
        assert (failed.attributes["error.type"], bool(exception_logs)) == ("RuntimeError", True)
    else:
        assert not exception_logs


def test_native_operations_adds_fastapis_operation_spans(otlp_receiver: Receiver, tmp_path: Path) -> None:
    with serving(otlp_receiver, tmp_path, CRYOSTORM_FASTAPI_TELEMETRY="native_operations") as base:
        get_item(base)
    spans = otlp_receiver.spans()
    [server] = server_spans(otlp_receiver)
    assert server.parent_span_id == PARENT_ID
    internal = [s for s in spans if s.kind == "INTERNAL"]
    if not NATIVE:  # no operation spans to add: the contrib middleware's one span, whatever the setting
        assert (server.scope, internal) == (CONTRIB_SCOPE, []), [s.name for s in spans]
        return
    assert server.scope == "fastapi"
    assert internal and all(s.trace_id == TRACE_ID for s in internal), [s.name for s in spans]


def test_the_apps_own_telemetry_settings_win(otlp_receiver: Receiver, tmp_path: Path) -> None:
    own = json.dumps({"operation_spans": True})
    with serving(otlp_receiver, tmp_path, OWN_TELEMETRY=own) as base:
        get_item(base)
    [server] = server_spans(otlp_receiver)
    internal = [s for s in otlp_receiver.spans() if s.kind == "INTERNAL"]
    if not NATIVE:  # such a FastAPI takes `telemetry=` as an unused extra; the contrib middleware traces
        assert (server.scope, internal) == (CONTRIB_SCOPE, [])
        return
    assert server.scope == "fastapi"
    assert internal


def test_contrib_middleware_on_request(otlp_receiver: Receiver, tmp_path: Path) -> None:
    with serving(otlp_receiver, tmp_path, CRYOSTORM_FASTAPI_TELEMETRY="contrib") as base:
        get_item(base)
    spans = otlp_receiver.spans()
    assert [s.name for s in spans] == ["GET /items/{item_id}"]  # no ASGI send/receive spans either
    [span] = spans
    assert span.scope == "opentelemetry.instrumentation.fastapi"
    assert (span.parent_span_id, span.attributes["http.route"]) == (PARENT_ID, "/items/{item_id}")


def test_excluded_urls_of_the_contrib_variable_apply_to_native(otlp_receiver: Receiver, tmp_path: Path) -> None:
    with serving(otlp_receiver, tmp_path, OTEL_PYTHON_FASTAPI_EXCLUDED_URLS="items/4.*,health") as base:
        get_item(base)
        assert httpx.get(f"{base}/items/7", timeout=10).status_code == 200
    spans = server_spans(otlp_receiver)
    assert [(s.scope, s.attributes["url.path"]) for s in spans] == [("fastapi" if NATIVE else CONTRIB_SCOPE,
                                                                     "/items/7")]


def test_default_excluded_paths_skip_only_those_routes_never_outgoing_calls(otlp_receiver: Receiver,
                                                                            tmp_path: Path) -> None:
    # excluded_paths (/health, /metrics, /favicon.ico) are paths served: /health is not traced, /healthcare
    # is; an outgoing call to a URL with /metrics in it is traced and carries the trace on. They were written
    # to OTEL_PYTHON_EXCLUDED_URLS, which the client instrumentations read as regexes searched in URLs.
    with serving(otlp_receiver, tmp_path) as base:
        for path in ("/health", "/health/", "/healthcare"):
            httpx.get(f"{base}{path}", timeout=10)
        carried = httpx.get(f"{base}/call-daily", timeout=10).json()
    assert carried["traceparent"] and carried["traceparent"].startswith("00-"), carried
    paths = sorted(s.attributes["url.path"] for s in server_spans(otlp_receiver))
    assert paths == ["/api/v2/metrics/daily", "/call-daily", "/healthcare"], paths
    assert [s.kind for s in otlp_receiver.spans() if s.kind == "CLIENT"] == ["CLIENT"]


def test_traces_off_still_pass_the_callers_context_on(otlp_receiver: Receiver, tmp_path: Path) -> None:
    """FastAPI's native telemetry extracts the caller's context only when it traces: with traces off, a service in
    the middle cut its callers' traces (its outgoing calls carried no traceparent and no baggage)."""
    headers = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01", "baggage": "tenant=t1"}
    with serving(otlp_receiver, tmp_path, CRYOSTORM_TRACING__ENABLED="false") as base:
        carried = httpx.get(f"{base}/outgoing", headers=headers, timeout=10).json()
    assert carried["traceparent"].startswith(f"00-{TRACE_ID}-"), carried
    assert carried["baggage"] == "tenant=t1", carried
    assert otlp_receiver.spans() == []


def test_unknown_mode_is_refused_before_anything_starts() -> None:
    result = run_launcher(["--", PYTHON, "-c", "print('started')"], env={"CRYOSTORM_FASTAPI_TELEMETRY": "fast"})
    assert result.returncode == 2
    assert "started" not in result.stdout
    assert "CRYOSTORM_FASTAPI_TELEMETRY" in result.stderr and "native_operations" in result.stderr
    assert "Traceback" not in result.stderr
