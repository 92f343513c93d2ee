"""Reading settings from the environment, env files and flags, remembering where each value came from.

Every reader yields `Entry` objects: a path into the settings model, the raw value and its
`Origin` (the variable or flag exactly as the user wrote it), so an error can name it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cryostorm_run.config.inventory import INVENTORY, refused

PREFIX = "CRYOSTORM_"
DELIMITER = "__"
SIGNAL_OTEL = {"tracing": "TRACES", "metrics": "METRICS", "logging": "LOGS"}
_SIGNAL_PATH = {"traces": "/v1/traces", "metrics": "/v1/metrics", "logs": "/v1/logs"}

Path_ = tuple[str, ...]
# CRYOSTORM_* variables of the environment that are not settings: the launcher reads them itself.
NOT_SETTINGS = frozenset({"CRYOSTORM_PLAN_CACHE"})  # launch/plancache.py ENV_VAR


@dataclass(frozen=True)
class Origin:
    """Where a value came from: ``kind`` is flag, cryostorm_env, otel_env, env_file, config_file, otel_file
    (the OpenTelemetry configuration file: ``file`` is ``otel.yaml:LINE``) or default."""

    kind: str
    name: str
    file: str | None = None

    def describe(self) -> str:
        if self.kind == "env_file":
            return f"{self.name} in {self.file}"
        if self.kind in ("config_file", "otel_file"):  # "pyproject.toml [tool.cryostorm] tracing.sample_rate"
            return f"{self.file} {self.name}"
        if self.kind == "default":
            return "default"
        return self.name


DEFAULT = Origin("default", "default")


@dataclass(frozen=True)
class Entry:
    path: Path_
    value: Any
    origin: Origin


@dataclass(frozen=True)
class Problem:
    """One invalid input: the name as written, the value (already masked if secret), what is wrong. Made
    safe to show here, once: URL secrets masked, control characters escaped, long values cut (`common.shown`)."""

    name: str
    value: str | None
    message: str
    hint: str = ""

    def __post_init__(self) -> None:
        from cryostorm_run.common.shown import clean, printable

        object.__setattr__(self, "name", printable(self.name, 200))
        if self.value is not None:
            object.__setattr__(self, "value", printable(self.value))
        object.__setattr__(self, "message", clean(self.message, 500))
        object.__setattr__(self, "hint", clean(self.hint, 500))


class SourceError(ValueError):
    """`problems`; `entries`: what could be read all the same (still validated: every problem told at once)."""

    def __init__(self, problems: list[Problem], entries: list[Entry] | None = None) -> None:
        super().__init__("; ".join(f"{p.name}: {p.message}" for p in problems))
        self.problems = problems
        self.entries = entries or []


def is_secret_path(path: Path_) -> bool:
    """otlp.headers, <signal>.headers (each value) and the password of any collector URL."""
    return "headers" in path or "password" in path


def is_secret_name(name: str) -> bool:
    upper = name.upper()
    return (upper.endswith(("HEADERS", "PASSWORD")) or "HEADERS__" in upper or "TOKEN" in upper
            or "SECRET" in upper)


def mask(value: object) -> str:
    return "****" if value not in (None, "") else ""


# -- CRYOSTORM_* -------------------------------------------------------------------------------


def read_cryostorm(
    environ: Mapping[str, str], origin_kind: str = "cryostorm_env", file: str | None = None
) -> list[Entry]:
    entries = []
    for key, value in environ.items():
        if origin_kind == "cryostorm_env" and key.upper() in NOT_SETTINGS:
            continue
        if key.upper().startswith(PREFIX) and len(key) > len(PREFIX):
            path = tuple(part.lower() for part in key[len(PREFIX) :].split(DELIMITER))
            entries.append(Entry(path, value, Origin(origin_kind, key, file)))
    return entries


# -- OTEL_* ------------------------------------------------------------------------------------

Converter = Callable[[str], Iterable[tuple[Path_, Any]]]


def _to(path: Path_) -> Converter:
    return lambda raw: [(path, raw)]


def _seconds_to_millis(path: Path_) -> Converter:
    # The Python SDK reads OTEL_EXPORTER_OTLP_TIMEOUT in seconds (the spec says milliseconds).
    def convert(raw: str) -> list[tuple[Path_, Any]]:
        from cryostorm_run.config.model import MAX_MILLIS

        try:
            seconds = float(raw)
        except ValueError:
            raise ValueError("expected a number of seconds, e.g. 10") from None
        if not math.isfinite(seconds) or seconds > MAX_MILLIS / 1000:
            raise ValueError(f"expected a number of seconds up to {MAX_MILLIS // 1000} (one day)")
        return [(path, round(seconds * 1000))]

    return convert


def _exporter(signal: str) -> Converter:
    # One name, or several (the SDK builds one processor or reader per name): the first OTLP one is
    # `exporter_type`, the rest `also_export_to`, in the order written.
    def convert(raw: str) -> list[tuple[Path_, Any]]:
        from cryostorm_run.common.runtime import OTLP_EXPORTER_NAMES, exporter_names

        written = [n.strip().lower() for n in raw.split(",") if n.strip()]
        if not written:  # commas alone: not "none", which turns the signal off
            raise ValueError(f"no exporter named in {raw!r}: write one or more of otlp, console, ... (or none)")
        if "none" in written and len(written) > 1:
            raise ValueError(f"'none' cannot be combined with other exporters, got {raw!r}: list the exporters, "
                             "or write none alone to turn the signal off")
        otlp = [n for n in dict.fromkeys(written) if n == "otlp" or n in OTLP_EXPORTER_NAMES]
        if len(otlp) > 1:
            raise ValueError(f"one OTLP exporter per signal (it has one endpoint and one protocol), got {raw!r}: "
                             "keep one of otlp, otlp_proto_grpc, otlp_proto_http")
        names = exporter_names(raw)
        if not names:
            return [((signal, "enabled"), False)]
        out: list[tuple[Path_, Any]] = [((signal, "exporter_type"), names[0])]
        if len(names) > 1:
            out.append(((signal, "also_export_to"), names[1:]))
        if otlp and otlp[0] in OTLP_EXPORTER_NAMES:  # wins over OTEL_EXPORTER_OTLP_*PROTOCOL, as in the SDK
            out.append(((signal, "protocol"), OTLP_EXPORTER_NAMES[otlp[0]]))
        return out

    return convert


def _unless_empty(convert: Converter) -> Converter:
    # The exporters read a per-signal variable as `per_signal or general`: an empty one is unset.
    return lambda raw: convert(raw) if raw.strip() else []


def _endpoint(path: Path_, signal_path: str | None) -> Converter:
    def convert(raw: str) -> list[tuple[Path_, Any]]:
        text = raw.strip().rstrip("/")
        if signal_path and text.endswith(signal_path):
            text = text[: -len(signal_path)]
        return [(path, _exporters_port(text))]

    return convert


def _exporters_port(url: str) -> str:
    """The port the OTLP exporters use for an OTEL_* URL written without one, made explicit (cryostorm's
    own default is the OTLP port of the transport, theirs is not): https → 443 (both transports); for
    http they differ (80 over HTTP, 443 over gRPC), so it is refused rather than guessed."""
    import urllib.parse

    try:
        parsed = urllib.parse.urlsplit(url)
        if "://" not in url or not parsed.hostname or parsed.port is not None:
            return url  # anything wrong with it is reported by the model
    except ValueError:
        return url
    if parsed.scheme == "https":
        return urllib.parse.urlunsplit(parsed._replace(netloc=parsed.netloc + ":443"))
    if parsed.scheme == "http":
        raise ValueError("an http URL without a port: the OpenTelemetry exporters would send to port 80 "
                         "(http/protobuf) or 443 (grpc), not to an OTLP port; write the port, e.g. "
                         "http://collector:4318 (http/protobuf) or http://collector:4317 (grpc)")
    return url


def _sdk_disabled(raw: str) -> list[tuple[Path_, Any]]:
    value = raw.strip().lower()
    if value not in ("true", "false", ""):
        raise ValueError(f"expected true or false, got {raw!r}")
    return [(("enabled",), False)] if value == "true" else []


def _propagators(raw: str) -> list[tuple[Path_, Any]]:
    names = [n.strip().lower() for n in raw.split(",") if n.strip()]
    if names == ["none"]:
        return [(("propagation", "enabled"), False)]
    return [(("propagation", "propagator_types"), names)]


_RESOURCE_KEYS: dict[str, Path_] = {"service.name": ("service", "name"), "service.version": ("service", "version"),
                                     "deployment.environment.name": ("service", "environment"),
                                     "deployment.environment": ("service", "environment")}


def _resource_attributes(raw: str) -> list[tuple[Path_, Any]]:
    from cryostorm_run.common.runtime import parse_pairs

    out: list[tuple[Path_, Any]] = []
    extra: dict[str, str] = {}
    for key, value in parse_pairs(raw, strict=True, decode_keys=False).items():  # as the SDK reads them
        if key in _RESOURCE_KEYS:
            out.append((_RESOURCE_KEYS[key], value))
        else:
            extra[key] = value
    if extra:
        out.append((("service", "additional_attributes"), extra))
    return out


def _otel_table() -> dict[str, Converter]:
    table: dict[str, Converter] = {
        "OTEL_SDK_DISABLED": _sdk_disabled,
        "OTEL_RESOURCE_ATTRIBUTES": _resource_attributes,
        "OTEL_SERVICE_NAME": _to(("service", "name")),
        "OTEL_TRACES_SAMPLER": _to(("tracing", "sampling_strategy")),
        "OTEL_TRACES_SAMPLER_ARG": _to(("tracing", "sample_rate")),
        "OTEL_PROPAGATORS": _propagators,
        "OTEL_EXPORTER_OTLP_ENDPOINT": _endpoint(("collector",), None),
        "OTEL_EXPORTER_OTLP_PROTOCOL": _to(("otlp", "protocol")),
        "OTEL_EXPORTER_OTLP_HEADERS": _to(("otlp", "headers")),
        "OTEL_EXPORTER_OTLP_COMPRESSION": _to(("otlp", "compression")),
        "OTEL_EXPORTER_OTLP_TIMEOUT": _seconds_to_millis(("otlp", "timeout_millis")),
        "OTEL_EXPORTER_OTLP_INSECURE": _to(("otlp", "insecure")),
        "OTEL_EXPORTER_OTLP_CERTIFICATE": _to(("otlp", "certificate_file")),
        "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": _to(("otlp", "client_certificate_file")),
        "OTEL_EXPORTER_OTLP_CLIENT_KEY": _to(("otlp", "client_key_file")),
        "OTEL_BSP_SCHEDULE_DELAY": _to(("tracing", "export_config", "schedule_delay_millis")),
        "OTEL_BSP_EXPORT_TIMEOUT": _to(("tracing", "export_config", "timeout_millis")),
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": _to(("tracing", "export_config", "batch_size")),
        "OTEL_BSP_MAX_QUEUE_SIZE": _to(("tracing", "export_config", "max_queue_size")),
        "OTEL_BLRP_SCHEDULE_DELAY": _to(("logging", "export_config", "schedule_delay_millis")),
        "OTEL_BLRP_EXPORT_TIMEOUT": _to(("logging", "export_config", "timeout_millis")),
        "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE": _to(("logging", "export_config", "batch_size")),
        "OTEL_BLRP_MAX_QUEUE_SIZE": _to(("logging", "export_config", "max_queue_size")),
        "OTEL_METRIC_EXPORT_INTERVAL": _to(("metrics", "export_interval_millis")),
        "OTEL_METRIC_EXPORT_TIMEOUT": _to(("metrics", "export_timeout_millis")),
        "OTEL_EXPORTER_PROMETHEUS_HOST": _to(("metrics", "prometheus_host")),
        "OTEL_EXPORTER_PROMETHEUS_PORT": _to(("metrics", "prometheus_port")),
    }
    for signal, upper in SIGNAL_OTEL.items():
        table[f"OTEL_{upper}_EXPORTER"] = _exporter(signal)
        var = f"OTEL_EXPORTER_OTLP_{upper}_"
        per_signal: dict[str, Converter] = {"ENDPOINT": _endpoint((signal, "collector"), _SIGNAL_PATH[upper.lower()])}
        for suffix, name in (("PROTOCOL", "protocol"), ("HEADERS", "headers"), ("COMPRESSION", "compression"),
                             ("TIMEOUT", "timeout_millis"), ("INSECURE", "insecure"),
                             ("CERTIFICATE", "certificate_file"), ("CLIENT_CERTIFICATE", "client_certificate_file"),
                             ("CLIENT_KEY", "client_key_file")):
            per_signal[suffix] = _seconds_to_millis((signal, name)) if suffix == "TIMEOUT" else _to((signal, name))
        table.update({var + suffix: _unless_empty(convert) for suffix, convert in per_signal.items()})
    return table


OTEL_TABLE = _otel_table()  # the names (advice, docs); read_otel builds its own converters, see there
_EXPORTER_VARS = {f"OTEL_{upper}_EXPORTER" for upper in SIGNAL_OTEL.values()}


def read_otel(environ: Mapping[str, str], origin_kind: str = "otel_env", file: str | None = None) -> list[Entry]:
    entries: list[Entry] = []
    problems: list[Problem] = []
    # OTEL_SERVICE_NAME outranks service.name inside OTEL_RESOURCE_ATTRIBUTES (spec), so the
    # resource attributes are read first and anything more specific overwrites them; an exporter
    # name that fixes the protocol (otlp_proto_http) outranks OTEL_EXPORTER_OTLP_*PROTOCOL (SDK): last.
    def rank(key: str) -> int:
        if key == "OTEL_RESOURCE_ATTRIBUTES":
            return 0
        return 2 if key in _EXPORTER_VARS else 1

    # Built per call (~60 closures, microseconds), not taken from OTEL_TABLE: converters made at import
    # time would be out of reach of mutation testing, which picks a mutant per call (tox -e mutation).
    table = _otel_table()
    keys = sorted(environ, key=rank)
    for key in keys:
        raw = environ[key]
        origin = Origin(origin_kind, key, file)
        shown = mask(raw) if is_secret_name(key) else raw
        if refused(key, raw):  # empty is unset, as for the SDK; a value cryostorm honours anyway passes
            reason = "not supported by cryostorm-run: " + INVENTORY[key].reason
            problems.append(Problem(origin.describe(), shown, reason, "unset it"))
            continue
        convert = table.get(key)
        if raw == "" and key.startswith("OTEL_"):  # the specification: an empty value is as if unset
            continue  # (compose files write `X=${X:-}`); the SDK ignores it too
        if key == "OTEL_CONFIG_FILE" and origin_kind == "env_file" and raw.strip():
            problems.append(Problem(origin.describe(), raw, "an env file cannot name the OpenTelemetry configuration "
                                    "file", "set OTEL_CONFIG_FILE in the environment or use --config-file"))
        if convert is None:
            continue
        try:
            for path, value in convert(raw):
                entries.append(Entry(path, value, origin))
        except ValueError as exc:
            problems.append(Problem(origin.describe(), shown, str(exc)))
    if problems:
        raise SourceError(problems, entries)
    return entries


def otel_then_cryostorm(values: Mapping[str, str], origin_kind: str, file: str | None = None) -> list[Entry]:
    try:
        otel = read_otel(values, origin_kind.replace("cryostorm_env", "otel_env"), file)
    except SourceError as exc:
        raise SourceError(exc.problems, exc.entries + read_cryostorm(values, origin_kind, file)) from None
    return otel + read_cryostorm(values, origin_kind, file)


# -- merging -----------------------------------------------------------------------------------


def merge(entries: Iterable[Entry]) -> tuple[dict[str, Any], dict[Path_, Origin]]:
    """Nested dict and provenance from entries given lowest precedence first."""
    data: dict[str, Any] = {}
    origins: dict[Path_, Origin] = {}
    for entry in entries:
        node = data
        for part in entry.path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                exploded = _as_dict(child)
                if exploded is None:  # cannot be taken apart: not overridden, and validation names it as written
                    break
                node[part] = child = exploded
            node = child
        else:
            leaf = entry.path[-1]
            if isinstance(entry.value, dict) and isinstance(node.get(leaf), dict):
                node[leaf] = {**node[leaf], **entry.value}
            else:
                node[leaf] = entry.value
            for known in [p for p in origins if p[: len(entry.path)] == entry.path]:
                del origins[known]
            origins[entry.path] = entry.origin
    return data, origins


def _as_dict(value: Any) -> dict[str, Any] | None:
    """A URL or `k=v` string set at a lower precedence, exploded so a nested override can merge; None when
    it cannot be (the override is then not applied, and validating the string names its problem)."""
    if isinstance(value, str):
        from cryostorm_run.config.model import _split_mapping, parse_collector_url

        try:
            if "://" in value:
                return parse_collector_url(value)
            parsed = _split_mapping(value)
            return dict(parsed) if isinstance(parsed, dict) else {}
        except ValueError:
            return None
    return {}


def origin_of(path: Path_, origins: Mapping[Path_, Origin]) -> Origin:
    """The origin of `path` or of its nearest ancestor that was set as a whole."""
    for length in range(len(path), 0, -1):
        found = origins.get(path[:length])
        if found is not None:
            return found
    return DEFAULT


def environ_entries(environ: Mapping[str, str]) -> list[Entry]:
    """Environment entries, lowest precedence first: OTEL_* then CRYOSTORM_*."""
    return otel_then_cryostorm(environ, "cryostorm_env")
