"""Console output for people: one line per log record, one line per metric point.

The SDK's console exporters write each record as a ~30-line JSON document holding the whole resource;
that stays the output for machines (stderr not a terminal, with the `console` exporter; always, with
`console_json`). On a terminal, and always with `pretty`, a log record is one line::

    12:00:01.234 WARNING  hello: hello from a program  trace=4bf92f35
    12:00:01.240 ERROR    app.db: query failed  trace=4bf92f35  ! TimeoutError: upstream took too long

Runs inside the program: plain Python, no rich.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

__all__ = ["ByTerminal", "log_line", "metric_lines"]

_LEVELS = {"WARN": "WARNING", "FATAL": "CRITICAL"}  # back to the names `logging` prints


def _clock(nanos: int | None) -> str:
    seconds = (nanos or time.time_ns()) / 1e9
    return time.strftime("%H:%M:%S", time.localtime(seconds)) + f".{int(seconds * 1000) % 1000:03d}"


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def log_line(data: Any) -> str:
    """One log record (the SDK's ReadableLogRecord) as one line: the console exporter's formatter."""
    record = getattr(data, "log_record", data)
    level = _LEVELS.get(record.severity_text or "", record.severity_text or "-")
    scope = getattr(data, "instrumentation_scope", None)
    logger = scope.name if scope is not None and scope.name else "-"
    parts = [f"{_clock(record.timestamp)} {level:<8} {logger}: {_one_line(record.body)}"]
    if record.trace_id:
        parts.append(f"trace={record.trace_id:032x}"[:14])  # the first 8 hex digits find it in a backend
    attributes = record.attributes or {}
    if "exception.type" in attributes:
        parts.append(f"! {attributes['exception.type']}: {_one_line(attributes.get('exception.message', ''))}")
    return "  ".join(parts) + "\n"


def _point(point: Any) -> str:
    if hasattr(point, "bucket_counts"):
        return f"count={point.count} sum={point.sum:g}"
    return f"{point.value:g}" if isinstance(point.value, float) else str(point.value)


def metric_lines(metrics_data: Any) -> str:
    """Each metric point as one line: `metric name{attributes} value` (histograms: count and sum)."""
    lines = []
    for resource_metrics in metrics_data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            own = scope_metrics.scope.name == "cryostorm"  # cryostorm.exporter.*: worth a line once not 0
            for metric in scope_metrics.metrics:
                for point in metric.data.data_points:
                    if own and getattr(point, "value", None) == 0:
                        continue
                    labels = ",".join(f"{k}={_one_line(v)}" for k, v in (point.attributes or {}).items())
                    name = f"{metric.name}{{{labels}}}" if labels else metric.name
                    lines.append(f"{_clock(None)} metric   {name} {_point(point)}\n")
    return "".join(lines)


def _on_a_terminal() -> bool:
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):  # no stderr, or a closed one
        return False


class ByTerminal:
    """The `console` exporter: for people on a terminal, JSON for machines (a pipe, a file, a container log).
    Asked at each export: stderr may be redirected after start-up."""

    def __init__(self, human: Any, machine: Any, is_terminal: Callable[[], bool] = _on_a_terminal) -> None:
        self._human, self._machine, self._is_terminal = human, machine, is_terminal

    def __getattr__(self, name: str) -> Any:  # the exporter interface the SDK also reads (temporality...)
        return getattr(self._machine, name)

    def export(self, batch: Any, *args: Any, **kwargs: Any) -> Any:
        return (self._human if self._is_terminal() else self._machine).export(batch, *args, **kwargs)

    def force_flush(self, *args: Any, **kwargs: Any) -> Any:
        flushed = [getattr(e, "force_flush", lambda *a, **k: True)(*args, **kwargs) for e in (self._human,
                                                                                             self._machine)]
        return all(flushed)

    def shutdown(self, *args: Any, **kwargs: Any) -> None:
        self._human.shutdown(*args, **kwargs)
        self._machine.shutdown(*args, **kwargs)
