"""FastAPI app for tests/test_workers.py: every response names the worker process that served it."""

import os
import time

from fastapi import FastAPI

app = FastAPI()


@app.get("/work")
async def work() -> dict:
    # Blocks this worker's event loop for a moment on purpose: meanwhile the other worker
    # accepts the next connections, so the load spreads over every worker.
    deadline = time.perf_counter() + 0.02
    while time.perf_counter() < deadline:
        pass
    return {"pid": os.getpid()}


@app.get("/health")
async def health() -> dict:  # excluded from tracing by cryostorm's default excluded_paths
    return {"pid": os.getpid()}
