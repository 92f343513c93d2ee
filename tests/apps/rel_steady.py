"""Creates spans named `steady-<i>` at a steady rate for a while, then exits."""

import sys
import time

from opentelemetry import trace

rate, seconds = float(sys.argv[1]), float(sys.argv[2])
tracer = trace.get_tracer("steady")
start = time.monotonic()
i = 0
while time.monotonic() - start < seconds:
    with tracer.start_as_current_span(f"steady-{i}"):
        pass
    i += 1
    time.sleep(max(0.0, start + i / rate - time.monotonic()))
print(f"created {i}", flush=True)
