"""`OTEL_EXPORTER_OTLP_TIMEOUT` and its per-signal variables written in milliseconds (as the specification
says) where the Python SDK reads seconds: the messages of the `timeout-looks-like-millis` warning
(config/advice.py)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from cryostorm_run.config.model import TelemetryModel
from cryostorm_run.config.sources import DELIMITER, PREFIX, Origin, Path_, origin_of

# settings section -> the variable read in seconds into its timeout_millis
VARIABLES = {"otlp": "OTEL_EXPORTER_OTLP_TIMEOUT", "tracing": "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
             "metrics": "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "logging": "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT"}


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"about {seconds / size:.1f} {unit}"
    return f"{seconds:g} seconds"


def seconds_meant_as_millis(settings: TelemetryModel, origins: Mapping[Path_, Origin]) -> Iterator[str]:
    """One message per such variable whose value, in seconds, is 1000 or more: milliseconds, most likely."""
    for section, variable in VARIABLES.items():
        path = (section, "timeout_millis")
        origin, millis = origin_of(path, origins), getattr(settings, section).timeout_millis
        if origin.name != variable or millis is None or millis < 1_000_000:
            continue  # set otherwise (CRYOSTORM_*, a file in milliseconds), unset, or a plausible number of seconds
        seconds = millis / 1000
        where = f" (in {origin.file})" if origin.file else ""
        setting = PREFIX + DELIMITER.join(part.upper() for part in path)
        yield (f"{variable}={seconds:g}{where} is read as {seconds:g} seconds ({_duration(seconds)}) by the Python "
               f"SDK; if you meant milliseconds, use {variable}={seconds / 1000:g} or {setting}={seconds:g}")
