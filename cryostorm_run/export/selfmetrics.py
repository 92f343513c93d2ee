"""cryostorm's own counters as metrics, exported with the program's (in the spirit of the Collector's
`otelcol_exporter_sent_spans` / `otelcol_exporter_send_failed_spans`).

Registered by the first export worker once an item is queued in this process (`batch.ON_FIRST_ITEM`; not in
the program's thread: with the lazy meter provider that builds the SDK one, ~20 ms), so a process that
produces no telemetry exports no metrics of cryostorm's either (and never builds an exporter for them).

| metric | kind | meaning |
|---|---|---|
| `cryostorm.exporter.sent` | counter | items the collector accepted |
| `cryostorm.exporter.send_failed` | counter | items whose export failed for good |
| `cryostorm.exporter.dropped` | counter | items dropped before export (queue full, collector not keeping up) |
| `cryostorm.exporter.queue_size` | gauge | items queued now |

Each has the attribute `signal`: `traces` or `logs`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from cryostorm_run.export.batch import BATCH_QUEUES

SIGNAL_OF_KIND = {"spans": "traces", "log records": "logs"}
_DESCRIPTIONS = {
    "sent": "Items the collector accepted",
    "send_failed": "Items whose export failed for good",
    "dropped": "Items dropped before export: queue full, or the collector not keeping up",
    "queue_size": "Items queued for export now",
}


def _totals() -> dict[tuple[str, str], dict[str, int]]:
    """(signal, the exporter it copies to: "" for the signal's first) -> counts."""
    totals: dict[tuple[str, str], dict[str, int]] = {}
    for batch in list(BATCH_QUEUES):
        signal = SIGNAL_OF_KIND.get(batch.kind, batch.kind)
        entry = totals.setdefault((signal, batch.copy_to), dict.fromkeys(_DESCRIPTIONS, 0))
        observed = {"sent": batch.exported, "send_failed": batch.failed, "dropped": batch.dropped,
                    "queue_size": len(batch.queue)}
        for field, value in observed.items():
            entry[field] += value
    return totals


def _callback(field: str) -> Callable[[Any], Iterable[Any]]:
    def observe(options: Any) -> Iterable[Any]:
        from opentelemetry.metrics import Observation

        return [Observation(counts[field], {"signal": signal, **({"exporter": copy} if copy else {})})
                for (signal, copy), counts in _totals().items()]

    return observe


def register(meter_provider: Any) -> None:
    """Create cryostorm's instruments on `meter_provider` (once per process is enough: they read live)."""
    meter = meter_provider.get_meter("cryostorm")
    for field, description in _DESCRIPTIONS.items():
        name = f"cryostorm.exporter.{field}"
        if field == "queue_size":
            meter.create_observable_gauge(name, [_callback(field)], unit="{item}", description=description)
        else:
            meter.create_observable_counter(name, [_callback(field)], unit="{item}", description=description)
