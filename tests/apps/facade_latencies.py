"""For tests/test_quantiles.py: the facade's seconds histogram records the latencies given on the command
line, then the process waits to be scraped (its Prometheus exporter on 127.0.0.1:PORT)."""

import sys
import time

from cryostorm_run import Telemetry, TelemetrySettings

port, *latencies_ms = map(int, sys.argv[1:])
telemetry = Telemetry.from_settings(TelemetrySettings(
    service={"name": "facade-latencies"}, exporter_type="none",
    metrics={"exporter_type": "prometheus", "prometheus_host": "127.0.0.1", "prometheus_port": port}))
histogram = telemetry.create_histogram("job.duration", unit="s")  # no boundaries: the unit's
for ms in latencies_ms:
    histogram.record(ms / 1000)
print("recorded", flush=True)
time.sleep(120)
