"""Every OpenTelemetry environment variable and the one rule cryostorm-run applies to it.

A variable is **mapped** (read into a setting and written back out to the program from that
setting), **passed** (left in the program's environment untouched, for the SDK, an exporter or an
instrumentation inside the program to read), **refused** (set and not empty: exit 2 naming it and
the reason; cryostorm's hook would otherwise ignore it silently) or **read** by the launcher itself
(`OTEL_CONFIG_FILE`: see `config.otelfile`).

`source` says who defines it: the OpenTelemetry specification ("spec"), the Python API/SDK ("sdk"),
the OTLP exporters ("exporter") or `opentelemetry-instrumentation` and the contrib instrumentations
("instrumentation"). Families (per-library variables) are patterns in `FAMILIES`.

Pure data: `config.sources` (refusals), `config.advice` (known names), `launch.plan` (what is
absorbed) and the README table all read it; tests/test_inventory.py holds each rule to what the
launcher really does and to the names the installed SDK reads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Kind = Literal["mapped", "passed", "refused", "read"]
Source = Literal["spec", "sdk", "exporter", "instrumentation"]


@dataclass(frozen=True)
class Rule:
    kind: Kind
    source: Source
    setting: str = ""  # mapped: the dotted setting(s) it becomes
    written_as: tuple[str, ...] = ()  # mapped: the variable(s) the program gets from that setting
    reason: str = ""  # refused: why; otherwise a note

    def describe(self) -> str:
        if self.kind == "mapped":
            return f"{self.setting} → {', '.join(self.written_as)}" + (f" ({self.reason})" if self.reason else "")
        return self.reason


def _mapped(source: Source, setting: str, *written: str, note: str = "") -> Rule:
    return Rule("mapped", source, setting, written, note)


def _passed(source: Source, note: str = "") -> Rule:
    return Rule("passed", source, reason=note)


def _refused(source: Source, reason: str) -> Rule:
    return Rule("refused", source, reason=reason)


SIGNALS = {"tracing": "TRACES", "metrics": "METRICS", "logging": "LOGS"}
_OTLP_SETTINGS = {"ENDPOINT": "collector", "PROTOCOL": "protocol", "HEADERS": "headers",
                  "COMPRESSION": "compression", "TIMEOUT": "timeout_millis", "INSECURE": "insecure",
                  "CERTIFICATE": "certificate_file", "CLIENT_CERTIFICATE": "client_certificate_file",
                  "CLIENT_KEY": "client_key_file"}
_OTLP_NOTES = {"TIMEOUT": "seconds, as the Python exporters read it", "INSECURE": "written for gRPC only",
               "HEADERS": "written when not empty", "CERTIFICATE": "written when set",
               "CLIENT_CERTIFICATE": "written when set", "CLIENT_KEY": "written when set"}

_NO_PROVIDERS = "cryostorm's hook installs its own providers, so the API never loads one named here"
_NO_SDK_CONFIGURATOR = ("read only by the SDK's own configurator, which cryostorm's hook replaces; "
                        "configure through cryostorm's settings instead")
_NO_LOGGING_INSTRUMENTATION = ("read only by opentelemetry-instrumentation-logging, which cryostorm does not "
                               "activate: its log bridge already puts otelTraceID/otelSpanID/otelServiceName on "
                               "every log record and leaves logging's format and level to the program")
_NO_EXPORTER = "cryostorm has no {} exporter; export OTLP to a collector that forwards to {}"
_HTTP_SESSION = ("cryostorm gives the OTLP/HTTP exporter its own session (to read partial-success replies), so "
                 "the exporter loads no credential provider; use OTEL_EXPORTER_OTLP_HEADERS, a user:password@ "
                 "endpoint or the certificate variables")
_EXPORTER_NOTE = "none: the signal is disabled; pretty and console_json: cryostorm's own, read by its hook"
_GRPC_CREDENTIALS = "read by the OTLP/gRPC exporter when no certificate is configured"


def _inventory() -> dict[str, Rule]:
    inv: dict[str, Rule] = {
        # -- general SDK --
        "OTEL_SDK_DISABLED": _mapped("spec", "enabled", "OTEL_SDK_DISABLED",
                                     note="true: the program runs uninstrumented, its environment as given"),
        "OTEL_RESOURCE_ATTRIBUTES": _mapped(
            "spec", "service.name, service.version, service.environment, service.additional_attributes",
            "OTEL_RESOURCE_ATTRIBUTES", "OTEL_SERVICE_NAME"),
        "OTEL_SERVICE_NAME": _mapped("spec", "service.name", "OTEL_SERVICE_NAME"),
        "OTEL_TRACES_SAMPLER": _mapped("spec", "tracing.sampling_strategy", "OTEL_TRACES_SAMPLER"),
        "OTEL_TRACES_SAMPLER_ARG": _mapped("spec", "tracing.sample_rate", "OTEL_TRACES_SAMPLER_ARG",
                                           note="written for the traceidratio samplers"),
        "OTEL_PROPAGATORS": _mapped("spec", "propagation.propagator_types, propagation.enabled", "OTEL_PROPAGATORS"),
        "OTEL_LOG_LEVEL": _passed("spec", "defined but not read by the Python SDK"),
        "OTEL_ENTITIES": _passed("spec", "not read by the Python SDK"),
        "OTEL_CONFIG_FILE": Rule("read", "spec", reason=(
            "read by the launcher (like --config-file): the OpenTelemetry configuration file decides the "
            "OpenTelemetry settings, which the program gets as the variables above; every other source of them "
            "is reported as having no effect. Not passed on to the program")),
        "OTEL_EXPERIMENTAL_CONFIG_FILE": _refused("sdk", "the former name of OTEL_CONFIG_FILE; rename it"),
        "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": _refused(
            "sdk", "cryostorm builds the resource from its settings and runs no resource detectors; put the "
            "attributes in OTEL_RESOURCE_ATTRIBUTES"),
        # -- limits (the SDK's TracerProvider and LoggerProvider read them in the program) --
        **{name: _passed("spec") for name in (
            "OTEL_ATTRIBUTE_COUNT_LIMIT", "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
            "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "OTEL_SPAN_EVENT_COUNT_LIMIT", "OTEL_SPAN_LINK_COUNT_LIMIT",
            "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT", "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT",
            "OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT", "OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT")},
        # -- metrics SDK --
        "OTEL_METRICS_EXEMPLAR_FILTER": _passed("spec", "read by the SDK's MeterProvider in the program"),
        "OTEL_METRIC_EXPORT_INTERVAL": _mapped("spec", "metrics.export_interval_millis", "OTEL_METRIC_EXPORT_INTERVAL"),
        "OTEL_METRIC_EXPORT_TIMEOUT": _mapped("spec", "metrics.export_timeout_millis", "OTEL_METRIC_EXPORT_TIMEOUT"),
        "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": _passed("spec", "read by the OTLP metric exporter"),
        "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION": _passed("spec", "read by the OTLP metric exporter"),
        # -- other exporters --
        "OTEL_EXPORTER_PROMETHEUS_HOST": _mapped("spec", "metrics.prometheus_host", "OTEL_EXPORTER_PROMETHEUS_HOST",
                                                 note="written when metrics export to prometheus"),
        "OTEL_EXPORTER_PROMETHEUS_PORT": _mapped("spec", "metrics.prometheus_port", "OTEL_EXPORTER_PROMETHEUS_PORT",
                                                 note="written when metrics export to prometheus"),
        **{f"OTEL_EXPORTER_ZIPKIN_{k}": _refused("spec", _NO_EXPORTER.format("Zipkin", "Zipkin"))
           for k in ("ENDPOINT", "TIMEOUT")},
        **{f"OTEL_EXPORTER_JAEGER_{k}": _refused("spec", _NO_EXPORTER.format("Jaeger", "Jaeger"))
           for k in ("AGENT_HOST", "AGENT_PORT", "ENDPOINT", "USER", "PASSWORD", "TIMEOUT")},
        # -- Python API/SDK --
        "OTEL_PYTHON_CONTEXT": _passed("sdk", "read by the API in the program"),
        "OTEL_PYTHON_ID_GENERATOR": _refused("sdk", _NO_SDK_CONFIGURATOR),
        **{f"OTEL_PYTHON_{k}_PROVIDER": _refused("sdk", _NO_PROVIDERS)
           for k in ("TRACER", "METER", "LOGGER", "EVENT_LOGGER")},
        **{f"OTEL_PYTHON_{k}_CONFIGURATOR": _refused("sdk", _NO_SDK_CONFIGURATOR)
           for k in ("TRACER", "METER", "LOGGER")},
        "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED": _refused(
            "sdk", "read only by the SDK's own configurator: cryostorm bridges the logging module whenever logs "
            "are exported; turn that off with OTEL_LOGS_EXPORTER=none"),
        "OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED": _passed("sdk", "read by cryostorm's hook in the program"),
        # -- OTLP exporters (Python) --
        "OTEL_PYTHON_EXPORTER_OTLP_GRPC_RETRYABLE_ERROR_CODES": _passed("exporter", "read by the OTLP/gRPC exporter"),
        # -- opentelemetry-instrumentation and the contrib instrumentations --
        "OTEL_PYTHON_DISTRO": _refused("instrumentation", "cryostorm's hook is the distro (loaded by name); "
                                       "another one would not run"),
        "OTEL_PYTHON_CONFIGURATOR": _refused("instrumentation", "cryostorm's hook is the configurator (loaded by "
                                             "name); another one would not run"),
        "OTEL_PYTHON_AUTO_INSTRUMENTATION_EXPERIMENTAL_GEVENT_PATCH": _refused(
            "instrumentation", "read only by opentelemetry-instrument's bootstrap, which cryostorm's hook "
            "replaces; call gevent.monkey.patch_all() first thing in the program"),
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": _passed("instrumentation", "read by cryostorm's hook in the program"),
        "OTEL_SEMCONV_STABILITY_OPT_IN": _passed("instrumentation", "the program's own value is kept, even empty; "
                                                 "unset, the program gets http"),
        "OTEL_PYTHON_EXCLUDED_URLS": _passed("instrumentation", "read by the contrib instrumentations in the program, "
                                             "clients included (regexes searched in URLs); set, it replaces the "
                                             "default excluded_paths"),
        **{f"OTEL_PYTHON_{k}": _refused("instrumentation", _NO_LOGGING_INSTRUMENTATION) for k in (
            "LOG_CORRELATION", "LOG_FORMAT", "LOG_LEVEL", "LOG_CODE_ATTRIBUTES", "LOG_AUTO_INSTRUMENTATION",
            "LOG_HANDLER_LEVEL")},
        **{name: _passed("instrumentation", "read by a contrib instrumentation in the program") for name in (
            "OTEL_PYTHON_INSTRUMENTATION_HTTP_CAPTURE_ALL_METHODS", "OTEL_PYTHON_DJANGO_INSTRUMENT",
            "OTEL_PYTHON_DJANGO_MIDDLEWARE_POSITION", "OTEL_PYTHON_ELASTICSEARCH_NAME_PREFIX",
            "OTEL_PYTHON_GRPC_EXCLUDED_SERVICES", "OTEL_PYTHON_INSTRUMENTATION_SANITIZE_REDIS",
            "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
            *(f"OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_{k}" for k in (
                "SERVER_REQUEST", "SERVER_RESPONSE", "CLIENT_REQUEST", "CLIENT_RESPONSE", "SANITIZE_FIELDS")))},
    }
    for upper in ("", *(s + "_" for s in SIGNALS.values())):
        inv[f"OTEL_PYTHON_EXPORTER_OTLP_GRPC_{upper}CREDENTIAL_PROVIDER"] = _passed("exporter", _GRPC_CREDENTIALS)
        inv[f"OTEL_PYTHON_EXPORTER_OTLP_HTTP_{upper}CREDENTIAL_PROVIDER"] = _refused("exporter", _HTTP_SESSION)
    for prefix, signal in (("OTEL_BSP", "tracing"), ("OTEL_BLRP", "logging")):
        for key, field in (("SCHEDULE_DELAY", "schedule_delay_millis"), ("EXPORT_TIMEOUT", "timeout_millis"),
                           ("MAX_EXPORT_BATCH_SIZE", "batch_size"), ("MAX_QUEUE_SIZE", "max_queue_size")):
            inv[f"{prefix}_{key}"] = _mapped("spec", f"{signal}.export_config.{field}", f"{prefix}_{key}")
    for signal, upper in SIGNALS.items():
        inv[f"OTEL_{upper}_EXPORTER"] = _mapped("spec", f"{signal}.exporter_type, {signal}.also_export_to, "
                                                f"{signal}.enabled",
                                                f"OTEL_{upper}_EXPORTER", note=_EXPORTER_NOTE)
    for key, field in _OTLP_SETTINGS.items():
        general = "collector" if field == "collector" else f"otlp.{field}"
        note = _OTLP_NOTES.get(key, "")
        inv[f"OTEL_EXPORTER_OTLP_{key}"] = _mapped(
            "spec", general, *(f"OTEL_EXPORTER_OTLP_{u}_{key}" for u in SIGNALS.values()),
            note=", ".join(filter(None, ["per signal, for the signals exporting OTLP", note])))
        for signal, upper in SIGNALS.items():
            inv[f"OTEL_EXPORTER_OTLP_{upper}_{key}"] = _mapped("spec", f"{signal}.{field}",
                                                               f"OTEL_EXPORTER_OTLP_{upper}_{key}", note=note)
    return inv


INVENTORY: dict[str, Rule] = _inventory()

# Per-library variables of the contrib instrumentations, read in the program: (shown name, pattern, rule).
_CONTRIB = "read by the contrib instrumentation of that library in the program"
FAMILIES: tuple[tuple[str, str, Rule], ...] = (
    ("OTEL_PYTHON_<NAME>_EXCLUDED_URLS", r"OTEL_PYTHON_[A-Z0-9_]+_EXCLUDED_URLS", _passed("instrumentation", _CONTRIB)),
    ("OTEL_PYTHON_<NAME>_TRACED_REQUEST_ATTRS", r"OTEL_PYTHON_[A-Z0-9_]+_TRACED_REQUEST_ATTRS",
     _passed("instrumentation", _CONTRIB)),
    ("OTEL_PYTHON_<NAME>_EXCLUDED_SPANS", r"OTEL_PYTHON_[A-Z0-9_]+_EXCLUDED_SPANS",
     _passed("instrumentation", _CONTRIB)),
    ("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_*", r"OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_[A-Z0-9_]+",
     _passed("instrumentation", _CONTRIB)),
    ("OTEL_INSTRUMENTATION_GENAI_*", r"OTEL_INSTRUMENTATION_GENAI_[A-Z0-9_]+", _passed("instrumentation", _CONTRIB)),
)
_FAMILY_RE = re.compile("|".join(f"({pattern})" for _, pattern, _ in FAMILIES))

MAPPED = frozenset(name for name, rule in INVENTORY.items() if rule.kind == "mapped")
REFUSED = frozenset(name for name, rule in INVENTORY.items() if rule.kind == "refused")
READ = frozenset(name for name, rule in INVENTORY.items() if rule.kind == "read")

# Refused variables whose value asks for what cryostorm does anyway: accepted (a deployment that has
# them keeps running), any other value is refused. Compared case-insensitively.
ALREADY_SO: dict[str, frozenset[str]] = {
    "OTEL_PYTHON_LOG_CORRELATION": frozenset({"true"}),  # the log bridge adds otelTraceID/otelSpanID
    "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED": frozenset({"true"}),  # the log bridge exports records
    "OTEL_PYTHON_DISTRO": frozenset({"cryostorm"}),
    "OTEL_PYTHON_CONFIGURATOR": frozenset({"cryostorm"}),
}


def refused(name: str, value: str) -> bool:
    """Is `name=value` refused? (Empty is unset; values in ALREADY_SO ask for what cryostorm does.)"""
    if name not in REFUSED or not value.strip():
        return False
    return value.strip().lower() not in ALREADY_SO.get(name, frozenset())


def rule_for(name: str) -> Rule | None:
    """The rule for `name`: its own entry, else its family's, else None (not an OpenTelemetry variable)."""
    rule = INVENTORY.get(name)
    if rule is not None:
        return rule
    match = _FAMILY_RE.fullmatch(name)
    if match is None:
        return None
    return FAMILIES[(match.lastindex or 1) - 1][2]
