"""FastAPI app for tests/test_quantiles.py: each request takes the latency it asks for."""

import asyncio

from fastapi import FastAPI

app = FastAPI()


@app.get("/sleep/{ms}")
async def sleep(ms: int) -> dict:
    await asyncio.sleep(ms / 1000)
    return {"slept_ms": ms}


@app.get("/health")
async def health() -> dict:  # excluded from telemetry by the default excluded_paths
    return {}
