"""The burst benchmark: create N spans (default 100,000) as fast as possible, report how long it took.

Run under a launcher (``opentelemetry-instrument python bench/apps/burst.py`` or
``cryostorm-run -- python bench/apps/burst.py``); the launcher's SDK exports the spans and flushes
them at exit. Prints one JSON line on stdout: ``{"spans": N, "seconds": s, "rate": spans_per_second,
"provider": "<tracer provider class>"}``. Spans are created with the global tracer provider only, so the
script itself costs nothing a launcher does not configure.
"""

from __future__ import annotations

import json
import os
import sys
import time

from opentelemetry import trace


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("BENCH_BURST_SPANS", "100000"))
    tracer = trace.get_tracer("bench.burst")
    start = time.perf_counter()
    for _ in range(count):
        with tracer.start_as_current_span("burst-span"):
            pass
    seconds = time.perf_counter() - start
    provider = type(trace.get_tracer_provider()).__name__
    print(json.dumps({"spans": count, "seconds": seconds, "rate": count / seconds, "provider": provider}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
