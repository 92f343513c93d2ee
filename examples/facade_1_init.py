"""Seed 5.1: initialise the `Telemetry` facade once, run the application, shut down at exit.

    python examples/facade_1_init.py

Settings come from ``CRYOSTORM_*`` (or ``OTEL_*``) variables; the default exporter is the console,
which writes JSON to stderr. Under ``cryostorm-run`` the same script reuses the launcher's setup.
"""

from __future__ import annotations

import atexit
import time

from cryostorm_run import ConfigError, Telemetry, TelemetrySettings

# --- 1. Load configuration ---
# pydantic-settings reads CRYOSTORM_* variables; init arguments outrank them.
try:
    settings = TelemetrySettings(service={"name": "facade-init-example", "version": "1.0"})
except (ConfigError, ValueError) as exc:
    raise SystemExit(f"invalid telemetry settings: {exc}") from exc
print("Telemetry settings loaded:")
print(settings.model_dump_json(indent=2))

# --- 2. Initialise telemetry (once per process) ---
telemetry = Telemetry.from_settings(settings)
print(f"Telemetry initialized: {telemetry.initialized}")


# --- 3. Shut down at exit, so buffered telemetry is exported ---
def shutdown_app() -> None:
    print("Shutting down application...")
    flushed = telemetry.shutdown()
    print(f"Telemetry shut down complete (everything flushed: {flushed}).")


atexit.register(shutdown_app)

# --- Application lifecycle ---
print("Application running...")
with telemetry.start_as_current_span("application_running"):
    time.sleep(0.05)
print("Application exiting...")
