"""The memory-under-faults benchmark's program: create spans at a steady rate for a while.

    python bench/apps/steady.py [RATE] [SECONDS]        # default 1000 spans/s for 60 s

Run under a launcher (``cryostorm-run -- python bench/apps/steady.py``) pointed at a collector that is
down: the spans pile up in the launcher's export queue, and the harness samples this process's RSS
meanwhile. Paced with sleeps against an absolute schedule (a group of spans every 10 ms), so a slow
span creation or a late wake-up is caught up instead of drifting. Prints one JSON line on stdout at
the end: ``{"spans": n, "seconds": s, "rate": achieved spans/s, "max_lag_ms": worst lateness against
the schedule, "end_unix": wall-clock time of the print, "provider": "<tracer provider class>"}``.
Uses the global tracer provider only.
"""

from __future__ import annotations

import json
import sys
import time

from opentelemetry import trace

TICK_S = 0.01


def main() -> int:
    rate = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 60.0
    if rate <= 0 or seconds <= 0:
        raise SystemExit("usage: steady.py [RATE > 0] [SECONDS > 0]")
    tracer = trace.get_tracer("bench.steady")
    per_tick = max(1, round(rate * TICK_S))
    interval = per_tick / rate
    total = int(rate * seconds)
    created, tick, max_lag = 0, 0, 0.0
    start = time.monotonic()
    while created < total:
        due = start + tick * interval
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        else:
            max_lag = max(max_lag, now - due)
        for _ in range(min(per_tick, total - created)):
            with tracer.start_as_current_span("steady-span") as span:
                span.set_attribute("bench.seq", created)
            created += 1
        tick += 1
    elapsed = time.monotonic() - start
    provider = type(trace.get_tracer_provider()).__name__
    print(json.dumps({"spans": created, "seconds": elapsed, "rate": created / elapsed,
                      "max_lag_ms": max_lag * 1000, "end_unix": time.time(), "provider": provider}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
