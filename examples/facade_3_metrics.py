"""Seed 5.3: counters, histograms, up-down counters, and an observable gauge.

    python examples/facade_3_metrics.py

Metrics are exported periodically in the background, and once more by `telemetry.shutdown()`:
app_requests_total, app_request_latency_seconds, app_active_connections, app_queue_depth.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from opentelemetry.metrics import CallbackOptions, Observation

from cryostorm_run import Telemetry, TelemetrySettings

telemetry = Telemetry.from_settings(TelemetrySettings(service={"name": "facade-metrics-example"}))

# --- 1. Create instruments once, at start-up ---
request_counter = telemetry.create_counter(
    name="app_requests_total", description="Total number of HTTP requests received", unit="{request}"
)
request_latency_hist = telemetry.create_histogram(
    name="app_request_latency_seconds", description="Distribution of application request latency", unit="s"
)
active_connections_counter = telemetry.create_up_down_counter(
    name="app_active_connections", description="Number of currently active connections", unit="{connection}"
)
queue: list[str] = ["job-1", "job-2"]


def observe_queue(options: CallbackOptions) -> Iterable[Observation]:
    yield Observation(len(queue), {"queue": "default"})  # read each time metrics are collected


telemetry.create_observable_gauge("app_queue_depth", callbacks=[observe_queue], description="Jobs waiting")


# --- 2. Record values while the application runs ---
def simulate_web_request(endpoint: str, success: bool, duration_s: float) -> None:
    print(f"Simulating request to {endpoint} (success: {success}, duration: {duration_s:.3f}s)")
    attributes = {"http.endpoint": endpoint, "request.success": str(success)}
    request_counter.add(1, attributes=attributes)
    request_latency_hist.record(duration_s, attributes=attributes)


def simulate_connection_change(change: int) -> None:
    print(f"Simulating connection change: {change:+d} on server-1")
    active_connections_counter.add(change, attributes={"server.id": "server-1"})


def main() -> None:
    simulate_web_request("/users", True, 0.055)
    simulate_web_request("/products", True, 0.120)
    simulate_web_request("/users", False, 0.530)
    simulate_connection_change(1)
    simulate_connection_change(1)
    time.sleep(0.01)
    simulate_connection_change(-1)
    telemetry.shutdown()  # the final collection exports everything recorded above


if __name__ == "__main__":
    main()
