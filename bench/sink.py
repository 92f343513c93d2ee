"""The benchmark's local OTLP sink: tests/otlp_receiver.py's Receiver (counting only) plus a control channel.

Run with a Python that has grpcio and opentelemetry-proto (the project venv)::

    .venv/bin/python bench/sink.py [--grpc-port N] [--http-port M] [--delay SECONDS]

It prints ``READY grpc=<port> http=<port>`` and then answers one line per command read on stdin:

* ``count``  -> ``{"spans": n, "metrics_points": n, "logs": n, "requests": n, "rejected": n}``
* ``reset``  -> ``{"ok": true}`` (all counters and recorded requests back to zero)
* ``quit``   -> the final counts, then the sink stops (EOF on stdin and SIGTERM/SIGINT stop it too)

Every answer is a single JSON line on stdout. Everything listens on 127.0.0.1 only.

``--delay SECONDS`` makes it a *slow collector*: every export request (gRPC and HTTP, all signals) is
answered OK only after that many seconds (the receiver's ``Fault.SLOW``); a client that gives up first
is recorded as not accepted. ``reset`` keeps the delay.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from otlp_receiver import Fault, Receiver  # noqa: E402


def snapshot(rcv: Receiver) -> dict[str, int]:
    """Counters of the receiver, plus how many export requests arrived and how many were not accepted."""
    counts = rcv.counts()
    requests = rcv.requests()
    counts["requests"] = len(requests)
    counts["rejected"] = sum(1 for r in requests if not r.accepted)
    return counts


def handle(rcv: Receiver, line: str) -> tuple[dict[str, Any], bool]:
    """Answer one control command; the boolean says whether to stop."""
    command = line.strip().lower()
    if command == "count":
        return snapshot(rcv), False
    if command == "reset":
        rcv.clear()
        return {"ok": True}, False
    if command in ("quit", "exit"):
        return snapshot(rcv), True
    return {"error": f"unknown command {command!r} (count, reset, quit)"}, False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grpc-port", type=int, default=0)
    parser.add_argument("--http-port", type=int, default=0)
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

    def read_commands(rcv: Receiver) -> None:
        for line in sys.stdin:
            if not line.strip():
                continue
            answer, done = handle(rcv, line)
            sys.stdout.write(json.dumps(answer) + "\n")
            sys.stdout.flush()
            if done:
                break
        stop.set()  # quit, or EOF: the harness went away

    with Receiver(grpc_port=args.grpc_port, http_port=args.http_port, keep_data=False) as rcv:
        if args.delay > 0:
            rcv.set_fault(Fault.SLOW, delay=args.delay)
        print(f"READY grpc={rcv.grpc_port} http={rcv.http_port}", flush=True)
        threading.Thread(target=read_commands, args=(rcv,), name="sink-control", daemon=True).start()
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
