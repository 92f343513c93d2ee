"""Flask (WSGI) app for tests/test_workers.py: every response names the worker process that served it.

There is no opentelemetry-instrumentation-flask release for 0.66b2, so the app wraps itself in
the generic WSGI middleware (which uses the global providers the cryostorm hook installed).
Note: the middleware has no excluded-URLs option, so /health requests produce spans too.
"""

import os
import time

from flask import Flask
from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

app = Flask(__name__)


@app.get("/work")
def work() -> dict:
    time.sleep(0.02)  # a sync worker serves one request at a time: the other takes the next
    return {"pid": os.getpid()}


@app.get("/health")
def health() -> dict:
    return {"pid": os.getpid()}


app.wsgi_app = OpenTelemetryMiddleware(app.wsgi_app)  # type: ignore[method-assign]
