"""The seed's demo LLM service: a FastAPI app whose "model" is simulated.

Run it instrumented, with no telemetry setup in the request path beyond the manual spans and
metrics the seed shows:

    cryostorm-run -- uvicorn examples.llm_app:app --port 8000
    python examples/llm_load.py --url http://127.0.0.1:8000 --requests 50

Under cryostorm-run the SERVER span of every request comes from FastAPI's auto-instrumentation,
the outgoing httpx call gets its CLIENT span from httpx's, and the `Telemetry` facade reuses the
providers the launcher's hook installed. Span tree of `POST /chat`:

    POST /chat (SERVER, auto)
    └── chat (INTERNAL, manual)
        ├── llm.simulate_llm_api_call (CLIENT, manual)
        └── POST (CLIENT, httpx auto) → POST /system-diagnostics (SERVER, auto, same trace)
            └── system.gather_metrics (INTERNAL, manual)

`LLM_APP_LATENCY_SCALE=0` removes the simulated latency (tests); `"fail": true` in a request
simulates an LLM timeout.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI, HTTPException, Request
from opentelemetry.trace import SpanKind, Status, StatusCode
from pydantic import BaseModel, Field

from cryostorm_run import Telemetry, TelemetrySettings

telemetry = Telemetry.from_settings(TelemetrySettings())
LATENCY_SCALE = float(os.environ.get("LLM_APP_LATENCY_SCALE", "1"))
PRICE_PER_1K_TOKENS = {"sim-small": 0.0005, "sim-large": 0.003}

# The seed's metric set (names follow the dashboard in stack/grafana/dashboards/llm-app.json).
llm_requests = telemetry.create_counter("llm_requests", unit="1", description="LLM requests by model and outcome")
llm_request_duration = telemetry.create_histogram("llm_request_duration", unit="s", description="LLM call latency")
llm_tokens_input = telemetry.create_counter("llm_tokens_input", unit="{token}", description="Prompt tokens")
llm_tokens_output = telemetry.create_counter("llm_tokens_output", unit="{token}", description="Completion tokens")
llm_cost = telemetry.create_counter("llm_cost", unit="1", description="Cost in USD")
llm_temperature = telemetry.create_histogram("llm_temperature", unit="1", description="Requested temperature")
llm_top_p = telemetry.create_histogram("llm_top_p", unit="1", description="Requested top_p")
llm_active_sessions = telemetry.create_up_down_counter(
    "llm_active_sessions", unit="{session}", description="Chat sessions in progress"
)
llm_errors = telemetry.create_counter("llm_errors", unit="1", description="Errors by type")


class ChatRequest(BaseModel):
    prompt: str = Field(min_length=1, max_length=10_000)
    model: str = "sim-small"
    temperature: float = Field(0.7, ge=0, le=2)
    top_p: float = Field(1.0, ge=0, le=1)
    session_id: str | None = None
    fail: bool = False


class LLMTimeoutError(Exception):
    pass


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    telemetry.log(logging.INFO, "Starting LLM API simulation service", extra={"latency.scale": LATENCY_SCALE})
    yield
    telemetry.log(logging.INFO, "Stopping LLM API simulation service")


app = FastAPI(title="cryostorm LLM demo", lifespan=lifespan)


async def simulate_llm_api_call(req: ChatRequest, session_id: str) -> dict[str, Any]:
    attributes = {"llm.model": req.model, "llm.temperature": req.temperature, "llm.top_p": req.top_p}
    with telemetry.start_as_current_span("llm.simulate_llm_api_call", kind=SpanKind.CLIENT,
                                         attributes=attributes) as span:
        llm_temperature.record(req.temperature, {"model": req.model})
        llm_top_p.record(req.top_p, {"model": req.model})
        input_tokens = max(1, len(req.prompt.split()))
        llm_tokens_input.add(input_tokens, {"model": req.model})
        telemetry.log(logging.INFO, f"Processing LLM request for model {req.model}",
                      extra={"session.id": session_id, "tokens.input": input_tokens})
        started = time.perf_counter()
        try:
            await asyncio.sleep(random.uniform(0.05, 0.3) * LATENCY_SCALE)
            if req.fail:
                raise LLMTimeoutError(f"model {req.model} did not answer in time")
        except LLMTimeoutError as error:
            latency = time.perf_counter() - started
            llm_request_duration.record(latency, {"model": req.model, "success": False})
            llm_errors.add(1, {"error.type": "llm_api_timeout", "model": req.model})
            telemetry.log(logging.ERROR, f"LLM API timeout: {error!s}", extra={"session.id": session_id})
            raise
        latency = time.perf_counter() - started
        output_tokens = random.randint(20, 200)
        cost = (input_tokens + output_tokens) / 1000 * PRICE_PER_1K_TOKENS.get(req.model, 0.001)
        llm_request_duration.record(latency, {"model": req.model, "success": True})
        llm_tokens_output.add(output_tokens, {"model": req.model})
        llm_cost.add(cost, {"model": req.model})
        span.set_attribute("llm.tokens.output", output_tokens)
        span.add_event("completion received", {"tokens": output_tokens})
        return {"text": f"(simulated {req.model} answer to {input_tokens} words)", "tokens": output_tokens,
                "cost_usd": round(cost, 6)}


@app.post("/chat")
async def chat(req: ChatRequest, request: Request) -> dict[str, Any]:
    session_id = req.session_id or str(uuid.uuid4())
    llm_active_sessions.add(1, {"model": req.model})
    try:
        with telemetry.start_as_current_span("chat", attributes={"session.id": session_id}) as span:
            try:
                answer = await simulate_llm_api_call(req, session_id)
            except LLMTimeoutError as error:
                llm_requests.add(1, {"model": req.model, "success": False})
                span.set_status(Status(StatusCode.ERROR, str(error)))
                raise HTTPException(status_code=504, detail=str(error)) from None
            # A downstream call whose trace context propagates (httpx's instrumentation injects it
            # too; doing it by hand as the seed shows is harmless: same headers).
            headers: dict[str, str] = {}
            telemetry.inject_context(headers)
            async with httpx.AsyncClient(base_url=str(request.base_url), timeout=10) as client:
                diagnostics = (await client.post("/system-diagnostics", headers=headers)).json()
            llm_requests.add(1, {"model": req.model, "success": True})
            return {"session_id": session_id, **answer, "diagnostics": diagnostics}
    finally:
        llm_active_sessions.add(-1, {"model": req.model})


@app.post("/system-diagnostics")
async def system_diagnostics() -> dict[str, Any]:
    with telemetry.start_as_current_span("system.gather_metrics") as span:
        load1, _, _ = os.getloadavg()
        span.set_attribute("system.load1", load1)
        return {"pid": os.getpid(), "load1": load1}


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
