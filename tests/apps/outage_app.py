"""FastAPI app for tests/test_outages.py: one SERVER span per /hello request."""

import os

from fastapi import FastAPI

app = FastAPI()


@app.get("/hello")
async def hello() -> dict:
    return {"pid": os.getpid()}


@app.get("/health")
async def health() -> dict:  # excluded from tracing by cryostorm's default excluded_paths
    return {"pid": os.getpid()}
