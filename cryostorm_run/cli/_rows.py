"""check-config's rows: the settings by the names the README documents, values as a user writes them.

`collector` is one URL (as it is set and documented), with the port its transport defaults to; an unset
value is `unset`; booleans, lists and mappings are written the way the environment takes them.
"""

from __future__ import annotations

import json
from typing import Any

from cryostorm_run.config.sources import Path_

SIGNALS = ("tracing", "metrics", "logging")
UNSET = "unset"


def flatten(value: Any, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    if isinstance(value, dict) and value and not (prefix and prefix[-1] in ("additional_attributes",)):
        items: list[tuple[tuple[str, ...], Any]] = []
        for key, sub in value.items():
            items += flatten(sub, (*prefix, str(key)))
        return items
    return [(prefix, value)]


def _collector_urls(settings: Any) -> dict[Path_, str | None]:
    """`collector` and each `<signal>.collector` as the URL it is used as (credentials masked later)."""

    def url(endpoint: Any, protocol: Any) -> str:
        text = endpoint.base_url(protocol)
        if endpoint.username is not None:  # masked, but shown to be there
            scheme, _, rest = text.partition("://")
            text = f"{scheme}://****:****@{rest}"
        return str(text)

    urls: dict[Path_, str | None] = {("collector",): url(settings.collector, settings.otlp.protocol)}
    for signal in SIGNALS:
        config = getattr(settings, signal)
        urls[(signal, "collector")] = None if config.collector is None else url(
            config.collector, config.protocol or settings.otlp.protocol)
    return urls


def _source(loaded: Any, path: Path_) -> str:
    """Where a value came from; a collector set field by field names every variable that set it."""
    found = [origin.describe() for key, origin in loaded.origins.items() if key[:len(path)] == path]
    return ", ".join(dict.fromkeys(found)) if found else str(loaded.origin(path).describe())


def effective_rows(loaded: Any) -> list[dict[str, Any]]:
    """Every effective setting: documented dotted name, value (secrets masked, JSON-typed), source."""
    from cryostorm_run.common.shown import mask_url
    from cryostorm_run.config.sources import is_secret_path

    data = loaded.settings.model_dump(mode="json")
    urls = _collector_urls(loaded.settings)
    data["collector"] = urls[("collector",)]
    for signal in SIGNALS:
        data[signal]["collector"] = urls[(signal, "collector")]
    rows = []
    for path, raw in flatten(data):
        shown = "****" if is_secret_path(path) and raw not in (None, "", {}) else _masked(raw, mask_url)
        source = _source(loaded, path) if path[-1] == "collector" else loaded.origin(path).describe()
        rows.append({"setting": ".".join(path), "value": shown, "source": source})
    return rows


def _masked(value: Any, mask_url: Any) -> Any:
    """`value` with user:password@ and ?token= of every URL-like string in it masked, in lists and mappings
    too (resource attributes: `vcs.repository.url.full`)."""
    if isinstance(value, str):
        return mask_url(value)
    if isinstance(value, list):
        return [_masked(item, mask_url) for item in value]
    if isinstance(value, dict):
        return {key: _masked(item, mask_url) for key, item in value.items()}
    return value


def shown_value(value: Any) -> str:
    """A row's value as the README and the environment write it: `unset`, `true`, `a,b`, `k=v,k2=v2`."""
    if value is None:
        return UNSET
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(map(shown_value, value)) if value else "[]"
    if isinstance(value, dict):  # as OTEL_RESOURCE_ATTRIBUTES writes it: a , = or % inside percent-encoded
        return ",".join(f"{_pair_part(str(k))}={_pair_part(shown_value(v))}" for k, v in value.items()) \
            if value else "{}"
    if isinstance(value, (int, float, str)):
        return str(value) if value != "" else '""'  # set, and empty: not the same as unset
    return json.dumps(value)


def _pair_part(text: str) -> str:
    return text.replace("%", "%25").replace(",", "%2C").replace("=", "%3D")
