"""Seed 5.6: always call `telemetry.shutdown()` before the application exits.

    python examples/facade_6_shutdown.py

Spans and log records are exported in batches (every 60 s here), so at the end of this short
program they are still buffered: `shutdown()` exports them, within ``shutdown_timeout_millis``.
"""

from __future__ import annotations

import logging

from cryostorm_run import Telemetry, TelemetrySettings

batched = {"processor_type": "batch", "export_config": {"schedule_delay_millis": 60_000}}
telemetry = Telemetry.from_settings(
    TelemetrySettings(
        service={"name": "facade-shutdown-example"},
        tracing=batched,
        logging=batched,
        shutdown_timeout_millis=2000,
    )
)


def main() -> None:
    with telemetry.start_as_current_span("work_before_exit"):
        telemetry.create_counter("work_items_total").add(3)
        telemetry.log(logging.INFO, "work done, shutting down")

    # At the very end of the application's life cycle:
    print("Application shutting down...")
    flushed = telemetry.shutdown()
    print(f"Telemetry shutdown complete (everything flushed: {flushed}).")


if __name__ == "__main__":
    main()
