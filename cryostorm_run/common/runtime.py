"""The child's view of its configuration, parsed from the environment without pydantic.

The launcher has already validated everything, so this module stays cheap to import
(it runs in every instrumented process). `runtime_from_env(settings_env(s))` is also how
the `Telemetry` facade configures itself: one path from settings to providers.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: this module runs in every process, typing stays out
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from dataclasses import dataclass, field
    from typing import Any, TypeVar

    Name = TypeVar("Name", bound=str)

    AttributeValue = str | bool | int | float
else:
    # What the type checker sees as frozen dataclasses is, at run time, `_record` (below): importing
    # `dataclasses` (with `inspect`, `ast`, `tokenize`, ...) cost every instrumented process ~4 ms.
    def dataclass(frozen: bool = True) -> Callable[[type], type]:
        return _record

    def field(default_factory: Callable[[], Any]) -> Any:
        return _Factory(default_factory)


class _Factory:
    __slots__ = ("make",)

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make


def _record(cls: type) -> type:
    """What `@dataclass(frozen=True)` gives these classes, for fields that all have defaults: `__init__`
    (positional or keyword), `__eq__`, `__hash__`, `__repr__`, and no assignment after construction
    (tests/test_runtime_record.py holds it to the real dataclass's behaviour)."""
    names = tuple(cls.__annotations__)  # this class's own fields (no base has any), in order
    defaults = tuple(cls.__dict__[name] for name in names)
    title = cls.__qualname__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if len(args) > len(names):
            raise TypeError(f"{title}.__init__() takes from 1 to {len(names) + 1} positional arguments but "
                            f"{len(args) + 1} were given")
        values = dict(zip(names, args, strict=False))
        for name, value in kwargs.items():
            if name not in names:
                raise TypeError(f"{title}.__init__() got an unexpected keyword argument '{name}'")
            if name in values:
                raise TypeError(f"{title}.__init__() got multiple values for argument '{name}'")
            values[name] = value
        for name, default in zip(names, defaults, strict=True):
            value = values[name] if name in values else default.make() if type(default) is _Factory else default
            object.__setattr__(self, name, value)

    def __setattr__(self: Any, name: str, value: Any) -> None:
        raise AttributeError(f"cannot assign to field '{name}'")

    def __delattr__(self: Any, name: str) -> None:
        raise AttributeError(f"cannot delete field '{name}'")

    def __eq__(self: Any, other: Any) -> Any:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in names)

    def __hash__(self: Any) -> int:
        return hash(tuple(getattr(self, name) for name in names))

    def __repr__(self: Any) -> str:
        return f"{title}({', '.join(f'{name}={getattr(self, name)!r}' for name in names)})"

    for method in (__init__, __setattr__, __delattr__, __eq__, __hash__, __repr__):
        method.__qualname__ = f"{title}.{method.__name__}"
        setattr(cls, method.__name__, method)
    for name, default in zip(names, defaults, strict=True):
        if type(default) is _Factory:
            delattr(cls, name)  # as a dataclass field with a default_factory: no class attribute
    return cls


SIGNAL_NAMES = {"traces": "TRACES", "metrics": "METRICS", "logs": "LOGS"}


@dataclass(frozen=True)
class Batch:
    schedule_delay_ms: int = 5000
    export_timeout_ms: int = 30000
    max_export_batch_size: int = 512
    max_queue_size: int = 2048
    max_block_ms: int = 0
    max_in_flight: int = 4  # export requests at once (spans; log records: 1)


@dataclass(frozen=True)
class SignalRuntime:
    exporter: str = "none"  # otlp | console | pretty | console_json | in_memory | prometheus | none
    also: tuple[str, ...] = ()  # more exporters (OTEL_<SIGNAL>_EXPORTER=otlp,console), each with its own queue
    endpoint: str = ""
    protocol: str = "grpc"
    headers: Mapping[str, str] = field(default_factory=dict)
    compression: str = "none"
    timeout_s: float = 10.0
    insecure: bool | None = None
    certificate: str | None = None
    client_certificate: str | None = None
    client_key: str | None = None
    exporter_args: Mapping[str, Any] = field(default_factory=dict)
    processor: str = "batch"
    processor_args: Mapping[str, Any] = field(default_factory=dict)
    batch: Batch = field(default_factory=Batch)

    @property
    def enabled(self) -> bool:
        return self.exporter != "none"

    @property
    def exporters(self) -> tuple[str, ...]:
        """Every exporter of this signal, the first one `exporter` (none: no exporter at all)."""
        return (self.exporter, *self.also) if self.enabled else ()


@dataclass(frozen=True)
class Runtime:
    service_name: str = "unknown_service"
    resource_attributes: Mapping[str, AttributeValue] = field(default_factory=dict)
    traces: SignalRuntime = field(default_factory=SignalRuntime)
    metrics: SignalRuntime = field(default_factory=SignalRuntime)
    logs: SignalRuntime = field(default_factory=SignalRuntime)
    sampler: str = "parentbased_always_on"
    sampler_arg: float | None = None
    propagators: tuple[str, ...] = ("tracecontext", "baggage")
    metric_interval_ms: int = 60000
    metric_timeout_ms: int = 30000
    prometheus_host: str = "localhost"
    prometheus_port: int = 9464
    log_level: str = "INFO"
    shutdown_timeout_ms: int = 2000
    schema_url: str | None = None
    excluded_urls: str = ""
    children: str = "all"
    log_echo: bool = False  # logging.console_echo

    @property
    def environment(self) -> str:
        return str(self.resource_attributes.get("deployment.environment.name", ""))

    def signal(self, name: str) -> SignalRuntime:
        sig: SignalRuntime = getattr(self, name)
        return sig


def parse_pairs(text: str, *, strict: bool = False, decode_keys: bool = True) -> dict[str, str]:
    """OTel's `k=v,k2=v2` (percent-decoded). `strict`: a malformed item is a ValueError, else skipped.

    `decode_keys=False` for OTEL_RESOURCE_ATTRIBUTES: the SDK decodes only the values there (headers:
    names and values), so `k%2Cx=v` is the attribute `k%2Cx` for it, and so for cryostorm."""
    out: dict[str, str] = {}
    items = [item for item in text.split(",") if item.strip()]
    for number, item in enumerate(items, 1):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            if decode_keys:  # headers as the SDK's parse_env_headers reads them: a value of W3C baggage
                # octets is percent-decoded, any other (`Bearer x`) taken as written; then stripped
                encoded = all(char in _BAGGAGE_OCTETS for char in value.strip())
                out[(_unquote(key) if encoded else key).strip()] = (_unquote(value) if encoded else value).strip()
            else:  # resource attributes: stripped, then decoded, as the SDK's OTELResourceDetector has it
                out[key.strip()] = _unquote(value.strip())
        elif strict:
            where = f" (item {number} of {len(items)})" if len(items) > 1 else ""
            raise ValueError(f"expected key=value pairs separated by commas, got {item.strip()!r}{where}")
    return out


_BAGGAGE_OCTETS = frozenset(map(chr, range(0x21, 0x7F))) - frozenset('",;\\')


def _unquote(text: str) -> str:
    if "%" not in text:  # nothing to decode: urllib.parse (with ipaddress) stays out of every process
        return text
    import urllib.parse

    return urllib.parse.unquote(text)


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    return int(float(raw)) if raw else default


def _as_text(value: bool | int | float) -> str:
    """A boolean or number as OTEL_RESOURCE_ATTRIBUTES holds it (as the launcher writes it)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _json(env: Mapping[str, str], name: str) -> dict[str, Any]:
    raw = env.get(name)
    if not raw:
        return {}
    import json

    return dict(json.loads(raw))


# The SDK's OTLP exporter entry points that name their transport: otlp over that protocol.
OTLP_EXPORTER_NAMES = {"otlp_proto_grpc": "grpc", "otlp_proto_http": "http/protobuf"}


def exporter_names(raw: str) -> list[str]:
    """OTEL_<SIGNAL>_EXPORTER's names as the SDK reads them (comma-separated, trimmed, `none` alone: none),
    lower case, each once, `otlp_proto_*` as otlp, OTLP's first (the one `exporter` names: its target is
    what reports show).

    Example:
        >>> exporter_names(" Console, otlp_proto_http ,console"), exporter_names("none"), exporter_names("")
        (['otlp', 'console'], [], [])
    """
    written = (n.strip().lower() for n in raw.split(",") if n.strip())
    names = otlp_first("otlp" if n in OTLP_EXPORTER_NAMES else n for n in written)
    return [] if names == ["none"] else names


def otlp_first(names: Iterable[Name]) -> list[Name]:
    """Each exporter name once, OTLP's first, the others in order (the hook builds them so, and the settings
    list them so: `exporter_type` is the OTLP one when there is one)."""
    return sorted(dict.fromkeys(names), key=lambda n: n != "otlp")


def _named_protocol(raw: str) -> str | None:
    """The protocol an exporter name fixes (`otlp_proto_http`), which wins over *_PROTOCOL, as in the SDK."""
    return next((OTLP_EXPORTER_NAMES[n] for n in (n.strip().lower() for n in raw.split(","))
                 if n in OTLP_EXPORTER_NAMES), None)


def _signal(env: Mapping[str, str], name: str) -> SignalRuntime:
    upper = SIGNAL_NAMES[name]
    var = f"OTEL_EXPORTER_OTLP_{upper}_"

    def get(suffix: str) -> str | None:
        return env.get(var + suffix) or env.get("OTEL_EXPORTER_OTLP_" + suffix)

    written = env.get(f"OTEL_{upper}_EXPORTER") or ""
    exporter, *also = exporter_names(written) or ["none"]
    protocol = _named_protocol(written) or get("PROTOCOL") or "grpc"
    endpoint = env.get(var + "ENDPOINT") or ""
    if not endpoint:
        base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").rstrip("/")
        default = "http://localhost:4317" if protocol == "grpc" else "http://localhost:4318"
        endpoint = (base or default) + ("" if protocol == "grpc" else f"/v1/{name}")
    insecure = get("INSECURE")
    batch_prefix = {"traces": "OTEL_BSP_", "logs": "OTEL_BLRP_"}.get(name)
    batch = Batch()
    if batch_prefix:
        batch = Batch(
            _int(env, batch_prefix + "SCHEDULE_DELAY", 5000),
            _int(env, batch_prefix + "EXPORT_TIMEOUT", 30000),
            _int(env, batch_prefix + "MAX_EXPORT_BATCH_SIZE", 512),
            _int(env, batch_prefix + "MAX_QUEUE_SIZE", 2048),
            _int(env, f"_CRYOSTORM_{upper}_MAX_BLOCK", 0),
            max(1, _int(env, f"_CRYOSTORM_{upper}_MAX_IN_FLIGHT", 4)),
        )
    return SignalRuntime(
        exporter=exporter,
        also=tuple(also),
        endpoint=endpoint,
        protocol=protocol,
        headers=parse_pairs(get("HEADERS") or ""),
        compression=(get("COMPRESSION") or "none").lower(),
        timeout_s=float(get("TIMEOUT") or 10),
        insecure=None if insecure is None else insecure.strip().lower() == "true",
        certificate=get("CERTIFICATE"),
        client_certificate=get("CLIENT_CERTIFICATE"),
        client_key=get("CLIENT_KEY"),
        exporter_args=_json(env, f"_CRYOSTORM_{upper}_EXPORTER_ARGS"),
        processor=(env.get(f"_CRYOSTORM_{upper}_PROCESSOR") or "batch").lower(),
        processor_args=_json(env, f"_CRYOSTORM_{upper}_PROCESSOR_ARGS"),
        batch=batch,
    )


def runtime_from_env(env: Mapping[str, str]) -> Runtime:
    """Parse the variables written by `cryostorm_run.launch.envmap.env_rows` (standard OTel defaults otherwise)."""
    attrs: dict[str, AttributeValue] = dict(parse_pairs(env.get("OTEL_RESOURCE_ATTRIBUTES", ""), decode_keys=False))
    for key, value in _json(env, "_CRYOSTORM_RESOURCE_TYPED").items():  # a boolean or number set as one
        if isinstance(value, (bool, int, float)) and attrs.get(key) == _as_text(value):
            attrs[key] = value
    arg = env.get("OTEL_TRACES_SAMPLER_ARG")
    propagators = tuple(p.strip() for p in env.get("OTEL_PROPAGATORS", "tracecontext,baggage").split(",") if p.strip())
    return Runtime(
        service_name=env.get("OTEL_SERVICE_NAME") or str(attrs.get("service.name") or "unknown_service"),
        resource_attributes=attrs,
        traces=_signal(env, "traces"),
        metrics=_signal(env, "metrics"),
        logs=_signal(env, "logs"),
        sampler=(env.get("OTEL_TRACES_SAMPLER") or "parentbased_always_on").strip().lower(),
        sampler_arg=float(arg) if arg else None,
        propagators=() if propagators == ("none",) else propagators,
        metric_interval_ms=_int(env, "OTEL_METRIC_EXPORT_INTERVAL", 60000),
        metric_timeout_ms=_int(env, "OTEL_METRIC_EXPORT_TIMEOUT", 30000),
        prometheus_host=env.get("OTEL_EXPORTER_PROMETHEUS_HOST", "localhost"),
        prometheus_port=_int(env, "OTEL_EXPORTER_PROMETHEUS_PORT", 9464),
        log_level=(env.get("_CRYOSTORM_LOG_LEVEL") or "INFO").upper(),
        shutdown_timeout_ms=_int(env, "_CRYOSTORM_SHUTDOWN_TIMEOUT", 2000),
        schema_url=env.get("_CRYOSTORM_SCHEMA_URL") or None,
        excluded_urls=env.get("OTEL_PYTHON_EXCLUDED_URLS", ""),
        children=(env.get("_CRYOSTORM_CHILDREN") or "all").lower(),
        log_echo=(env.get("_CRYOSTORM_LOGS_ECHO") or "").strip().lower() == "true",
    )
