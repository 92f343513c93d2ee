"""Emits N spans, a log record and a metric, prints `last <time.time()>` as its last statement."""

import logging
import sys
import time

from opentelemetry import metrics, trace

count = int(sys.argv[1]) if len(sys.argv) > 1 else 50
tracer = trace.get_tracer("rel")
metrics.get_meter("rel").create_counter("rel.count").add(count)
for i in range(count):
    with tracer.start_as_current_span(f"rel-{i}"):
        pass
logging.getLogger("rel").warning("done emitting")
print(f"last {time.time()}", flush=True)
