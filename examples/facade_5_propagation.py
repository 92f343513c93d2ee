"""Seed 5.5: manual context propagation between a client and a server.

    python examples/facade_5_propagation.py

A tiny HTTP server in a thread of this process stands in for the downstream service. The client
injects the trace context into the request headers inside its CLIENT span; the server extracts
it and starts its SERVER span as a child of that CLIENT span, so both ends form one trace:

    main_request_handler
    ├── call_downstream_service (CLIENT)
    │   └── process_incoming_call (SERVER, parent taken from the traceparent header)
    └── ... process_incoming_call (simulated headers: same trace, made-up parent)
    process_incoming_call (no trace headers: a new trace)
"""

from __future__ import annotations

import http.server
import json
import random
import threading
import time
import urllib.request
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace

from cryostorm_run import Telemetry, TelemetrySettings

telemetry = Telemetry.from_settings(TelemetrySettings(service={"name": "facade-propagation-example"}))


def make_downstream_call(url: str, data: dict[str, Any]) -> Any:
    with telemetry.start_as_current_span(
        "call_downstream_service",
        kind=trace.SpanKind.CLIENT,
        attributes={"http.url": url, "http.method": "POST"},
    ) as client_span:
        # Inject inside the CLIENT span, so the downstream span becomes its child.
        headers = {"Content-Type": "application/json"}
        telemetry.inject_context(headers)
        print(f"  Injecting headers: {headers}")
        request = urllib.request.Request(url, data=json.dumps(data).encode(), headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            client_span.set_attribute("http.status_code", response.status)
            return json.loads(response.read())


def handle_incoming_request(request_headers: Mapping[str, str]) -> None:
    # An empty context (no trace headers) makes the span the root of a new trace.
    extracted_context = telemetry.extract_context(request_headers)
    with telemetry.start_as_current_span(
        "process_incoming_call",
        context=extracted_context,
        kind=trace.SpanKind.SERVER,
        attributes={"service.entrypoint": "/incoming"},
    ) as server_span:
        print(f"  Started server span with trace id {server_span.get_span_context().trace_id:032x}")
        time.sleep(0.01)


class Downstream(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        handle_incoming_request(dict(self.headers))  # header names in any case
        body = json.dumps({"status": "ok"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep stderr for the exported telemetry


def main() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Downstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/incoming"
    try:
        with telemetry.start_as_current_span("main_request_handler") as main_span:
            print(f"Downstream answered: {make_downstream_call(url, {'key': 'value'})}")

            # Simulate receiving a request with trace headers from some other caller...
            trace_id = main_span.get_span_context().trace_id
            with_trace = {"traceparent": f"00-{trace_id:032x}-{random.getrandbits(64) or 1:016x}-01"}
            handle_incoming_request(with_trace)
            # ... and one without (it starts a new trace).
            handle_incoming_request({"Content-Type": "application/json"})
    finally:
        server.shutdown()
        server.server_close()
        telemetry.shutdown()


if __name__ == "__main__":
    main()
