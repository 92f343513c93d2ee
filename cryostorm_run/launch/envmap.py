"""Settings → the child's environment: standard ``OTEL_*`` variables plus a few ``_CRYOSTORM_*`` ones.

`env_rows` is pure: the same settings always give the same rows. Each row names the
setting it comes from, so `print-env` can explain itself and mask secrets.
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryostorm_run.common.runtime import otlp_first
from cryostorm_run.config.enums import DEFAULT_EXCLUDED_PATHS, ExporterType, OtlpProtocol, SamplingStrategy
from cryostorm_run.config.model import CollectorEndpoint, TelemetryModel, _SignalConfig

# Python name of each signal → its OTEL_* spelling and OTLP/HTTP path.
SIGNALS: dict[str, tuple[str, str]] = {
    "tracing": ("TRACES", "/v1/traces"),
    "metrics": ("METRICS", "/v1/metrics"),
    "logging": ("LOGS", "/v1/logs"),
}
# Set for the program unless it has its own value: instrumentations emit the stable HTTP semantic
# conventions (http.request.method, url.full, ...) like FastAPI's native telemetry does.
SEMCONV_OPT_IN = ("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
# gRPC's C core prints its own lines to stderr, unprefixed ("ssl_transport_security.cc ... Handshake failed
# ... WRONG_VERSION_NUMBER" on every reconnect); cryostorm names export failures itself, with the fix.
# NONE, because ERROR still prints that handshake line on grpcio 1.63 (the floor). The program's own
# GRPC_VERBOSITY, or a GRPC_TRACE (someone debugging gRPC), is left as it is.
GRPC_QUIET = ("GRPC_VERBOSITY", "NONE")


# The server instrumentations of opentelemetry-python-contrib that read OTEL_PYTHON_<NAME>_EXCLUDED_URLS before
# the shared OTEL_PYTHON_EXCLUDED_URLS, which the client ones (requests, httpx, urllib...) read too: excluded_paths
# are URL paths served, so they go to these alone (cryostorm's FastAPI native telemetry reads FASTAPI's).
SERVERS = ("FASTAPI", "STARLETTE", "FLASK", "DJANGO", "FALCON", "PYRAMID", "TORNADO", "AIOHTTP_SERVER")
SHARED_EXCLUDED = "OTEL_PYTHON_EXCLUDED_URLS"


def excluded_url_patterns(paths: list[str]) -> str:
    """excluded_paths as the instrumentations' pattern list (each a regex searched in the request's URL): a
    path and what is below it (/health, /health/live), never a longer name (/healthcare) nor the same words
    further along a URL (/api/v2/metrics/daily)."""
    import re

    # "," splits the list; "?" and "#" as such would read as a URL's query in print-env, which masks it.
    coded = {",": r"\x2c", "?": r"\x3f", "#": r"\x23"}

    def literal(path: str) -> str:
        return "".join(coded.get(c) or re.escape(c) for c in "/" + path.strip().lstrip("/"))

    return ",".join(r"^\w+://[^/]*" + literal(p) + r"(/|\x3f|$)" for p in paths if p.strip())


def programs_own(environ: Mapping[str, str], settings: TelemetryModel) -> set[str]:
    """Variables of `env_rows` that the program's own value wins over: an OTEL_PYTHON_<NAME>_EXCLUDED_URLS it
    set, and every one of them when it set upstream's shared OTEL_PYTHON_EXCLUDED_URLS and excluded_paths is
    cryostorm's default (its choice replaces the default, with upstream's meaning)."""
    names = {f"OTEL_PYTHON_{server}_EXCLUDED_URLS" for server in SERVERS}
    if environ.get(SHARED_EXCLUDED) and tuple(settings.excluded_paths) == DEFAULT_EXCLUDED_PATHS:
        return names
    return {name for name in names if name in environ}


def program_defaults(environ: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """What the program gets unless it has its own value (kept as is, even empty): name -> (value, why)."""
    found = {SEMCONV_OPT_IN[0]: (SEMCONV_OPT_IN[1], "default: stable HTTP semantic conventions")}
    if not environ.get("GRPC_TRACE"):
        found[GRPC_QUIET[0]] = (GRPC_QUIET[1], "default: no gRPC C-core log lines (cryostorm names export errors)")
    return {name: found[name] for name in found if name not in environ}
_RATIO = (SamplingStrategy.TRACE_ID_RATIO, SamplingStrategy.PARENT_BASED_TRACE_ID_RATIO)


@dataclass(frozen=True)
class EnvRow:
    name: str
    value: str
    setting: str  # dotted settings path(s) it comes from
    secret: bool = False


def effective_exporter(settings: TelemetryModel, signal: str) -> ExporterType:
    config: _SignalConfig = getattr(settings, signal)
    if not config.enabled:
        return ExporterType.NONE
    chosen = config.exporter_type or settings.exporter_type
    if chosen is ExporterType.PROMETHEUS and signal != "metrics":
        return ExporterType.CONSOLE if settings.exporter_type is ExporterType.PROMETHEUS else chosen
    return chosen


def effective_exporters(settings: TelemetryModel, signal: str) -> list[ExporterType]:
    """The signal's exporters, each once, OTLP first (as the hook orders them), then the effective one and
    also_export_to's in order; none: []."""
    first = effective_exporter(settings, signal)
    if first is ExporterType.NONE:
        return []
    return otlp_first([first, *getattr(settings, signal).also_export_to])


def effective_protocol(settings: TelemetryModel, signal: str) -> OtlpProtocol:
    config: _SignalConfig = getattr(settings, signal)
    return config.protocol or settings.otlp.protocol


def effective_collector(settings: TelemetryModel, signal: str) -> CollectorEndpoint:
    config: _SignalConfig = getattr(settings, signal)
    return config.collector or settings.collector


def _chosen(settings: TelemetryModel, signal: str, field: str) -> tuple[Any, str]:
    """The value of an OTLP option for `signal` (its own, else otlp.*) and the setting it came from."""
    own = getattr(getattr(settings, signal), field)
    if own is not None:
        return own, f"{signal}.{field}"
    return getattr(settings.otlp, field), f"otlp.{field}"


def basic_auth(collector: CollectorEndpoint) -> str | None:
    """`Basic <base64>` for a collector URL written with user:password@ (RFC 7617), else None."""
    if collector.username is None:
        return None
    password = collector.password.get_secret_value() if collector.password is not None else ""
    return "Basic " + base64.b64encode(f"{collector.username}:{password}".encode()).decode("ascii")


def effective_headers(settings: TelemetryModel, signal: str) -> tuple[dict[str, str], str]:
    """The headers `signal` exports with and the setting(s) they come from: its own headers replace
    otlp.headers as a whole (as the exporters read OTEL_EXPORTER_OTLP_<SIGNAL>_HEADERS); credentials
    in the collector URL add an authorization header (loading refuses a second one)."""
    chosen, setting = _chosen(settings, signal, "headers")
    headers = {k: v.get_secret_value() for k, v in chosen.items()} if isinstance(chosen, dict) else {}
    auth = basic_auth(effective_collector(settings, signal))
    if auth is not None:
        headers["authorization"] = auth
        where = f"{signal}.collector" if getattr(settings, signal).collector is not None else "collector"
        setting += f", {where}.username, {where}.password"
    return headers, setting


def tls_files(settings: TelemetryModel, signal: str) -> list[tuple[str, Path | None, str]]:
    """(field, path, setting) of the CA bundle and client pair `signal` uses, chosen as its exporter
    does: OTLP/HTTP takes each file per-signal else general; OTLP/gRPC takes the per-signal trio when
    the signal has its own certificate, else the general trio."""
    fields = ("certificate_file", "client_certificate_file", "client_key_file")
    own = getattr(settings, signal)
    if effective_protocol(settings, signal) is OtlpProtocol.GRPC:
        source = f"{signal}." if own.certificate_file is not None else "otlp."
        config = own if source != "otlp." else settings.otlp
        return [(f, getattr(config, f), source + f) for f in fields]
    return [(f, *_chosen(settings, signal, f)) for f in fields]


def signal_endpoint(settings: TelemetryModel, signal: str) -> str:
    """The exact URL the exporter uses: gRPC takes scheme://host:port, HTTP the full /v1/<signal> URL."""
    protocol = effective_protocol(settings, signal)
    base = effective_collector(settings, signal).base_url(protocol)
    if protocol is OtlpProtocol.GRPC:
        return base.split("/", 3)[0] + "//" + base.split("/", 3)[2]
    return base + SIGNALS[signal][1]


def encode_pairs(pairs: dict[str, str], *, literal_keys: bool = False) -> str:
    """`k=v,k2=v2` with the OTel percent-encoding of separators. `literal_keys`: for
    OTEL_RESOURCE_ATTRIBUTES, whose keys the SDK does not decode: written as they are (but `,` and `=`,
    which would split the list)."""
    def key(k: str) -> str:
        return k.replace(",", "%2C").replace("=", "%3D") if literal_keys else urllib.parse.quote(k, safe="")

    return ",".join(f"{key(k)}={urllib.parse.quote(v, safe='')}" for k, v in pairs.items())


DEFAULT_OTLP_TIMEOUT_MS = 10_000


def _seconds(millis: int) -> str:
    # OTEL_EXPORTER_OTLP_*_TIMEOUT is read in seconds by the Python SDK.
    return f"{millis / 1000:g}"


def env_rows(settings: TelemetryModel) -> list[EnvRow]:
    """Every variable the child gets for these settings, in a stable order."""
    s = settings
    rows = [EnvRow("OTEL_SERVICE_NAME", s.service.name, "service.name")]
    attrs = {
        "service.version": s.service.version,
        "deployment.environment.name": s.service.environment.value,
        "deployment.environment": s.service.environment.value,
        **{k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in s.service.additional_attributes.items()},
    }
    rows.append(
        EnvRow("OTEL_RESOURCE_ATTRIBUTES", encode_pairs(attrs, literal_keys=True),
               "service.version, service.environment, service.additional_attributes")
    )
    typed = {k: v for k, v in s.service.additional_attributes.items() if not isinstance(v, str)}
    if typed:  # OTEL_RESOURCE_ATTRIBUTES holds strings only: the hook gives these their type back
        rows.append(EnvRow("_CRYOSTORM_RESOURCE_TYPED", json.dumps(typed, sort_keys=True),
                           "service.additional_attributes (booleans and numbers)"))
    sampler = s.tracing.sampling_strategy
    rows.append(EnvRow("OTEL_TRACES_SAMPLER", sampler.value, "tracing.sampling_strategy"))
    if sampler in _RATIO:
        rows.append(EnvRow("OTEL_TRACES_SAMPLER_ARG", f"{s.tracing.sample_rate:g}", "tracing.sample_rate"))
    propagators = ",".join(p.value for p in s.propagation.propagator_types) if s.propagation.enabled else "none"
    rows.append(EnvRow("OTEL_PROPAGATORS", propagators, "propagation.enabled, propagation.propagator_types"))
    for signal, (upper, _) in SIGNALS.items():
        exporters = effective_exporters(s, signal)
        setting = f"{signal}.enabled, {signal}.exporter_type, exporter_type, {signal}.also_export_to"
        rows.append(EnvRow(f"OTEL_{upper}_EXPORTER", ",".join(e.value for e in exporters) or "none", setting))
        if ExporterType.OTLP in exporters:
            rows += _otlp_rows(s, signal, upper)
    for prefix, signal in (("OTEL_BSP", "tracing"), ("OTEL_BLRP", "logging")):
        rows += _batch_rows(s, prefix, signal)
    rows.append(EnvRow("OTEL_METRIC_EXPORT_INTERVAL", str(s.metrics.export_interval_millis),
                       "metrics.export_interval_millis"))
    rows.append(EnvRow("OTEL_METRIC_EXPORT_TIMEOUT", str(s.metrics.export_timeout_millis),
                       "metrics.export_timeout_millis"))
    if ExporterType.PROMETHEUS in effective_exporters(s, "metrics"):
        rows.append(EnvRow("OTEL_EXPORTER_PROMETHEUS_HOST", s.metrics.prometheus_host, "metrics.prometheus_host"))
        rows.append(EnvRow("OTEL_EXPORTER_PROMETHEUS_PORT", str(s.metrics.prometheus_port), "metrics.prometheus_port"))
    if s.excluded_paths:
        patterns = excluded_url_patterns(s.excluded_paths)
        rows += [EnvRow(f"OTEL_PYTHON_{server}_EXCLUDED_URLS", patterns, "excluded_paths") for server in SERVERS]
    rows += _cryostorm_rows(s)
    return rows


def _otlp_rows(s: TelemetryModel, signal: str, upper: str) -> list[EnvRow]:
    protocol = effective_protocol(s, signal)
    var = f"OTEL_EXPORTER_OTLP_{upper}_"
    compression, compression_from = _chosen(s, signal, "compression")
    timeout, timeout_from = _chosen(s, signal, "timeout_millis")
    rows = [
        EnvRow(var + "ENDPOINT", signal_endpoint(s, signal), f"{signal}.collector, collector"),
        EnvRow(var + "PROTOCOL", protocol.value, f"{signal}.protocol, otlp.protocol"),
    ]
    if timeout != DEFAULT_OTLP_TIMEOUT_MS:  # 10 s is every SDK's default; written, it is in the Python SDK's
        # seconds, which the other SDKs read as milliseconds: a Node or Go child of the program got 10 ms
        rows.append(EnvRow(var + "TIMEOUT", _seconds(timeout), timeout_from))
    if str(compression) != "none":  # "none" is left unset (the same: no compression): the SDK's gRPC exporters,
        # which a program may build itself from this environment, raise on the value "none"
        rows.insert(2, EnvRow(var + "COMPRESSION", str(compression), compression_from))
    headers, headers_from = effective_headers(s, signal)
    if headers:
        rows.append(EnvRow(var + "HEADERS", encode_pairs(headers), headers_from, secret=True))
    insecure, insecure_from = _chosen(s, signal, "insecure")
    if insecure is not None and protocol is OtlpProtocol.GRPC:  # OTLP/HTTP has no insecure option
        rows.append(EnvRow(var + "INSECURE", str(insecure).lower(), insecure_from))
    suffixes = {"certificate_file": "CERTIFICATE", "client_certificate_file": "CLIENT_CERTIFICATE",
                "client_key_file": "CLIENT_KEY"}
    for field, path, setting in tls_files(s, signal):
        if path is not None:
            rows.append(EnvRow(var + suffixes[field], str(path), setting))
    return rows


def _batch_rows(s: TelemetryModel, prefix: str, signal: str) -> list[EnvRow]:
    cfg = s.tracing.export_config if signal == "tracing" else s.logging.export_config
    lg = s.logging
    values = {
        "SCHEDULE_DELAY": (cfg.schedule_delay_millis, "schedule_delay_millis"),
        "EXPORT_TIMEOUT": (cfg.timeout_millis, "timeout_millis"),
        "MAX_EXPORT_BATCH_SIZE": (cfg.batch_size, "batch_size"),
        "MAX_QUEUE_SIZE": (cfg.max_queue_size, "max_queue_size"),
    }
    upper = "TRACES" if signal == "tracing" else "LOGS"
    rows = [EnvRow(f"_CRYOSTORM_{upper}_{var}", str(value), f"{signal}.export_config.{name}")
            for var, value, name in (("MAX_BLOCK", cfg.max_block_millis, "max_block_millis"),
                                     ("MAX_IN_FLIGHT", cfg.max_in_flight, "max_in_flight"))]
    if signal == "logging":  # the seed's per-field overrides win over logging.export_config
        overrides = {
            "SCHEDULE_DELAY": (lg.schedule_delay_millis, "schedule_delay_millis"),
            "EXPORT_TIMEOUT": (lg.export_timeout_millis, "export_timeout_millis"),
            "MAX_EXPORT_BATCH_SIZE": (lg.max_export_batch_size, "max_export_batch_size"),
            "MAX_QUEUE_SIZE": (lg.max_queue_size, "max_queue_size"),
        }
        for key, (value, field) in values.items():
            override, ofield = overrides[key]
            if override is not None:
                setting = f"logging.{ofield}, logging.export_config.{field}"
                rows.append(EnvRow(f"{prefix}_{key}", str(override), setting))
            else:
                rows.append(EnvRow(f"{prefix}_{key}", str(value), f"logging.export_config.{field}"))
        return rows
    return rows + [EnvRow(f"{prefix}_{key}", str(v), f"{signal}.export_config.{f}") for key, (v, f) in values.items()]


def _cryostorm_rows(s: TelemetryModel) -> list[EnvRow]:
    """What OTel has no variable for; read only by cryostorm's hook in the child."""
    rows = [
        EnvRow("_CRYOSTORM_TRACES_PROCESSOR", s.tracing.processor_type.value, "tracing.processor_type"),
        EnvRow("_CRYOSTORM_LOGS_PROCESSOR", s.logging.processor_type.value, "logging.processor_type"),
        EnvRow("_CRYOSTORM_LOG_LEVEL", s.logging.level.value, "logging.level"),
        EnvRow("_CRYOSTORM_SHUTDOWN_TIMEOUT", str(s.shutdown_timeout_millis), "shutdown_timeout_millis"),
        EnvRow("_CRYOSTORM_CHILDREN", s.child_processes.value, "child_processes"),
        EnvRow("_CRYOSTORM_FASTAPI", s.fastapi_telemetry.value, "fastapi_telemetry"),
    ]
    if s.schema_url:
        rows.append(EnvRow("_CRYOSTORM_SCHEMA_URL", s.schema_url, "schema_url"))
    if s.logging.console_echo:
        rows.append(EnvRow("_CRYOSTORM_LOGS_ECHO", "true", "logging.console_echo"))
    extra_args = {
        "_CRYOSTORM_TRACES_EXPORTER_ARGS": (s.tracing.additional_exporter_args, "tracing.additional_exporter_args"),
        "_CRYOSTORM_TRACES_PROCESSOR_ARGS": (s.tracing.additional_processor_args, "tracing.additional_processor_args"),
        "_CRYOSTORM_METRICS_EXPORTER_ARGS": (s.metrics.additional_exporter_args, "metrics.additional_exporter_args"),
        "_CRYOSTORM_LOGS_EXPORTER_ARGS": (s.logging.additional_exporter_args, "logging.additional_exporter_args"),
        "_CRYOSTORM_LOGS_PROCESSOR_ARGS": (s.logging.additional_processor_args, "logging.additional_processor_args"),
    }
    for name, (value, setting) in extra_args.items():
        if value:
            rows.append(EnvRow(name, json.dumps(value, sort_keys=True, default=str), setting))
    return rows


def settings_env(settings: TelemetryModel) -> dict[str, str]:
    """The environment variables (values in clear) that configure telemetry for these settings."""
    return {row.name: row.value for row in env_rows(settings)}
