"""Enumerations used by the settings model.

Values are the names the OpenTelemetry specification uses where one exists
(`OTEL_TRACES_SAMPLER`, `OTEL_PROPAGATORS`), so the mapping to `OTEL_*` is the
identity and users can paste what they already know.
"""

from __future__ import annotations

import enum


class _StrEnum(str, enum.Enum):
    """`enum.StrEnum` for Python 3.10: `str(member)` is its value."""

    def __str__(self) -> str:
        return str(self.value)

    @classmethod
    def choices(cls) -> list[str]:
        return [m.value for m in cls]


class EnvironmentType(_StrEnum):
    DEVELOPMENT = "development"
    STAGING = "staging"
    PRODUCTION = "production"


class ExporterType(_StrEnum):
    """Where each signal goes. The three console exporters write to stderr (stdout is the program's):
    `console` for people on a terminal and JSON otherwise, `pretty` always for people, `console_json`
    always the SDK's JSON documents (for machines, even on a terminal)."""

    CONSOLE = "console"
    CONSOLE_PRETTY = "pretty"  # a tree per trace, one line per log record and per metric point
    CONSOLE_JSON = "console_json"  # the SDK's console exporters' JSON, terminal or not
    OTLP = "otlp"
    IN_MEMORY = "in_memory"
    PROMETHEUS = "prometheus"  # metrics only: a pull endpoint scraped by Prometheus
    NONE = "none"


class ProcessorType(_StrEnum):
    BATCH = "batch"
    SIMPLE = "simple"


class OtlpProtocol(_StrEnum):
    GRPC = "grpc"
    HTTP_PROTOBUF = "http/protobuf"


class Compression(_StrEnum):
    NONE = "none"
    GZIP = "gzip"


class PropagatorType(_StrEnum):
    TRACECONTEXT = "tracecontext"
    BAGGAGE = "baggage"
    B3 = "b3"
    B3MULTI = "b3multi"
    JAEGER = "jaeger"


class SamplingStrategy(_StrEnum):
    ALWAYS_ON = "always_on"
    ALWAYS_OFF = "always_off"
    TRACE_ID_RATIO = "traceidratio"
    PARENT_BASED_ALWAYS_ON = "parentbased_always_on"
    PARENT_BASED_ALWAYS_OFF = "parentbased_always_off"
    PARENT_BASED_TRACE_ID_RATIO = "parentbased_traceidratio"


class LogLevel(_StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"


class ChildPropagation(_StrEnum):
    """Which child processes of the program are instrumented too."""

    ALL = "all"  # every Python child that uses the same environment
    NONE = "none"


class FastAPITelemetry(_StrEnum):
    """Where a FastAPI app's request telemetry comes from."""

    NATIVE = "native"  # FastAPI's own OpenTelemetry support: one SERVER span per request
    NATIVE_OPERATIONS = "native_operations"  # the same, plus FastAPI's dependency/endpoint/serialization spans
    CONTRIB = "contrib"  # opentelemetry-instrumentation-fastapi's ASGI middleware


DEFAULT_EXCLUDED_PATHS = ("/health", "/metrics", "/favicon.ico")  # excluded_paths unless set
