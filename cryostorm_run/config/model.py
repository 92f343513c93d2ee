"""The settings model's fields, types, bounds, defaults and help: declared once, here.

`TelemetryModel` is a plain pydantic model: the launcher validates with it and never imports
pydantic-settings (≈50 ms per container start). `cryostorm_run.settings.TelemetrySettings` is
the same model as a pydantic-settings class reading the environment (the public entry point).
"""

from __future__ import annotations

import json
import re
import urllib.parse
from pathlib import Path, PurePath
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, field_validator, model_validator

from cryostorm_run.common.runtime import parse_pairs
from cryostorm_run.config.enums import (
    DEFAULT_EXCLUDED_PATHS,
    ChildPropagation,
    Compression,
    EnvironmentType,
    ExporterType,
    FastAPITelemetry,
    LogLevel,
    OtlpProtocol,
    ProcessorType,
    PropagatorType,
    SamplingStrategy,
)
from cryostorm_run.config.headers import check_headers


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


def _split_list(value: Any) -> Any:
    """Accept ``a,b`` or a JSON list where a list is expected (environment values are strings)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [item.strip() for item in text.split(",") if item.strip()]
    return value


def _split_mapping(value: Any) -> Any:
    """Accept ``k=v,k2=v2`` (the OTel format, values percent-decoded) or a JSON object."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("{"):
        return json.loads(text)
    return parse_pairs(text, strict=True)


def _lower_list(value: Any) -> Any:
    value = _split_list(value)
    return [_lower(v) for v in value] if isinstance(value, list) else value


Exporter = Annotated[ExporterType, BeforeValidator(_lower)]
Processor = Annotated[ProcessorType, BeforeValidator(_lower)]
Protocol = Annotated[OtlpProtocol, BeforeValidator(_lower)]
Positive = Annotated[int, Field(gt=0)]
# Every duration is at most a day: longer ones overflow the SDK's thread waits (threading.TIMEOUT_MAX)
# or gRPC deadlines, so every export would fail; a day is far beyond any sensible export or flush.
MAX_MILLIS = 86_400_000
Millis = Annotated[int, Field(gt=0, le=MAX_MILLIS)]
Port = Annotated[int, Field(ge=1, le=65535)]
AttributeValue = str | bool | int | float
Attributes = Annotated[dict[str, AttributeValue], BeforeValidator(_split_mapping)]
ExtraArgs = Annotated[dict[str, Any], BeforeValidator(_split_mapping)]

_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?)$")
_BRACKETED = re.compile(r"^(?:[^\[\]]*|\[[^\]]*\](?::[^\[\]]*)?)$")  # host[:port], the host bracketed or not


class BaseConfig(BaseModel):
    """Immutable and strict: an unknown key is an error, never silently ignored. No value holds a NUL byte
    (JSON's \\u0000 or TOML's can write one): no environment variable can carry it to the program."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False)

    @field_validator("*")  # after each field's own parsing: a JSON list or object is parsed by then
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        if _holds_nul(value):
            raise ValueError("holds a NUL byte (\\x00), which no environment variable can carry: remove it")
        return value


def _holds_nul(value: Any) -> bool:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, (str, PurePath)):
        return "\x00" in str(value)
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_holds_nul(item) for item in value)
    return False


class ServiceInfo(BaseConfig):
    """Identifies the program; becomes `service.*` and `deployment.environment*` resource attributes."""

    name: str = Field("unknown-service", min_length=1, max_length=255, description="service.name")
    version: str = Field("0.1.0", min_length=1, max_length=255, description="service.version")
    environment: Annotated[EnvironmentType, BeforeValidator(_lower)] = Field(
        EnvironmentType.DEVELOPMENT, description="deployment.environment.name"
    )
    additional_attributes: Attributes = Field(default_factory=dict, description="Extra resource attributes, "
                                              "`k=v,k2=v2` or JSON")

    @field_validator("name", "version")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():  # `CRYOSTORM_SERVICE__NAME="  "`: every span of the service under a blank name
            raise ValueError("must not be blank: use a name, e.g. checkout")
        return value


def parse_collector_url(value: str) -> dict[str, Any]:
    """`https://collector:4318/otlp` → the CollectorEndpoint fields; ValueError says what is wrong."""
    text = value.strip()
    if "://" not in text:
        raise ValueError(f"expected a URL such as http://collector:4317, got {text!r} (no scheme)")
    try:
        parsed = urllib.parse.urlsplit(text)
    except ValueError:  # urlsplit's own "Invalid IPv6 URL": a bracket without its pair
        raise ValueError(f"invalid host in {text!r}: '[' and ']' only enclose an IPv6 address, e.g. "
                         "http://[::1]:4317") from None
    if parsed.scheme not in ("http", "https"):
        raise ValueError(f"URL scheme must be http or https, got {text.partition('://')[0]!r}")
    try:
        port = parsed.port
    except ValueError as exc:
        raise ValueError(f"invalid port in {text!r}") from exc
    if parsed.query or parsed.fragment:
        raise ValueError(f"a collector URL takes no query or fragment: {text!r}")
    if not _BRACKETED.match(parsed.netloc.rpartition("@")[2]):  # urlsplit drops what follows `]` before `:`
        raise ValueError(f"invalid host in {text!r}: an IPv6 address in brackets is followed by ':' and the "
                         "port or by nothing, e.g. http://[::1]:4317")
    host = parsed.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    fields: dict[str, Any] = {"host": host, "port": port, "protocol": parsed.scheme, "path": parsed.path.rstrip("/")}
    if parsed.username is not None:  # user:password@ becomes an Authorization: Basic header (envmap)
        fields["username"] = urllib.parse.unquote(parsed.username)
        fields["password"] = urllib.parse.unquote(parsed.password or "")
    return fields


def redact_userinfo(text: str) -> str:
    """`http://user:secret@host?token=t` → `http://****:****@host?token=****` (any message quoting a URL)."""
    from cryostorm_run.common.shown import mask_url

    return mask_url(text)


_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s'\"]+@")


class CollectorEndpoint(BaseConfig):
    """Where an OpenTelemetry Collector listens. Also accepts a URL: ``http://collector:4317``."""

    host: str = Field("localhost", description="Collector host name or IP")
    port: Port | None = Field(None, description="Port; default 4317 for grpc, 4318 for http/protobuf")
    protocol: Literal["http", "https"] = Field("http", description="URL scheme; https enables TLS")
    path: str = Field("", description="Base path for OTLP/HTTP, e.g. /otlp (the /v1/<signal> is added)")
    username: str | None = Field(None, description="From user:password@ in the URL: sent as Authorization: Basic")
    password: SecretStr | None = Field(None, description="From user:password@ in the URL (secret: always masked)")

    @model_validator(mode="before")
    @classmethod
    def _from_url(cls, value: Any) -> Any:
        return parse_collector_url(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> CollectorEndpoint:
        if not _HOST.match(self.host):
            raise ValueError(f"invalid host {self.host!r}: use a host name or IP address, without scheme or port")
        if self.path and not self.path.startswith("/"):
            raise ValueError(f"path must start with '/', got {self.path!r}")
        if self.password is not None and self.username is None:
            raise ValueError("a password needs a username (user:password@ in the URL)")
        return self

    def base_url(self, protocol: OtlpProtocol) -> str:
        """The endpoint URL for `protocol`, with the transport's default port when none is set."""
        port = self.port or (4317 if protocol is OtlpProtocol.GRPC else 4318)
        return f"{self.protocol}://{self.host}:{port}{self.path}"


def _check_file(value: Path | None) -> Path | None:
    if value is None:
        return value
    try:
        found = value.is_file()
    except (OSError, ValueError) as exc:  # e.g. a name over 255 characters (ENAMETOOLONG)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ValueError(f"cannot use this path ({reason}): expected the path of an existing file, "
                         "each name in it at most 255 characters") from None
    if not found:
        if value.is_dir():
            raise ValueError(f"{str(value)!r} is a directory: expected the path of a file")
        if value.exists():
            raise ValueError(f"{str(value)!r} is not a regular file (a device or a pipe): expected the path of a file")
        raise ValueError(f"no such file {str(value)!r}")
    return value


Headers = Annotated[dict[str, SecretStr], BeforeValidator(_split_mapping)]
CompressionName = Annotated[Compression, BeforeValidator(_lower)]


class OtlpConfig(BaseConfig):
    """OTLP transport options shared by the three signals."""

    protocol: Protocol = Field(OtlpProtocol.GRPC, description="grpc or http/protobuf")
    headers: Headers = Field(
        default_factory=dict, description="Headers sent with every export (secret: always masked)"
    )
    compression: CompressionName = Field(Compression.NONE)
    timeout_millis: Millis = Field(10_000, description="Per-export timeout")
    insecure: bool | None = Field(None, description="gRPC, http:// URL: false uses TLS (https:// always does)")
    certificate_file: Path | None = Field(None, description="CA bundle to verify the collector")
    client_certificate_file: Path | None = Field(None, description="Client certificate for mTLS")
    client_key_file: Path | None = Field(None, description="Client key for mTLS")

    _header_names = field_validator("headers")(check_headers)
    _file_exists = field_validator("certificate_file", "client_certificate_file", "client_key_file")(_check_file)

    @model_validator(mode="after")
    def _check(self) -> OtlpConfig:
        if (self.client_certificate_file is None) != (self.client_key_file is None):
            raise ValueError("client_certificate_file and client_key_file must be set together")
        return self


class ExportConfig(BaseConfig):
    """Batching for spans and log records."""

    batch_size: Positive = Field(512, description="Items per export request")
    schedule_delay_millis: Millis = Field(5000, description="Longest wait before a partial batch is sent")
    timeout_millis: Millis = Field(
        30_000, description="Longest time one batch is retried while the collector is unreachable or overloaded"
    )
    max_queue_size: Positive = Field(16_384, description="Items buffered before new ones are dropped")
    max_block_millis: Annotated[int, Field(ge=0, le=10_000)] = Field(
        500,
        description="Queue full and the collector answering quickly (within a tenth of this, 50 ms by default: a "
        "burst to a near collector): wait up to this for room instead of dropping (0: never wait; a distant or "
        "failing collector: never)",
    )
    max_in_flight: Annotated[int, Field(ge=1, le=32)] = Field(
        4,
        description="Export requests in flight at once per process (spans; log records: 1): keeps up with a "
        "distant collector",
    )

    @model_validator(mode="after")
    def _check(self) -> ExportConfig:
        if self.batch_size > self.max_queue_size:
            raise ValueError(f"batch_size ({self.batch_size}) must not exceed max_queue_size ({self.max_queue_size})")
        return self


class PropagationConfig(BaseConfig):
    enabled: bool = True
    propagator_types: Annotated[list[PropagatorType], BeforeValidator(_lower_list)] = Field(
        default_factory=lambda: [PropagatorType.TRACECONTEXT, PropagatorType.BAGGAGE], min_length=1
    )


class _SignalConfig(BaseConfig):
    PROMETHEUS_OK: ClassVar[bool] = False  # only metrics can be pulled by Prometheus

    enabled: bool = True
    exporter_type: Exporter | None = Field(None, description="Overrides the top-level exporter_type")
    also_export_to: Annotated[list[ExporterType], BeforeValidator(_lower_list)] = Field(
        default_factory=list, description="More exporters for this signal, each with its own queue and loss "
        "accounting (OTEL_<SIGNAL>_EXPORTER=otlp,console); one already chosen counts once")
    collector: CollectorEndpoint | None = Field(None, description="Overrides the top-level collector")
    protocol: Protocol | None = Field(None, description="Overrides otlp.protocol")
    # OTEL_EXPORTER_OTLP_<SIGNAL>_* (upstream: per-signal over general, each on its own)
    headers: Headers | None = Field(None, description="Overrides otlp.headers as a whole (secret: always masked)")
    compression: CompressionName | None = Field(None, description="Overrides otlp.compression")
    timeout_millis: Millis | None = Field(None, description="Overrides otlp.timeout_millis")
    insecure: bool | None = Field(None, description="Overrides otlp.insecure")
    certificate_file: Path | None = Field(None, description="Overrides otlp.certificate_file")
    client_certificate_file: Path | None = Field(None, description="Overrides otlp.client_certificate_file")
    client_key_file: Path | None = Field(None, description="Overrides otlp.client_key_file")
    additional_exporter_args: ExtraArgs = Field(default_factory=dict)

    _header_names = field_validator("headers")(check_headers)
    _file_exists = field_validator("certificate_file", "client_certificate_file", "client_key_file")(_check_file)

    @model_validator(mode="after")
    def _check_exporter(self) -> _SignalConfig:
        if self.exporter_type is ExporterType.PROMETHEUS and not self.PROMETHEUS_OK:
            raise ValueError("exporter_type 'prometheus' is for metrics only")
        if ExporterType.PROMETHEUS in self.also_export_to and not self.PROMETHEUS_OK:
            raise ValueError("'prometheus' is for metrics only (also_export_to)")
        if ExporterType.NONE in self.also_export_to:
            raise ValueError("also_export_to: 'none' is not an exporter: leave the list empty (the default) for no "
                             "other exporter; enabled=false turns the signal off")
        if (self.client_certificate_file is None) != (self.client_key_file is None):
            raise ValueError("client_certificate_file and client_key_file must be set together")
        return self


class TracingConfig(_SignalConfig):
    processor_type: Processor = ProcessorType.BATCH
    sampling_strategy: Annotated[SamplingStrategy, BeforeValidator(_lower)] = SamplingStrategy.PARENT_BASED_ALWAYS_ON
    sample_rate: float = Field(1.0, ge=0.0, le=1.0, description="Used by the traceidratio strategies")
    export_config: ExportConfig = Field(default_factory=ExportConfig)
    additional_processor_args: ExtraArgs = Field(default_factory=dict)


class MetricsConfig(_SignalConfig):
    PROMETHEUS_OK: ClassVar[bool] = True

    export_interval_millis: Millis = 60_000
    export_timeout_millis: Millis = 30_000
    prometheus_host: str = Field("localhost", description="Bind address of the Prometheus pull endpoint")
    prometheus_port: Port = Field(9464, description="Port of the Prometheus pull endpoint")


class LoggingConfig(_SignalConfig):
    processor_type: Processor = ProcessorType.BATCH
    level: Annotated[LogLevel, BeforeValidator(_upper)] = LogLevel.INFO
    export_config: ExportConfig = Field(default_factory=ExportConfig)
    schedule_delay_millis: Millis | None = Field(None, description="Overrides export_config")
    max_export_batch_size: Positive | None = Field(None, description="Overrides export_config")
    export_timeout_millis: Millis | None = Field(None, description="Overrides export_config")
    max_queue_size: Positive | None = Field(None, description="Overrides export_config")
    additional_processor_args: ExtraArgs = Field(default_factory=dict)
    console_echo: bool = Field(False, description="Also write each exported log record to stderr as one line "
                               "(time, level, logger, message, trace id); off: the program's stderr is its own")


class TelemetryModel(BaseConfig):
    """Everything cryostorm needs, validated once (see `TelemetrySettings` for the sources)."""

    SIGNALS: ClassVar[tuple[str, str, str]] = ("tracing", "metrics", "logging")

    enabled: bool = Field(True, description="false: `cryostorm-run -- CMD` is a plain exec, whatever else is set "
                                            "(said in one `cryostorm: telemetry off (…)` line unless --quiet; "
                                            "other settings it would refuse are told in one warning instead)")
    service: ServiceInfo = Field(default_factory=ServiceInfo)
    exporter_type: Exporter = Field(ExporterType.CONSOLE, description="Exporter for all signals")
    collector: CollectorEndpoint = Field(default_factory=CollectorEndpoint, description="One endpoint for all")
    otlp: OtlpConfig = Field(default_factory=OtlpConfig)
    schema_url: str = ""
    excluded_paths: Annotated[list[str], BeforeValidator(_split_list)] = Field(
        default_factory=lambda: list(DEFAULT_EXCLUDED_PATHS), description="URL paths served and not traced, each "
        "with what is below it (/health: /health/live, not /healthcare); servers only, never outgoing calls. "
        "Upstream's OTEL_PYTHON_EXCLUDED_URLS (regexes, clients too), when set, replaces the default")
    propagation: PropagationConfig = Field(default_factory=PropagationConfig)
    tracing: TracingConfig = Field(default_factory=TracingConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    shutdown_timeout_millis: Millis = Field(2000, description="Longest wait to flush telemetry at exit (the "
                                            "program exits within ~this)")
    child_processes: Annotated[ChildPropagation, BeforeValidator(_lower)] = Field(
        ChildPropagation.ALL, description="Instrument Python children of the program: all or none"
    )
    fastapi_telemetry: Annotated[FastAPITelemetry, BeforeValidator(_lower)] = Field(
        FastAPITelemetry.NATIVE,
        description="FastAPI requests: native (FastAPI's own telemetry, one SERVER span; contrib when FastAPI "
        "has none), native_operations (plus FastAPI's operation spans) or contrib (the contrib middleware)",
    )
