"""Build `TelemetryModel` from every source at once and explain failures by the names the user typed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cryostorm_run.common.words import listed
from cryostorm_run.config.advice import Advice, advise
from cryostorm_run.config.configfile import read_config_file
from cryostorm_run.config.envfile import read_env_file
from cryostorm_run.config.errors import ConfigError
from cryostorm_run.config.explain import explain_errors
from cryostorm_run.config.model import TelemetryModel, redact_userinfo
from cryostorm_run.config.otelfile import read_otel_file
from cryostorm_run.config.otelmap import FileEnv, chosen_file, file_decides
from cryostorm_run.config.sources import (
    DEFAULT,
    DELIMITER,
    PREFIX,
    Entry,
    Origin,
    Path_,
    Problem,
    SourceError,
    environ_entries,
    merge,
    origin_of,
    otel_then_cryostorm,
)
from cryostorm_run.config.tlsfiles import tls_file_problems
from cryostorm_run.config.undecodable import refuse_undecodable


@dataclass(frozen=True)
class Override:
    """A value given on the command line: `flag` as typed, the settings `path`, the value."""

    flag: str
    path: Path_
    value: Any


@dataclass(frozen=True)
class Loaded:
    """Valid settings, where each value came from, and warnings about likely mistakes (see `_advice`)."""

    settings: TelemetryModel
    origins: Mapping[Path_, Origin] = field(default_factory=dict)
    warnings: tuple[Advice, ...] = ()
    # With an OpenTelemetry configuration file: variables the SDK would read that the file replaces,
    # taken out of the program's environment.
    dropped_env: frozenset[str] = frozenset()
    # ... and the variables it sets for the program's SDK (its limits): name → (value, origin).
    file_env: Mapping[str, tuple[str, Origin]] = field(default_factory=dict)

    def origin(self, path: Path_) -> Origin:
        return origin_of(path, self.origins)


def parse_dotted(flag: str, assignment: str) -> Override:
    """`tracing.sample_rate=0.5` → Override; raises ConfigError when malformed."""
    key, sep, value = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError([Problem(flag, assignment, "expected KEY=VALUE, e.g. tracing.sample_rate=0.5")])
    return Override(f"{flag} {key.strip()}", tuple(p.strip().lower() for p in key.split(".")), value)


_CWD = Path()


def _config_file_entries(config_dir: Path | None, unread: list[str]) -> tuple[list[Entry], list[Problem]]:
    if config_dir is None:
        return [], []
    try:
        return read_config_file(config_dir, unread), []
    except SourceError as exc:
        return [], list(exc.problems)


def load_settings(
    environ: Mapping[str, str],
    *,
    env_file: Path | None = None,
    overrides: Sequence[Override] = (),
    config_dir: Path | None = _CWD,
    otel_config: Path | None = None,
) -> Loaded:
    """Validate settings from flags > CRYOSTORM_* > OTEL_* > env file > config file > defaults.

    The config file is `cryostorm.toml` or `pyproject.toml [tool.cryostorm]` in `config_dir`
    (the current directory by default; None: no config file). An OpenTelemetry configuration file
    (`otel_config`, else OTEL_CONFIG_FILE) decides the OpenTelemetry settings over all of these
    (see `config.otelmap`). Raises `ConfigError` listing every problem; `Loaded.warnings` lists
    valid but likely mistaken settings, and each input the file makes ineffective.
    """
    # A setting whose bytes are not UTF-8: refused, and never passed on (it would fail where it is encoded).
    problems, environ = refuse_undecodable(environ)
    unread: list[str] = []
    entries, file_problems = _config_file_entries(config_dir, unread)
    problems += file_problems
    env_values: list[tuple[str, Mapping[str, str]]] = []  # the env file's variables as written (read once)
    if env_file is not None:
        try:
            values = read_env_file(env_file)
            env_values.append((str(env_file), values))
            entries += otel_then_cryostorm(values, "env_file", str(env_file))  # its CRYOSTORM_* outrank its OTEL_*
        except SourceError as exc:
            problems += exc.problems
            entries += exc.entries
    try:
        entries += environ_entries(environ)
    except SourceError as exc:
        problems += exc.problems
        entries += exc.entries
    entries += [Entry(o.path, o.value, Origin("flag", o.flag)) for o in overrides]
    # (code, text): a pyproject.toml not read; the OTel file's own (a newer format minor), and what it overrides
    notes: list[tuple[str, str]] = [("config-file-unreadable", text) for text in unread]
    dropped: frozenset[str] = frozenset()
    file_env: FileEnv = {}
    chosen = chosen_file(environ, otel_config)
    if chosen is not None:
        try:
            entries, file_env, ineffective, dropped = file_decides(found := read_otel_file(chosen[0], environ),
                                                                   entries, environ)
            notes += [("config-file-format-newer", text) for text in found.warnings]
            notes += [("ineffective-with-config-file", text) for text in [*chosen[1], *ineffective]]
        except SourceError as exc:  # named by the input that chose the file
            chooser = "--config-file" if otel_config is not None else "OTEL_CONFIG_FILE"
            problems += [Problem(f"{chooser} {p.name}", p.value, p.message, p.hint)
                         if p.name == str(chosen[0]) else p for p in exc.problems]
    data, origins = merge(entries)
    try:
        settings = TelemetryModel.model_validate(data)
    except ValidationError as exc:
        written = {k: v for _, values in env_values for k, v in values.items()}
        written.update(environ)  # each variable as the user wrote it, to show it so
        problems += explain_errors(exc.errors(include_url=False), data, origins, written)
    else:
        raw = {k: v for _, values in env_values for k, v in values.items()}
        raw.update(environ)  # the OTEL_* values as written (the environment outranks the env file)
        problems += _missing_packages(settings, origins) + _otlp_conflicts(settings, origins, raw)
        problems += tls_file_problems(settings, origins)
    if problems:
        raise ConfigError(_dedupe([_redacted(_in_quotes(p, environ)) for p in problems]), _switched_off(data, origins))
    warnings = [Advice(code, text) for code, text in notes]
    warnings += advise(settings, origins, environ, files=env_values)
    return Loaded(settings, origins, tuple(warnings), dropped, {**_passed_from(env_values, environ), **file_env})


def _passed_from(env_values: Sequence[tuple[str, Mapping[str, str]]], environ: Mapping[str, str]) -> FileEnv:
    """An env file's OpenTelemetry variables that cryostorm passes on as they are (span limits, disabled
    instrumentations, ...): the program gets them, as it would from `docker run --env-file`; the environment's
    own value wins, as for every other setting."""
    from cryostorm_run.config.inventory import rule_for

    found: FileEnv = {}
    for source, values in env_values:
        for name, value in values.items():
            rule = rule_for(name)
            if rule is not None and rule.kind == "passed" and value.strip() and name not in environ:
                found[name] = (value, Origin("env_file", name, source))
    return found


def _switched_off(data: Mapping[str, Any], origins: Mapping[Path_, Origin]) -> str | None:
    """The input that sets `enabled` to a valid false (from any source), as the user wrote it, or None."""
    from pydantic import TypeAdapter

    if "enabled" not in data:
        return None
    try:
        on = TypeAdapter(bool).validate_python(data["enabled"])
    except ValidationError:
        return None
    return None if on else origin_of(("enabled",), origins).describe()


# Settings values that need an optional package: (module to find, pip requirement).
_OPTIONAL = {
    "b3": ("opentelemetry.propagators.b3", "opentelemetry-propagator-b3"),
    "b3multi": ("opentelemetry.propagators.b3", "opentelemetry-propagator-b3"),
    "jaeger": ("opentelemetry.propagators.jaeger", "opentelemetry-propagator-jaeger"),
    "prometheus": ("opentelemetry.exporter.prometheus", "opentelemetry-exporter-prometheus"),
    # declared by cryostorm-run: missing only after an install with --no-deps (then said before the program runs)
    "otlp over grpc": ("opentelemetry.exporter.otlp.proto.grpc.exporter", "opentelemetry-exporter-otlp-proto-grpc"),
    "otlp over http/protobuf": ("opentelemetry.exporter.otlp.proto.http", "opentelemetry-exporter-otlp-proto-http"),
}


def _install_hint(requirement: str) -> str:
    """`pip install <requirement>` that keeps the installed SDK, for a package that requires one SDK line
    (the Prometheus exporter): pip picks the release made for it, instead of the newest (which would
    upgrade the SDK) or a version guessed from another package's."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"pip install {requirement} 'opentelemetry-sdk=={version('opentelemetry-sdk')}'"
    except PackageNotFoundError:
        return f"pip install {requirement}"


def _missing_packages(settings: TelemetryModel, origins: Mapping[Path_, Origin]) -> list[Problem]:
    """A setting that names a component whose package is not installed is refused before exec."""
    import importlib.util

    wanted: list[tuple[Path_, str]] = []
    if settings.propagation.enabled:
        wanted += [(("propagation", "propagator_types"), p.value) for p in settings.propagation.propagator_types]
    from cryostorm_run.config.enums import ExporterType
    from cryostorm_run.launch.envmap import SIGNALS, effective_exporters, effective_protocol

    for signal in SIGNALS:  # the OTLP exporter of the protocol each signal uses, named by what chose OTLP
        if ExporterType.OTLP in effective_exporters(settings, signal):
            chose = (signal, "exporter_type") if getattr(settings, signal).exporter_type else ("exporter_type",)
            wanted.append((chose, f"otlp over {effective_protocol(settings, signal).value}"))
    if ExporterType.PROMETHEUS in effective_exporters(settings, "metrics"):
        path: Path_ = ("metrics", "exporter_type") if settings.metrics.exporter_type else ("exporter_type",)
        if ExporterType.PROMETHEUS in settings.metrics.also_export_to:
            path = ("metrics", "also_export_to")
        wanted.append((path, "prometheus"))
    problems = []
    for path, value in dict.fromkeys(wanted):  # a protocol once, however many signals use it
        if value not in _OPTIONAL:
            continue
        module, requirement = _OPTIONAL[value]
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            origin = origin_of(path, origins)
            name = origin.describe() if origin is not DEFAULT else PREFIX + DELIMITER.join(p.upper() for p in path)
            shown = "otlp" if value.startswith("otlp") else value
            problems.append(Problem(name, shown, f"{value!r} needs a package that is not installed",
                                    _install_hint(requirement) if value == "prometheus" or shown == "otlp" else
                                    f"pip install {requirement}"))
    return problems


def _in_quotes(problem: Problem, environ: Mapping[str, str]) -> Problem:
    """A refused variable whose value is wrapped in quotes: the quotes are the likely fault, so said first."""
    from cryostorm_run.config.advice import quote_kept

    kept = quote_kept(environ.get(problem.name, ""))
    if not kept:
        return problem
    return Problem(problem.name, problem.value, problem.message,
                   f"{kept}: write it without them" + (f"; {problem.hint}" if problem.hint else ""))


def _redacted(problem: Problem) -> Problem:
    """A collector URL quoted in a problem never shows its user:password@."""
    value = None if problem.value is None else redact_userinfo(problem.value)
    return Problem(problem.name, value, redact_userinfo(problem.message), redact_userinfo(problem.hint))


def _name(path: Path_, origins: Mapping[Path_, Origin]) -> str:
    origin = origin_of(path, origins)
    return origin.describe() if origin is not DEFAULT else PREFIX + DELIMITER.join(p.upper() for p in path)


def _otlp_conflicts(settings: TelemetryModel, origins: Mapping[Path_, Origin], raw: Mapping[str, str]) -> list[Problem]:
    """OTLP inputs that cannot all mean what they say: refused rather than one silently dropped."""
    from cryostorm_run.config.enums import ExporterType, OtlpProtocol
    from cryostorm_run.launch.envmap import SIGNALS, effective_exporters, effective_protocol

    problems = []
    doubled: dict[tuple[str, str], list[str]] = {}  # (URL input, headers input) -> the signals that meet both
    for signal in SIGNALS:
        if ExporterType.OTLP not in effective_exporters(settings, signal):
            continue
        own = getattr(settings, signal)
        collector_path: Path_ = (signal, "collector") if own.collector is not None else ("collector",)
        headers_path: Path_ = (signal, "headers") if own.headers is not None else ("otlp", "headers")
        headers = own.headers if own.headers is not None else settings.otlp.headers
        collector = own.collector or settings.collector
        if collector.username is not None and any(k.lower() == "authorization" for k in headers):
            doubled.setdefault((_name(collector_path, origins), _name(headers_path, origins)), []).append(
                SIGNALS[signal][0].lower())
        endpoint_var = f"OTEL_EXPORTER_OTLP_{SIGNALS[signal][0]}_ENDPOINT"
        written = raw.get(endpoint_var, "").strip().rstrip("/")
        if (effective_protocol(settings, signal) is OtlpProtocol.HTTP_PROTOBUF and written
                and origin_of((signal, "collector"), origins).name == endpoint_var
                and not written.endswith(SIGNALS[signal][1])):
            # The OTLP/HTTP exporter posts to a per-signal URL as it is; cryostorm adds /v1/<signal>.
            problems.append(Problem(
                _name((signal, "collector"), origins), None,
                f"the OTLP/HTTP exporter uses this URL as it is, but it does not end in {SIGNALS[signal][1]}, "
                f"which cryostorm adds to a collector URL",
                f"write the full URL ending in {SIGNALS[signal][1]}, or set the base URL in "
                f"OTEL_EXPORTER_OTLP_ENDPOINT"))
        if effective_protocol(settings, signal) is not OtlpProtocol.GRPC:
            continue
        # The OTLP/gRPC exporter takes its CA bundle and client pair together: the signal's own when
        # it has its own certificate, else the general ones. A file that would be ignored is refused.
        if own.certificate_file is None and own.client_certificate_file is not None:
            problems.append(Problem(
                _name((signal, "client_certificate_file"), origins), None,
                "ignored by the OTLP/gRPC exporter without a certificate for the same signal",
                f"also set the signal's certificate (OTEL_EXPORTER_OTLP_{SIGNALS[signal][0]}_CERTIFICATE)"))
        if own.certificate_file is not None and own.client_certificate_file is None \
                and settings.otlp.client_certificate_file is not None:
            problems.append(Problem(
                _name(("otlp", "client_certificate_file"), origins), None,
                f"ignored by the OTLP/gRPC exporter for {SIGNALS[signal][0].lower()}, which has its own certificate "
                f"({_name((signal, 'certificate_file'), origins)}) and no client certificate of its own",
                f"set OTEL_EXPORTER_OTLP_{SIGNALS[signal][0]}_CLIENT_CERTIFICATE and _CLIENT_KEY too"))
    # One problem per pair of inputs, naming every signal it touches (not the same lines once per signal)
    return [Problem(url, None, f"the URL's user:password@ becomes an Authorization: Basic header for "
                               f"{listed(signals)}, but {header} sets an authorization header too",
                    "keep one of them: remove the credentials from the URL or the authorization header")
            for (url, header), signals in doubled.items()] + problems


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen: set[tuple[str, str]] = set()
    unique = []
    for p in problems:
        if (p.name, p.message) not in seen:
            seen.add((p.name, p.message))
            unique.append(p)
    return unique
