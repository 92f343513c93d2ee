"""Seed 5.2: spans with the `traced` decorator and the `start_as_current_span` context manager.

    python examples/facade_2_traces.py

Exports (console, on stderr): my_custom_function_span, __main__.async_task, handle_web_request
with its children database_query and external_api_call, and failing_operation (status ERROR).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from opentelemetry import trace

from cryostorm_run import Telemetry, TelemetrySettings

telemetry = Telemetry.from_settings(TelemetrySettings(service={"name": "facade-traces-example"}))


# --- Method 1: the traced decorator ---
@telemetry.traced(span_name="my_custom_function_span")
def process_data(data: dict[str, Any]) -> dict[str, Any]:
    print(f"Processing data: {data}")
    time.sleep(0.01)
    return {"processed": True, "input_keys": list(data)}


@telemetry.traced  # default span name: module.qualname, here __main__.async_task
async def async_task(item_id: int) -> dict[str, Any]:
    current_span = trace.get_current_span()
    current_span.set_attribute("item.id", item_id)
    current_span.add_event("Starting data fetch")
    await asyncio.sleep(0.01)  # e.g. a database call
    current_span.add_event("Data fetch complete")
    return {"status": "ok", "item_id": item_id}


# --- Method 2: the start_as_current_span context manager ---
def handle_request(request_id: str) -> dict[str, str]:
    with telemetry.start_as_current_span(
        "handle_web_request",
        kind=trace.SpanKind.SERVER,
        attributes={"http.request.id": request_id, "http.method": "GET", "feature.flag.X": True},
    ) as parent_span:
        parent_span.add_event("Request validation started")
        time.sleep(0.005)
        parent_span.add_event("Request validation complete")

        # Nested blocks make child spans.
        with telemetry.start_as_current_span("database_query") as db_span:
            db_span.set_attribute("db.system", "postgresql")
            db_span.set_attribute("db.statement", "SELECT * FROM users WHERE id=?")
            time.sleep(0.01)

        with telemetry.start_as_current_span("external_api_call", kind=trace.SpanKind.CLIENT) as api_span:
            api_span.set_attribute("http.url", "https://api.example.com/data")
            time.sleep(0.01)

        parent_span.set_status(trace.Status(trace.StatusCode.OK))
        return {"status": "processed_traced"}


def main() -> None:
    if telemetry.initialized:  # always true here; a library might check it
        print(process_data({"user": "alice", "value": 123}))
        print(asyncio.run(async_task(42)))
    print(handle_request("req-123"))
    try:
        # An exception leaving the block is recorded on the span, which gets ERROR status.
        with telemetry.start_as_current_span("failing_operation") as span:
            span.set_attribute("attempt.number", 1)
            raise ValueError("Something went wrong intentionally!")
    except ValueError as exc:
        print(f"Caught expected error: {exc}")
    telemetry.shutdown()


if __name__ == "__main__":
    main()
