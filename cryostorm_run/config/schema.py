"""`cryostorm-run schema`: the JSON Schema of the settings, for editors and CI checks of a config file."""

from __future__ import annotations

from typing import Any

from cryostorm_run.settings import TelemetrySettings

__all__ = ["settings_schema"]


def settings_schema() -> dict[str, Any]:
    """The JSON Schema of `TelemetrySettings`, for editors and CI checks of a config file.

    Secret fields are marked ``writeOnly``. A collector may be written as a URL string, as the
    model accepts. The schema is stricter than the model in one way: it wants native TOML/JSON
    types, where the model also accepts the environment's ``a,b`` and ``k=v`` strings.
    """
    schema = TelemetrySettings.model_json_schema()
    defs = schema.get("$defs", {})
    if "CollectorEndpoint" in defs:
        url = {"type": "string", "pattern": "^https?://", "description": "URL, e.g. http://otel-collector:4317"}
        defs["CollectorEndpoint"] = {"anyOf": [defs["CollectorEndpoint"], url]}
    for model in ("OtlpConfig", "TracingConfig", "MetricsConfig", "LoggingConfig"):
        headers = defs.get(model, {}).get("properties", {}).get("headers")
        if headers is not None:
            headers["writeOnly"] = True  # the whole mapping is secret, not only each value
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
