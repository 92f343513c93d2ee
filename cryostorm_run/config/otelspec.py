"""What the OpenTelemetry configuration schema says that `otelmap` needs as tables: the value of each omitted
batch setting, the durations it allows as 0 that cryostorm cannot honour, the limits' variables, and a
resource attribute's value by its `type`.

`tests/test_otel_config_file.py` checks the defaults against the vendored schema's own words.
"""

from __future__ import annotations

from typing import Any

# The spec's value for each one omitted (the schema's "If omitted or null, N is used"): log records go sooner.
BATCH_DEFAULTS = {signal: {"schedule_delay": delay, "export_timeout": 30_000, "max_queue_size": 2048,
                           "max_export_batch_size": 512} for signal, delay in (("tracing", 5000), ("logging", 1000))}
# Durations the schema allows to be 0, which cryostorm cannot honour: what 0 means, and what to write instead.
_NO_LIMIT = ("0 (no limit): cryostorm bounds every export, so that a collector that never answers cannot hold "
             "the queue or the exit", "give a limit in milliseconds, e.g. 10000")
ZERO = {"timeout": _NO_LIMIT, "export_timeout": _NO_LIMIT,
        "schedule_delay": ("0 (no wait between exports): the export threads would never rest",
                           "give a delay in milliseconds, e.g. 200 (a full batch is sent at once anyway)"),
        "interval": ("0 (no pause between metric exports): the reader would never rest",
                     "give an interval in milliseconds, e.g. 1000")}

# Limits: the SDK's providers in the program read them from these variables, which the launcher writes.
LIMITS = {
    "attribute_limits": {"attribute_value_length_limit": "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
                         "attribute_count_limit": "OTEL_ATTRIBUTE_COUNT_LIMIT"},
    "tracer_provider": {"attribute_value_length_limit": "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
                        "attribute_count_limit": "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
                        "event_count_limit": "OTEL_SPAN_EVENT_COUNT_LIMIT",
                        "link_count_limit": "OTEL_SPAN_LINK_COUNT_LIMIT",
                        "event_attribute_count_limit": "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT",
                        "link_attribute_count_limit": "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT"},
    "logger_provider": {"attribute_value_length_limit": "OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT",
                        "attribute_count_limit": "OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT"},
}


def typed_attribute(value: Any, kind: str) -> Any:
    """A resource attribute's value as its `type` says ("If omitted, string is used"); None when the value is
    not of that type ("The type of value must match .type"). Arrays are refused before. A `string` written as
    another YAML scalar (`7`, `true`) is taken as its text, as OTEL_RESOURCE_ATTRIBUTES would hold it."""
    if kind == "string":
        return str(value).lower() if isinstance(value, bool) else str(value)
    if kind == "bool":
        return value if isinstance(value, bool) else None
    if kind == "int":
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    if kind == "double":
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    return None
