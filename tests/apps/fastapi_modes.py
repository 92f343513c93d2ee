"""FastAPI app for tests/test_fastapi_modes.py: a route with a path parameter, one that fails, a health check.

`OWN_TELEMETRY` set (JSON): the app passes it as `FastAPI(telemetry=...)`, as an app configuring
FastAPI's native telemetry itself would.
"""

import json
import os

from fastapi import FastAPI

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


@app.get("/outgoing")
def outgoing() -> dict:
    """What this service's outgoing calls would carry: the instrumentations inject the current context so."""
    from opentelemetry import propagate

    carrier: dict = {}
    propagate.inject(carrier)
    return carrier
