"""Two nested spans, no telemetry setup: the hook provides everything. Prints its PID."""

import os

from opentelemetry import trace

tracer = trace.get_tracer("hook-test")
with tracer.start_as_current_span("outer"), tracer.start_as_current_span("inner"):
    pass
print(os.getpid(), flush=True)
