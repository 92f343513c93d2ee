"""A program that imports a contrib instrumentation module before its library: the library is imported by
that half-initialised module, so its instrumentation is activated once the module has finished importing
(not in the middle, where its instrumentor is not defined yet and activation failed)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PYTHON, run_launcher
from otlp_receiver import Receiver

IMPORTS_FIRST = """
import sys
import opentelemetry.instrumentation.requests
import requests
print(requests.get(f"http://127.0.0.1:{sys.argv[1]}/").text, flush=True)
"""
INSTRUMENTS_ITSELF = """
import sys
from opentelemetry.instrumentation.requests import RequestsInstrumentor
import requests
RequestsInstrumentor().instrument()
print(requests.get(f"http://127.0.0.1:{sys.argv[1]}/").text, flush=True)
"""


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(10)


@pytest.mark.parametrize("program", [IMPORTS_FIRST, INSTRUMENTS_ITSELF], ids=["imports-first", "instruments-itself"])
def test_requests_is_instrumented_when_its_instrumentation_module_is_imported_first(
        otlp_receiver: Receiver, http_port: int, tmp_path: Path, program: str) -> None:
    app = tmp_path / "app.py"
    app.write_text(program)
    env = {"CRYOSTORM_SERVICE__NAME": "first", "CRYOSTORM_EXPORTER_TYPE": "otlp",
           "CRYOSTORM_COLLECTOR": otlp_receiver.grpc_endpoint, "CRYOSTORM_TRACING__PROCESSOR_TYPE": "simple"}
    done = run_launcher(["--", PYTHON, str(app), str(http_port)], env)
    assert (done.returncode, done.stdout) == (0, "hello\n"), done.stderr
    lines = done.stderr.splitlines()
    assert all(line.startswith("cryostorm: ") for line in lines), done.stderr
    assert not [line for line in lines if "failed" in line or "circular import" in line], done.stderr
    spans = otlp_receiver.wait_for_spans(1)
    client = [s for s in spans if s.kind == "CLIENT"]
    assert len(client) == 1, spans  # once: the program's own instrument() call does not add a second span
    assert client[0].scope == "opentelemetry.instrumentation.requests"
    assert client[0].resource["service.name"] == "first"
    assert client[0].attributes.get("http.response.status_code", client[0].attributes.get("http.status_code")) == 200
