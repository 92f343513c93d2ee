"""Warnings for configurations that are valid but almost certainly not what was meant.

Pure Python over (settings, origins, environment): `check-config` prints these, and so does the
`--` run path before exec, which must stay free of typer and rich. A warning names the input as
the user wrote it (`OTEL_EXPORTER_OTLP_ENDPOINT`, `--set otlp.headers`, ...) and says what to do;
it never shows a header value or the value of an unknown variable (either may be a secret).

Example:
    >>> from cryostorm_run import TelemetrySettings
    >>> [str(a) for a in advise(TelemetrySettings(), {}, {"OTEL_EXPORTER_OTLP_ENDPIONT": "x"})]  # doctest: +ELLIPSIS
    ['OTEL_EXPORTER_OTLP_ENDPIONT is not an OpenTelemetry variable ... (did you mean OTEL_EXPORTER_OTLP_ENDPOINT?)']
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from cryostorm_run.config.enums import ExporterType, OtlpProtocol, SamplingStrategy
from cryostorm_run.config.inventory import INVENTORY, rule_for
from cryostorm_run.config.model import TelemetryModel
from cryostorm_run.config.sources import DEFAULT, DELIMITER, OTEL_TABLE, PREFIX, Origin, Path_, origin_of
from cryostorm_run.config.timeouts import seconds_meant_as_millis
from cryostorm_run.launch.envmap import (
    SIGNALS,
    effective_collector,
    effective_exporter,
    effective_exporters,
    effective_protocol,
    signal_endpoint,
)

__all__ = ["Advice", "advise", "is_known_otel_name", "quote_kept"]


@dataclass(frozen=True)
class Advice:
    """One warning: a stable `code` for machines and the `message` for people."""

    code: str
    message: str

    def __post_init__(self) -> None:  # it may quote values: made safe to show (see common.shown)
        from cryostorm_run.common.shown import clean

        object.__setattr__(self, "message", clean(self.message, 1000))

    def __str__(self) -> str:
        return self.message


# -- the OTEL_* names OpenTelemetry Python (SDK, exporters, contrib) reads: config.inventory -------

# Concrete spellings of the per-library families, so a typo in one still gets a suggestion.
_PATTERN_EXAMPLES = [f"OTEL_PYTHON_{lib}_EXCLUDED_URLS" for lib in (
    "DJANGO", "FALCON", "FASTAPI", "FLASK", "PYRAMID", "STARLETTE", "TORNADO", "REQUESTS", "URLLIB", "URLLIB3",
    "HTTPX", "AIOHTTP_CLIENT", "AIOHTTP_SERVER", "ASGI", "WSGI")]
KNOWN_OTEL = frozenset(INVENTORY) | frozenset(OTEL_TABLE) | frozenset(_PATTERN_EXAMPLES)


def is_known_otel_name(name: str) -> bool:
    """True for an `OTEL_*` variable OpenTelemetry Python reads (exact names and per-library families)."""
    return name in KNOWN_OTEL or rule_for(name) is not None


# -- the checks ----------------------------------------------------------------------------------

Sources = Sequence[tuple[str | None, Mapping[str, str]]]


@dataclass(frozen=True)
class _Context:
    settings: TelemetryModel
    origins: Mapping[Path_, Origin]
    environ: Mapping[str, str]
    sources: Sources  # (file name or None for the environment, its variables)

    def origin(self, path: Path_) -> Origin:
        return origin_of(path, self.origins)

    def otlp_signals(self) -> list[str]:
        return [s for s in SIGNALS if ExporterType.OTLP in effective_exporters(self.settings, s)]


def _env_name(path: Path_) -> str:
    return PREFIX + DELIMITER.join(p.upper() for p in path)


def _signal_word(signal: str) -> str:
    return SIGNALS[signal][0].lower()


def _words(signals: Sequence[str]) -> str:
    return ", ".join(_signal_word(s) for s in signals)


def _collector_path(settings: TelemetryModel, signal: str) -> Path_:
    return (signal, "collector") if getattr(settings, signal).collector is not None else ("collector",)


def _unknown_otel(ctx: _Context) -> Iterator[Advice]:
    for file, variables in ctx.sources:
        for name in sorted(variables):
            if not name.startswith("OTEL_") or is_known_otel_name(name):
                continue
            where = f"{name} in {file}" if file else name
            close = difflib.get_close_matches(name, sorted(KNOWN_OTEL), n=1, cutoff=0.8)
            hint = f"did you mean {close[0]}?" if close else "check the spelling"
            yield Advice("unknown-otel-variable", f"{where} is not an OpenTelemetry variable and is ignored ({hint})")


def _name_case(ctx: _Context) -> Iterator[Advice]:
    """`otel_service_name`: ignored by OpenTelemetry and by cryostorm, which read OTEL_* names as the SDK does,
    case-sensitively (a Helm values file or a .env written in lower case). CRYOSTORM_* names are read in any case."""
    for file, variables in ctx.sources:
        for name in sorted(variables):
            upper = name.upper()
            if upper != name and upper.startswith("OTEL_"):
                where = f"{name} in {file}" if file else name
                yield Advice("variable-name-case", f"{where} is ignored: OpenTelemetry's variable names are "
                             f"upper case (did you mean {upper}?)")


def _port_mismatch(ctx: _Context) -> Iterator[Advice]:
    wrong = {OtlpProtocol.GRPC: (4318, "gRPC", "the OTLP/HTTP port", 4317, "http/protobuf"),
             OtlpProtocol.HTTP_PROTOBUF: (4317, "http/protobuf", "the OTLP/gRPC port", 4318, "grpc")}
    groups: dict[tuple[Path_, OtlpProtocol], list[str]] = {}
    for signal in ctx.otlp_signals():
        protocol = effective_protocol(ctx.settings, signal)
        if effective_collector(ctx.settings, signal).port == wrong[protocol][0]:
            groups.setdefault((_collector_path(ctx.settings, signal), protocol), []).append(signal)
    for (path, protocol), signals in groups.items():
        port, label, what, right, other = wrong[protocol]
        source = ctx.origin((*path, "port")).describe()
        yield Advice("port-protocol-mismatch",
                     f"{_words(signals)} export with {label} to port {port}, {what} (port from {source}): "
                     f"use port {right}, or set otlp.protocol={other}")


def _insecure_ignored(ctx: _Context) -> Iterator[Advice]:
    """The gRPC exporter's `insecure` decides only for an http:// URL (false: TLS there too); an https:// URL is
    TLS whatever it says. Either contradiction reads as plaintext-wanted-but-TLS-used, found only at runtime."""
    from cryostorm_run.launch.envmap import _chosen

    groups: dict[tuple[str, bool], list[str]] = {}
    for signal in ctx.otlp_signals():
        insecure, field = _chosen(ctx.settings, signal, "insecure")
        if insecure is None or effective_protocol(ctx.settings, signal) is not OtlpProtocol.GRPC:
            continue
        if (effective_collector(ctx.settings, signal).protocol == "https") == insecure:  # true+https, false+http
            groups.setdefault((field, insecure), []).append(signal)
    for (field, insecure), signals in groups.items():
        where = ctx.origin(tuple(field.split("."))).describe()
        yield Advice("insecure-ignored", f"{field}=true (from {where}) has no effect on {_words(signals)}: an "
                     "https:// collector URL is always TLS; for plaintext use an http:// URL" if insecure else
                     f"{field}=false (from {where}) makes {_words(signals)} use TLS with an http:// collector URL: "
                     "write https:// if TLS is meant, or unset it for plaintext")


def _through_a_proxy(ctx: _Context) -> Iterator[Advice]:
    from cryostorm_run.common.shown import mask_url
    from cryostorm_run.config.proxies import proxy_for

    groups: dict[tuple[str, str, str], list[str]] = {}
    for signal in ctx.otlp_signals():
        collector, grpc = effective_collector(ctx.settings, signal), effective_protocol(
            ctx.settings, signal) is OtlpProtocol.GRPC
        found = proxy_for(collector.host, collector.protocol, grpc, ctx.environ)
        if found is not None:
            groups.setdefault((f"{collector.host}:{collector.port or ''}".rstrip(":"), *found), []).append(signal)
    for (where, variable, proxy), signals in groups.items():
        yield Advice("collector-through-proxy", f"{_words(signals)} go to {where} through the proxy "
                     f"{mask_url(proxy)} ({variable} is set and no_proxy does not name {where.rsplit(':', 1)[0]}): "
                     "a refusal or a failure of the proxy will be told as the collector's; if the collector is "
                     "reached directly, add its host to no_proxy (lower case: gRPC reads no other)")


def _path_problems(ctx: _Context) -> Iterator[Advice]:
    grpc: dict[Path_, list[str]] = {}
    doubled: dict[Path_, list[str]] = {}
    for signal in ctx.otlp_signals():
        path = _collector_path(ctx.settings, signal)
        collector = effective_collector(ctx.settings, signal)
        if not collector.path:
            continue
        if effective_protocol(ctx.settings, signal) is OtlpProtocol.GRPC:
            grpc.setdefault(path, []).append(signal)
        elif any(collector.path.endswith(p) for _, p in SIGNALS.values()):
            doubled.setdefault(path, []).append(signal)
    for path, signals in grpc.items():
        collector = effective_collector(ctx.settings, signals[0])
        yield Advice("grpc-path-ignored",
                     f"collector path {collector.path} is ignored by gRPC ({_words(signals)}; from "
                     f"{ctx.origin((*path, 'path')).describe()}): gRPC exports go to "
                     f"{signal_endpoint(ctx.settings, signals[0])}; remove the path, or set "
                     "otlp.protocol=http/protobuf")
    for path, signals in doubled.items():
        collector = effective_collector(ctx.settings, signals[0])
        suffix = collector.path[collector.path.rfind("/v1/"):]
        base = collector.base_url(OtlpProtocol.HTTP_PROTOBUF)
        yield Advice("http-path-has-signal",
                     f"HTTP collector URL {base} already ends in {suffix} (from "
                     f"{ctx.origin((*path, 'path')).describe()}): cryostorm adds /v1/<signal>, so "
                     f"{_signal_word(signals[0])} go to {signal_endpoint(ctx.settings, signals[0])}; "
                     f"use the base URL {base[: -len(suffix)]}")


def _timeout_in_millis(ctx: _Context) -> Iterator[Advice]:
    for message in seconds_meant_as_millis(ctx.settings, ctx.origins):
        yield Advice("timeout-looks-like-millis", message)


def _endpoint_unused(ctx: _Context) -> Iterator[Advice]:
    s = ctx.settings
    for path in [("collector",), *((sig, "collector") for sig in SIGNALS)]:
        origin = ctx.origin(path)
        if origin is DEFAULT:
            continue
        users = [sig for sig in SIGNALS if _collector_path(s, sig) == path
                 and effective_exporter(s, sig) is not ExporterType.NONE]
        if not users or any(ExporterType.OTLP in effective_exporters(s, sig) for sig in users):
            continue
        kinds = ", ".join(f"{_signal_word(sig)}: {effective_exporter(s, sig).value}" for sig in users)
        target = (*path[:-1], "exporter_type")
        fix = f"{_env_name(target)}=otlp" + (" (or --exporter otlp)" if target == ("exporter_type",) else "")
        yield Advice("endpoint-without-otlp",
                     f"{'.'.join(path)} is set (from {origin.describe()}) but no signal using it exports with "
                     f"OTLP ({kinds}): set {fix} to send telemetry there")


def _console_beside_otlp(ctx: _Context) -> Iterator[Advice]:
    """Some signals chosen to go over OTLP (OTEL_TRACES_EXPORTER=otlp, as for opentelemetry-instrument), the
    others left to the default, console: their telemetry is written on the program's stderr, where the
    opentelemetry-distro would have sent it over OTLP too."""
    s = ctx.settings
    if ctx.origin(("exporter_type",)) is not DEFAULT:
        return
    chosen = [sig for sig in SIGNALS if ExporterType.OTLP in effective_exporters(s, sig)]
    left = [sig for sig in SIGNALS if ctx.origin((sig, "exporter_type")) is DEFAULT and getattr(s, sig).enabled
            and effective_exporters(s, sig) == [ExporterType.CONSOLE]]
    if chosen and left:
        fix = " and ".join(f"OTEL_{SIGNALS[sig][0]}_EXPORTER=otlp" for sig in left)
        yield Advice("console-beside-otlp",
                     f"{' and '.join(_signal_word(sig) for sig in left)} go to the default exporter, console (written "
                     f"on the program's stderr), while {' and '.join(_signal_word(sig) for sig in chosen)} go over "
                     f"OTLP: set {fix} to send them there too (or CRYOSTORM_EXPORTER_TYPE=otlp for every signal), "
                     "or =none to turn them off")


def _headers_on_command_line(ctx: _Context) -> Iterator[Advice]:
    flags = sorted({o.describe() for p, o in ctx.origins.items() if o.kind == "flag" and len(p) > 1
                    and p[1] == "headers" and p[0] in ("otlp", "tracing", "metrics", "logging")})  # and per signal
    if flags:
        yield Advice("headers-on-command-line",
                     f"OTLP headers given on the command line ({', '.join(flags)}) are visible to other users "
                     "(ps, /proc) and kept in shell history: put them in CRYOSTORM_OTLP__HEADERS or an "
                     "--env-file instead")


def _ca_bundle_overrides(ctx: _Context) -> Iterator[Advice]:
    certificate = ctx.settings.otlp.certificate_file
    http = [s for s in ctx.otlp_signals() if effective_protocol(ctx.settings, s) is OtlpProtocol.HTTP_PROTOBUF]
    if certificate is None or not http:
        return
    names = [n for n in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE") if ctx.environ.get(n)
             and ctx.environ[n] != str(certificate)]
    if names:
        origin = ctx.origin(("otlp", "certificate_file")).describe()
        yield Advice("ca-bundle-overrides-certificate",
                     f"{' and '.join(names)} {'is' if len(names) == 1 else 'are'} set: the OTLP/HTTP exporter "
                     f"(requests) verifies the collector with it instead of otlp.certificate_file (from {origin}); "
                     f"unset {names[0]} for the program, or point it at the same CA bundle")


_RATIO = (SamplingStrategy.TRACE_ID_RATIO, SamplingStrategy.PARENT_BASED_TRACE_ID_RATIO)


def _sample_rate_unused(ctx: _Context) -> Iterator[Advice]:
    tracing = ctx.settings.tracing
    origin = ctx.origin(("tracing", "sample_rate"))
    if origin is DEFAULT or tracing.sampling_strategy in _RATIO or not tracing.enabled:
        return
    yield Advice("sample-rate-unused",
                 f"tracing.sample_rate={tracing.sample_rate:g} (from {origin.describe()}) has no effect with "
                 f"sampling strategy {tracing.sampling_strategy.value}: set tracing.sampling_strategy to "
                 "parentbased_traceidratio or traceidratio")


def _default_service_name(ctx: _Context) -> Iterator[Advice]:
    if ctx.otlp_signals() and ctx.origin(("service", "name")) is DEFAULT:
        yield Advice("default-service-name",
                     f'service.name is not set: telemetry is exported as "{ctx.settings.service.name}"; set '
                     "CRYOSTORM_SERVICE__NAME, OTEL_SERVICE_NAME or --service-name")


def _identity_whitespace(ctx: _Context) -> Iterator[Advice]:
    """A service's name, version or environment with a line break or space at an end: most often a value read
    from a file (a Kubernetes Secret or ConfigMap made with --from-file) that kept its last line break. It is
    exported as it is (OpenTelemetry keeps it), so the backend shows another service than the one meant."""
    service = ctx.settings.service
    for field, value in (("name", service.name), ("version", service.version), ("environment", service.environment)):
        if isinstance(value, str) and value != value.strip():
            origin = ctx.origin(("service", field))
            yield Advice("service-identity-whitespace",
                         f"service.{field} {value!r} (from {origin.describe()}) begins or ends with a space or a "
                         f"line break (a value read from a file?): telemetry is exported under exactly that; "
                         f"set it to {value.strip()!r}")


_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-[^}]*)?\}")


def _unexpanded_reference(ctx: _Context) -> Iterator[Advice]:
    """`$(POD_NAME)` or `${POD_NAME}` as text: Kubernetes expands `$(NAME)` only from variables listed above it,
    nothing in a container expands `${NAME}`. Names the references, never the value (it may be a secret)."""
    for file, variables in ctx.sources:
        for name in sorted(variables):
            if not name.startswith(("OTEL_", PREFIX)):
                continue
            found = list(dict.fromkeys(match.group(0) for match in _REFERENCE.finditer(variables[name])))
            if not found:
                continue
            where = f"{name} in {file}" if file else name
            kube = [ref for ref in found if ref.startswith("$(")]
            why = (f"Kubernetes expands $(NAME) in an env: value only from variables defined above it in the "
                   f"container's env: list, so define {' and '.join(ref[2:-1] for ref in kube)} above {name}"
                   if kube else "nothing expanded it (no shell runs in an exec-form ENTRYPOINT or a Kubernetes "
                   "env: value, where a reference is written $(NAME) and defined above)")
            yield Advice("unexpanded-reference", f"{where} holds {' and '.join(found)} as written: {why}; "
                         "until then it is used as that text")


def quote_kept(value: str) -> str:
    """What to say of a variable's value wrapped in quotes ("" when it is not): `docker run --env-file` and
    compose's `- NAME="value"` list form keep them as part of the value (a shell or a dotenv reader would not)."""
    if len(value) < 2 or value[0] not in "\"'" or value[-1] != value[0]:
        return ""
    kind = "double" if value[0] == '"' else "single"
    return (f"its {kind} quotes are part of the value, as docker run --env-file and compose's `- NAME=\"value\"` "
            "list keep them")


def _quoted(ctx: _Context) -> Iterator[Advice]:
    for name in sorted(ctx.environ):  # never the value: it may be a secret
        kept = quote_kept(ctx.environ[name]) if name.startswith(("OTEL_", PREFIX)) else ""
        if kept:
            yield Advice("quoted-value", f"{name}: {kept}: it is used with them; write it without them")


CHECKS: dict[str, Callable[[_Context], Iterator[Advice]]] = {
    "unknown-otel-variable": _unknown_otel,
    "variable-name-case": _name_case,
    "port-protocol-mismatch": _port_mismatch,
    "path": _path_problems,
    "insecure-ignored": _insecure_ignored,
    "collector-through-proxy": _through_a_proxy,
    "timeout-looks-like-millis": _timeout_in_millis,
    "endpoint-without-otlp": _endpoint_unused,
    "console-beside-otlp": _console_beside_otlp,
    "headers-on-command-line": _headers_on_command_line,
    "ca-bundle-overrides-certificate": _ca_bundle_overrides,
    "sample-rate-unused": _sample_rate_unused,
    "default-service-name": _default_service_name,
    "service-identity-whitespace": _identity_whitespace,
    "unexpanded-reference": _unexpanded_reference,
    "quoted-value": _quoted,
}


def advise(
    settings: TelemetryModel,
    origins: Mapping[Path_, Origin],
    environ: Mapping[str, str],
    *,
    files: Sequence[tuple[str, Mapping[str, str]]] = (),
) -> list[Advice]:
    """Every warning for these (valid) settings, in a stable order.

    `environ` is the environment the settings were read from; `files` are the dotenv files read
    too, as (name, variables), so their misspelt `OTEL_*` names are caught as well.
    """
    ctx = _Context(settings, origins, environ, [(None, environ), *files])
    # Disabled (`cryostorm-run -- CMD` is a plain exec): only what is wrong whatever the settings.
    always = ("unknown-otel-variable", "variable-name-case", "headers-on-command-line")
    checks = CHECKS if settings.enabled else {name: CHECKS[name] for name in always}
    return [advice for check in checks.values() for advice in check(ctx)]
