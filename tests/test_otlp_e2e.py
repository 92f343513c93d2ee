"""FastAPI under real uvicorn under `cryostorm-run`, exporting over real OTLP (gRPC and HTTP)."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from conftest import CRYOSTORM_RUN, PYTHON, ROOT, child_env
from otlp_receiver import Receiver

APPS = ROOT / "tests" / "apps"
DURATION_METRICS = {"http.server.request.duration", "http.server.duration"}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_serving(proc: subprocess.Popen[bytes], base: str, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"uvicorn exited early with {proc.returncode}: {log.read_text()}")
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"uvicorn did not answer on {base} within {timeout} s: {log.read_text()}")


def start_uvicorn(rcv: Receiver, protocol: str, port: int, tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path]:
    collector_port = rcv.grpc_port if protocol == "grpc" else rcv.http_port
    env = child_env(
        {
            "CRYOSTORM_EXPORTER_TYPE": "otlp",
            "CRYOSTORM_COLLECTOR": f"http://127.0.0.1:{collector_port}",
            "CRYOSTORM_OTLP__PROTOCOL": protocol,
            "CRYOSTORM_SERVICE__NAME": "e2e-api",
            "CRYOSTORM_TRACING__EXPORT_CONFIG__SCHEDULE_DELAY_MILLIS": "200",
            "CRYOSTORM_METRICS__EXPORT_INTERVAL_MILLIS": "500",
        }
    )
    log = tmp_path / "uvicorn.log"
    with log.open("wb") as out:  # a file, not a pipe: uvicorn can never block on a full pipe
        proc = subprocess.Popen(
            [
                CRYOSTORM_RUN,
                "--quiet",
                "--",
                PYTHON,
                "-m",
                "uvicorn",
                "fastapi_app:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--app-dir",
                str(APPS),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return proc, log


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_fastapi_under_uvicorn_exports_one_server_span_per_request_and_metrics(
    otlp_receiver: Receiver, protocol: str, tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc, log = start_uvicorn(otlp_receiver, protocol, port, tmp_path)
    try:
        wait_until_serving(proc, base, log)  # polls /health: an excluded path
        response = httpx.get(f"{base}/items/42", timeout=10)
        assert response.status_code == 200
        assert response.json() == {"item_id": 42, "name": "item-42"}
        assert httpx.get(f"{base}/health", timeout=10).status_code == 200

        otlp_receiver.wait_for_spans(
            lambda s: any(x.attributes.get("http.route") == "/items/{item_id}" for x in s), timeout=30
        )
        metrics = otlp_receiver.wait_for_metrics(lambda ms: any(m.name in DURATION_METRICS for m in ms), timeout=15)
        duration = next(m for m in metrics if m.name in DURATION_METRICS)
        assert duration.resource["service.name"] == "e2e-api"
        assert sum(p["count"] for p in duration.points) >= 1

        proc.send_signal(signal.SIGTERM)
        # uvicorn (>= 0.29) shuts down gracefully, then re-raises the captured SIGTERM: it dies by
        # the signal exactly as it does without cryostorm-run.
        assert proc.wait(timeout=10) == -signal.SIGTERM, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    output = log.read_text()
    assert "Application shutdown complete." in output, output
    assert "Traceback" not in output, output
    assert "cryostorm:" not in output, output  # --quiet: no line of ours (it once said "logs not bridged")
    assert "item 42 read" in output, output  # the program's own log line, where it always goes

    # Every span is flushed by now (at exit): exactly one per request, none for /health.
    spans = otlp_receiver.spans()
    names = [s.name for s in spans]
    assert not [n for n in names if "http send" in n or "http receive" in n], names
    server = [s for s in spans if s.kind == "SERVER"]
    assert len(server) == 1, names
    (span,) = server
    assert span.attributes["http.route"] == "/items/{item_id}"
    assert span.resource["service.name"] == "e2e-api"
    assert span.resource["process.pid"] == proc.pid
    assert len(spans) == 1, f"expected only the /items/42 server span, got {names}"
    # The route's log record, exported and tied to the request's span. uvicorn imports asyncio (and with
    # it concurrent.futures, which imports logging) before anything else: the bridge must be attached then.
    (record,) = [r for r in otlp_receiver.logs() if r.body == "item 42 read"]
    assert (record.trace_id, record.span_id) == (span.trace_id, span.span_id)
    assert record.severity_text == "WARN"  # as upstream's logging handler names it
    assert record.resource["service.name"] == "e2e-api"


def test_the_resource_follows_the_semantic_conventions(otlp_receiver: Receiver) -> None:
    # telemetry.sdk.* as upstream's own Resource.create() has them (the oracle); service, process and
    # host attributes the conventions define, where they cost nothing to know.
    import platform
    import sys

    from opentelemetry.sdk.resources import Resource

    env = {"CRYOSTORM_EXPORTER_TYPE": "otlp", "CRYOSTORM_COLLECTOR": otlp_receiver.grpc_endpoint,
           "CRYOSTORM_SERVICE__NAME": "conventions", "CRYOSTORM_SERVICE__VERSION": "1.2.3",
           "CRYOSTORM_SERVICE__ENVIRONMENT": "production"}
    program = "from opentelemetry import trace\nwith trace.get_tracer('r').start_as_current_span('r'): pass\n"
    done = subprocess.run([CRYOSTORM_RUN, "--quiet", "--", sys.executable, "-c", program], env=child_env(env),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    [span] = otlp_receiver.wait_for_spans("r")
    resource = span.resource
    upstream = Resource.create({}).attributes
    for key in ("telemetry.sdk.language", "telemetry.sdk.name", "telemetry.sdk.version"):
        assert resource[key] == upstream[key], key
    assert resource["telemetry.distro.name"] == "cryostorm-run"
    from opentelemetry.instrumentation.version import __version__ as instrumentation_version

    assert resource["telemetry.auto.version"] == instrumentation_version  # as opentelemetry-instrument stamps it
    assert (resource["service.name"], resource["service.version"]) == ("conventions", "1.2.3")
    assert resource["service.instance.id"] and isinstance(resource["process.pid"], int)
    assert resource["process.runtime.name"] == sys.implementation.name
    assert resource["process.runtime.version"] == platform.python_version()
    assert resource["host.name"] == socket.gethostname()
    assert resource["host.arch"] in {"amd64", "arm32", "arm64", "ia64", "ppc32", "ppc64", "s390x", "x86"}
