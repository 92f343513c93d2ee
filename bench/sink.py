"""The benchmark's local OTLP sink: tests/otlp_receiver.py's Receiver (counting only) plus a control channel.

Run with a Python that has grpcio and opentelemetry-proto (the project venv)::

    .venv/bin/python bench/sink.py [--grpc-port N] [--http-port M] [--dd-port P] [--delay SECONDS]

It prints ``READY grpc=<port> http=<port>`` (with ``--dd-port``: ``READY grpc=<port> http=<port> dd=<port>``)
and then answers one line per command read on stdin:

* ``count``  -> ``{"spans": n, "metrics_points": n, "logs": n, "requests": n, "rejected": n,
  "dd_traces": n, "dd_payloads": n, "dd_requests": n}``
* ``reset``  -> ``{"ok": true}`` (all counters and recorded requests back to zero)
* ``down`` / ``up`` -> ``{"ok": true}``: stop listening (connection refused) / listen again on the same ports
* ``quit``   -> the final counts, then the sink stops (EOF on stdin and SIGTERM/SIGINT stop it too)

Every answer is a single JSON line on stdout. Everything listens on 127.0.0.1 only.

``--delay SECONDS`` makes it a *slow collector*: every export request (gRPC and HTTP, all signals) is
answered OK only after that many seconds (the receiver's ``Fault.SLOW``); a client that gives up first
is recorded as not accepted. ``reset`` keeps the delay.

``--dd-port P`` (0: a free port) adds a fake Datadog trace agent for ddtrace: every PUT/POST is answered
200 ``{"rate_by_service":{}}``, every GET 404 (so ddtrace keeps its defaults instead of the agent's /info and
remote configuration). It counts traces (each request's ``X-Datadog-Trace-Count`` header), payloads to
``/v0.4/traces`` and ``/v0.5/traces``, and all requests it got; it decodes nothing. Without it the
``dd_*`` counters stay 0. ``--delay`` does not apply to it.
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import re
import signal
import sys
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from otlp_receiver import Fault, Receiver  # noqa: E402

TRACES_PATH = re.compile(r"/v0\.[45]/traces")
AGENT_ANSWER = b'{"rate_by_service":{}}'


class DDAgent:
    """A fake Datadog trace agent on 127.0.0.1 that accepts everything and counts the traces it was sent."""

    def __init__(self, port: int = 0) -> None:
        self._lock = threading.Lock()
        self._counts = {"dd_traces": 0, "dd_payloads": 0, "dd_requests": 0}
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="dd-agent", daemon=True)

    def _handler_class(self) -> type[http.server.BaseHTTPRequestHandler]:
        agent = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the real agent does

            def _accept(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                traces = int(self.headers.get("X-Datadog-Trace-Count") or 0)
                agent._record(traces, TRACES_PATH.fullmatch(self.path.split("?", 1)[0]) is not None)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(AGENT_ANSWER)))
                self.end_headers()
                self.wfile.write(AGENT_ANSWER)

            do_PUT = do_POST = _accept

            def do_GET(self) -> None:
                agent._record(0, False)
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # one line per request is only noise
                pass

        return Handler

    def _record(self, traces: int, is_payload: bool) -> None:
        with self._lock:
            self._counts["dd_traces"] += traces
            self._counts["dd_payloads"] += is_payload
            self._counts["dd_requests"] += 1

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def clear(self) -> None:
        with self._lock:
            self._counts = dict.fromkeys(self._counts, 0)

    def __enter__(self) -> DDAgent:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._server.shutdown()
        self._server.server_close()


def snapshot(rcv: Receiver, agent: DDAgent | None = None) -> dict[str, int]:
    """Counters of the receiver, plus how many export requests arrived and how many were not accepted,
    plus the fake agent's counters (0 without it)."""
    counts = rcv.counts()
    requests = rcv.requests()
    counts["requests"] = len(requests)
    counts["rejected"] = sum(1 for r in requests if not r.accepted)
    counts.update(agent.counts() if agent else {"dd_traces": 0, "dd_payloads": 0, "dd_requests": 0})
    return counts


def handle(rcv: Receiver, line: str, agent: DDAgent | None = None) -> tuple[dict[str, Any], bool]:
    """Answer one control command; the boolean says whether to stop."""
    command = line.strip().lower()
    if command == "count":
        return snapshot(rcv, agent), False
    if command == "reset":
        rcv.clear()
        if agent:
            agent.clear()
        return {"ok": True}, False
    if command == "down":  # stop listening (connection refused), keep the ports and the counters
        rcv.down()
        return {"ok": True}, False
    if command == "up":
        rcv.up()
        return {"ok": True}, False
    if command in ("quit", "exit"):
        return snapshot(rcv, agent), True
    return {"error": f"unknown command {command!r} (count, reset, down, up, quit)"}, False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grpc-port", type=int, default=0)
    parser.add_argument("--http-port", type=int, default=0)
    parser.add_argument("--dd-port", type=int, metavar="PORT",
                        help="also run a fake Datadog trace agent on this port (0: a free one)")
    parser.add_argument("--delay", type=float, default=0.0, metavar="SECONDS",
                        help="answer every export request only after SECONDS (a slow collector)")
    args = parser.parse_args(argv)
    if args.delay < 0:
        parser.error("--delay must be >= 0")

    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def read_commands(rcv: Receiver, agent: DDAgent | None) -> None:
        for line in sys.stdin:
            if not line.strip():
                continue
            answer, done = handle(rcv, line, agent)
            sys.stdout.write(json.dumps(answer) + "\n")
            sys.stdout.flush()
            if done:
                break
        stop.set()  # quit, or EOF: the harness went away

    with contextlib.ExitStack() as stack:
        rcv = stack.enter_context(Receiver(grpc_port=args.grpc_port, http_port=args.http_port, keep_data=False))
        agent = stack.enter_context(DDAgent(args.dd_port)) if args.dd_port is not None else None
        if args.delay > 0:
            rcv.set_fault(Fault.SLOW, delay=args.delay)
        dd = f" dd={agent.port}" if agent else ""
        print(f"READY grpc={rcv.grpc_port} http={rcv.http_port}{dd}", flush=True)
        threading.Thread(target=read_commands, args=(rcv, agent), name="sink-control", daemon=True).start()
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
