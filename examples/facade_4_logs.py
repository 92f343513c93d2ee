"""Seed 5.4: log records that carry the active trace context.

    python examples/facade_4_logs.py

`telemetry.log` (or `telemetry.logger`) writes standard `logging` records; they carry
``trace_id`` and ``span_id`` for formatters and are exported as OpenTelemetry log records.
"""

from __future__ import annotations

import logging
import time

from cryostorm_run import Telemetry, TelemetrySettings

telemetry = Telemetry.from_settings(
    TelemetrySettings(service={"name": "facade-logs-example"}, logging={"level": "DEBUG"})
)


def process_user_data(user_id: str) -> None:
    with telemetry.start_as_current_span("process_user_data", attributes={"user.id": user_id}) as span:
        telemetry.log(
            logging.INFO,
            f"Starting data processing for user {user_id}",
            extra={"custom_field": "value1", "stage": "start"},
        )
        try:
            time.sleep(0.005)
            if user_id == "bad_user":
                raise ValueError("Invalid user ID encountered")
            telemetry.log(logging.DEBUG, "Intermediate step completed.", extra={"step": 5})
            telemetry.log(logging.INFO, "User data processing finished successfully.", extra={"stage": "end"})
            span.set_attribute("processing.result", "success")
        except Exception as exc:
            telemetry.log(logging.ERROR, f"Failed to process data for user {user_id}: {exc}", extra={"stage": "error"})
            span.set_attribute("processing.result", "failure")
            raise  # the span records the exception and gets ERROR status


def main() -> None:
    # The trace ids are ordinary record attributes, usable in any formatter.
    handler = logging.StreamHandler()  # stderr
    handler.setFormatter(logging.Formatter("%(levelname)s [trace=%(trace_id)s span=%(span_id)s] %(message)s"))
    telemetry.logger.addHandler(handler)  # records still go on to the root logger, where they are exported

    process_user_data("user_123")
    process_user_data("user_456")
    try:
        process_user_data("bad_user")
    except ValueError:
        print("Caught expected processing error for bad_user.")
    telemetry.logger.removeHandler(handler)
    telemetry.shutdown()


if __name__ == "__main__":
    main()
