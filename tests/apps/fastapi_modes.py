"""FastAPI app for tests/test_fastapi_modes.py: a route with a path parameter, one that fails, a health check.

`OWN_TELEMETRY` set (JSON): the app passes it as `FastAPI(telemetry=...)`, as an app configuring
FastAPI's native telemetry itself would.
"""

import json
import os

from fastapi import FastAPI, Request

own = os.environ.get("OWN_TELEMETRY")
app = FastAPI(telemetry=json.loads(own)) if own else FastAPI()


@app.get("/items/{item_id}")
async def read_item(item_id: int) -> dict:
    return {"item_id": item_id}


@app.get("/boom")
async def boom() -> dict:
    raise RuntimeError("boom")


@app.get("/health")
async def health() -> dict:
    return {"status": "ok"}


@app.get("/healthcare")
async def healthcare() -> dict:  # not /health: traced
    return {"status": "ok"}


@app.get("/api/v2/metrics/daily")
async def daily(request: Request) -> dict:
    return {"traceparent": request.headers.get("traceparent")}


@app.get("/call-daily")
def call_daily(request: Request) -> dict:
    """An outgoing call (instrumented requests) to a URL with /metrics in it: what arrived there."""
    import requests

    return requests.get(f"{request.base_url}api/v2/metrics/daily", timeout=10).json()


@app.get("/outgoing")
def outgoing() -> dict:
    """What this service's outgoing calls would carry: the instrumentations inject the current context so."""
    from opentelemetry import propagate

    carrier: dict = {}
    propagate.inject(carrier)
    return carrier
