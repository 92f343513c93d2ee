"""Print "ready", then wait for SIGTERM. argv[1]: `handler` installs its own handler; `none` does not.

Without a handler, a span is started and ended first so it sits in the batch processor's queue.
"""

import signal
import sys
import time

if sys.argv[1] == "handler":

    def on_term(signum, frame):
        print("handled", flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_term)
else:
    from opentelemetry import trace

    with trace.get_tracer("sigterm-test").start_as_current_span("buffered-before-sigterm"):
        pass
print("ready", flush=True)
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    time.sleep(0.05)
print("not killed", flush=True)
sys.exit(3)
