"""An OpenTelemetry configuration file → cryostorm settings, or a refusal naming what cannot be honoured.

cryostorm reads the file in the launcher and builds the program's providers from the settings it maps to,
with cryostorm's own exporters and processors: bounded exit, drop accounting, fork handling and loss
reports hold for a file-configured program as for any other. What the file says that cryostorm cannot do
(a second OTLP processor per signal, views, a composite sampler, ...) is refused with exit 2, never ignored.

The file decides every setting in `GOVERNED`: a value for one of them from a flag, CRYOSTORM_*, OTEL_*,
an env file or cryostorm.toml has no effect, and loading reports it (see `config.loading`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from cryostorm_run.config.otelfile import Key, OtelFile
from cryostorm_run.config.otelmapper import Mapper, one
from cryostorm_run.config.otelspec import BATCH_DEFAULTS, LIMITS, typed_attribute
from cryostorm_run.config.sources import Entry, Origin, Path_, Problem, SourceError, _endpoint

__all__ = ["GOVERNED", "SUPERSEDED_ENV", "FileEnv", "chosen_file", "file_decides", "governed", "otel_file_entries"]

_SIGNALS = {"tracer_provider": ("tracing", "traces"), "meter_provider": ("metrics", "metrics"),
            "logger_provider": ("logging", "logs")}
_OTLP_FIELDS = ("exporter_type", "collector", "protocol", "headers", "compression", "timeout_millis", "insecure",
                "certificate_file", "client_certificate_file", "client_key_file")
_BATCH = {"schedule_delay": "schedule_delay_millis", "export_timeout": "timeout_millis",
          "max_queue_size": "max_queue_size", "max_export_batch_size": "batch_size"}
_LOG_OVERRIDES = ("schedule_delay_millis", "max_export_batch_size", "export_timeout_millis", "max_queue_size")

# Settings the file decides (a path and everything beneath it). Not here, cryostorm's own: the exit budget,
# children, FastAPI mode, excluded paths, log level, queue blocking and in-flight requests.
GOVERNED: tuple[Path_, ...] = (
    ("enabled",), ("service", "name"), ("service", "version"), ("service", "environment"),
    ("service", "additional_attributes"), ("schema_url",), ("exporter_type",), ("collector",), ("otlp",),
    ("propagation",),
    *((signal, f) for signal in ("tracing", "metrics", "logging") for f in ("enabled", *_OTLP_FIELDS)),
    ("tracing", "processor_type"), ("tracing", "sampling_strategy"), ("tracing", "sample_rate"),
    ("logging", "processor_type"), *(("logging", f) for f in _LOG_OVERRIDES),
    *((signal, "export_config", f) for signal in ("tracing", "logging") for f in _BATCH.values()),
    ("metrics", "export_interval_millis"), ("metrics", "export_timeout_millis"),
    ("metrics", "prometheus_host"), ("metrics", "prometheus_port"),
)
# Variables the SDK would read in the program (cryostorm passes them on): the file replaces them, so the
# launcher drops them from the program's environment and reports each one set.
SUPERSEDED_ENV = frozenset({
    *(name for names in LIMITS.values() for name in names.values()), "OTEL_METRICS_EXEMPLAR_FILTER",
    "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION",
})


def governed(path: Path_) -> bool:
    """Does the file decide `path` (or something beneath it)?"""
    return any(path[: len(g)] == g or g[: len(path)] == path for g in GOVERNED)


_RESOURCE = {"service.name": ("service", "name"), "service.version": ("service", "version")}
_ENVIRONMENTS = frozenset({"development", "staging", "production"})
_SAMPLERS = {"always_on": "always_on", "always_off": "always_off", "trace_id_ratio_based": "traceidratio"}
_PROPAGATORS = frozenset({"tracecontext", "baggage", "b3", "b3multi"})
_EXPORTERS = {"otlp_grpc": "grpc", "otlp_http": "http/protobuf"}


def _resource(m: Mapper, node: Mapping[str, Any]) -> None:
    from cryostorm_run.common.runtime import parse_pairs

    at: Key = ("resource",)
    m.only(node, at, {"attributes", "attributes_list", "schema_url"}, "resource")
    pairs: list[tuple[str, Any, Key]] = []
    if node.get("attributes_list"):
        try:
            listed = parse_pairs(node["attributes_list"], strict=True)
        except ValueError as exc:
            m.problems.append(Problem(m.found.where((*at, "attributes_list")), None, str(exc)))
            listed = {}
        pairs += [(k, v, (*at, "attributes_list")) for k, v in listed.items()]
    for index, item in enumerate(node.get("attributes") or ()):  # attributes win over attributes_list (spec)
        if isinstance(item["value"], list) or item["value"] is None:
            m.refuse((*at, "attributes", index, "value"), "array and null attribute values")
            continue
        value = typed_attribute(item["value"], item.get("type") or "string")  # "If omitted, string is used."
        if value is None:
            m.problems.append(Problem(m.found.where((*at, "attributes", index, "value")), None,
                                      f"the value {item['value']!r} is not of its type {item.get('type') or 'string'}",
                                      "make the value match .type, as the schema asks (or change the type)"))
            continue
        pairs.append((item["name"], value, (*at, "attributes", index)))
    extra: dict[str, Any] = {}
    for key, value, where in pairs:
        if key in _RESOURCE:
            m.put(_RESOURCE[key], str(value), where)
        elif key in ("deployment.environment.name", "deployment.environment") and value in _ENVIRONMENTS:
            m.put(("service", "environment"), value, where)
        else:
            extra[key] = value
    if extra:
        m.put(("service", "additional_attributes"), extra, (*at, "attributes"))
    if node.get("schema_url"):
        m.put(("schema_url",), node["schema_url"], (*at, "schema_url"))


def _propagator(m: Mapper, node: Mapping[str, Any] | None) -> None:
    at: Key = ("propagator",)
    if node is None:
        m.put(("propagation", "enabled"), False, (), " (no propagator: none, as the spec says)")
        return
    names: list[str] = []
    for index, item in enumerate(node.get("composite") or ()):
        names.append(one(item)[0])
        if names[-1] not in _PROPAGATORS:
            m.refuse((*at, "composite", index), f"propagator {names[-1]!r}", f"use {', '.join(sorted(_PROPAGATORS))}")
    for name in (n.strip() for n in (node.get("composite_list") or "").split(",")):
        if name and name not in names:
            names.append(name)
            if name not in _PROPAGATORS and name != "none":
                m.refuse((*at, "composite_list"), f"propagator {name!r}", f"use {', '.join(sorted(_PROPAGATORS))}")
    names = [n for n in names if n != "none"]
    if names:
        m.put(("propagation", "propagator_types"), names, at)
    else:
        m.put(("propagation", "enabled"), False, at)


def _sampler(m: Mapper, node: Mapping[str, Any], at: Key) -> None:
    kind, body = one(node)
    prefix = ""
    if kind == "parent_based":
        m.only(body, (*at, kind), {"root"}, "parent_based (cryostorm keeps the default for each parent case)")
        if "root" not in body:
            m.put(("tracing", "sampling_strategy"), "parentbased_always_on", (*at, kind))
            return
        prefix, at = "parentbased_", (*at, kind, "root")
        kind, body = one(body["root"])
    if kind not in _SAMPLERS:
        m.refuse((*at, kind), f"sampler {kind!r}" + (" as parent_based root" if prefix else ""),
                 f"use {', '.join(_SAMPLERS)}" + ("" if prefix else " or parent_based"))
        return
    m.put(("tracing", "sampling_strategy"), prefix + _SAMPLERS[kind], (*at, kind))
    if kind == "trace_id_ratio_based":
        ratio = body.get("ratio")
        m.put(("tracing", "sample_rate"), 1.0 if ratio is None else ratio, (*at, kind, "ratio"))


def _exporter(m: Mapper, signal: str, path_word: str, node: Mapping[str, Any], at: Key, also: bool = False) -> None:
    """`also`: a copy's Prometheus exporter (its host and port; `_copies` names it in also_export_to)."""
    kind, body = one(node)
    at = (*at, kind)
    if kind == "console":
        m.put((signal, "exporter_type"), "console", at)
        return
    if kind == "prometheus/development" and signal == "metrics":
        m.only(body, at, {"host", "port"}, "the prometheus exporter")
        if not also:
            m.put((signal, "exporter_type"), "prometheus", at)
        for key in ("host", "port"):
            if body.get(key) is not None:
                m.put((signal, f"prometheus_{key}"), body[key], (*at, key))
        return
    if kind not in _EXPORTERS:
        m.refuse(at, f"exporter {kind!r}", "use otlp_grpc, otlp_http or console (and send to a collector that "
                 "forwards to it)")
        return
    m.put((signal, "exporter_type"), "otlp", at)
    m.put((signal, "protocol"), _EXPORTERS[kind], at)
    m.only(body, at, {"endpoint", "headers", "headers_list", "compression", "timeout", "tls", "encoding",
                      "temporality_preference", "default_histogram_aggregation"}, f"the {kind} exporter")
    if body.get("endpoint"):
        signal_path = f"/v1/{path_word}" if kind == "otlp_http" else None
        url = str(body["endpoint"]).strip().rstrip("/")
        if signal_path and not url.endswith(signal_path):
            m.refuse((*at, "endpoint"), f"an otlp_http endpoint not ending in {signal_path}",
                     f"write the full URL, e.g. http://collector:4318{signal_path}")
        else:
            try:
                for path, value in _endpoint((signal, "collector"), signal_path)(url):
                    m.put(path, value, (*at, "endpoint"))
            except ValueError as exc:
                m.problems.append(Problem(m.found.where((*at, "endpoint")), None, str(exc)))
    _transport(m, signal, body, at)


def _transport(m: Mapper, signal: str, body: Mapping[str, Any], at: Key) -> None:
    from cryostorm_run.common.runtime import parse_pairs

    headers: dict[str, str] = {}
    if body.get("headers_list"):
        try:
            headers.update(parse_pairs(body["headers_list"], strict=True))
        except ValueError as exc:  # its message quotes the bad item, which may be a token pasted alone
            from cryostorm_run.common.shown import mask_pair_values, mask_pairs

            message = mask_pair_values(str(exc), str(body["headers_list"]))
            m.problems.append(Problem(m.found.where((*at, "headers_list")), mask_pairs(str(body["headers_list"])),
                                      message))
    # headers win over headers_list (spec); one whose value is empty (`${API_TOKEN}` unset) is not sent
    headers.update({h["name"]: h["value"] for h in body.get("headers") or ()})
    headers = {name: value for name, value in headers.items() if value}
    if headers:
        m.put((signal, "headers"), headers, (*at, "headers" if body.get("headers") else "headers_list"))
    for key, setting in (("compression", "compression"), ("timeout", "timeout_millis")):
        if body.get(key) is not None:
            m.put_duration((signal, setting), body[key], (*at, key))
    tls = body.get("tls") or {}
    for key, setting in (("ca_file", "certificate_file"), ("cert_file", "client_certificate_file"),
                         ("key_file", "client_key_file"), ("insecure", "insecure")):
        if tls.get(key) is not None:
            m.put((signal, setting), tls[key], (*at, "tls", key))
    if body.get("encoding") not in (None, "protobuf"):
        m.refuse((*at, "encoding"), "OTLP/HTTP with JSON encoding", "remove it (protobuf)")
    for key, default in (("temporality_preference", "cumulative"),
                         ("default_histogram_aggregation", "explicit_bucket_histogram")):
        if body.get(key) not in (None, default):
            m.refuse((*at, key), f"{key} {body[key]!r} (cryostorm exports {default})", "remove it")


def _exporter_kind(node: Mapping[str, Any]) -> str:
    """The exporter's name in a processor or reader (`batch: {exporter: {otlp_grpc: ...}}` → otlp_grpc)."""
    _, body = one(node)
    exporter = body.get("exporter") if isinstance(body, Mapping) else None
    return one(exporter)[0] if isinstance(exporter, Mapping) and len(exporter) == 1 else ""


def _copies(m: Mapper, signal: str, nodes: list[Any], main: int, at: Key, copies: dict[str, Any]) -> None:
    """The processors or readers beside the signal's main one: a console copy each (a Prometheus pull reader
    for metrics), as `<signal>.also_export_to`. Anything else is refused: one OTLP endpoint per signal."""
    names: dict[str, Key] = {}
    for n, node in enumerate(nodes):
        if n == main:
            continue
        kind, body = one(node)
        where = (*at, n, kind)
        exporter = _exporter_kind(node)
        name = copies.get(f"{kind}/{exporter}")
        if name is None:
            m.refuse((*at, n), f"a second {'reader' if signal == 'metrics' else 'processor'} exporting to "
                     f"{exporter or kind!r}: cryostorm exports a signal to one OTLP endpoint, and beside it to the "
                     "console" + (" or a Prometheus pull endpoint" if signal == "metrics" else ""),
                     "keep one OTLP one (a collector can fan out to several back-ends)")
            continue
        extra = set(body) - {"exporter"}
        if extra:
            m.refuse((*where, sorted(extra)[0]), f"{sorted(extra)[0]!r} on a second "
                     f"{'reader' if signal == 'metrics' else 'processor'} (it takes the first one's settings)",
                     "remove it, or set it on the first one")
            continue
        if name == "prometheus":
            _exporter(m, signal, signal, body["exporter"], (*where, "exporter"), also=True)
        names.setdefault(name, where)
    if names:
        m.put((signal, "also_export_to"), list(names), next(iter(names.values())))


def _main(nodes: list[Any], copies: dict[str, Any]) -> int:
    """The one of `nodes` the signal's settings come from: the first that is not a copy, else the first."""
    return next((n for n, node in enumerate(nodes) if f"{one(node)[0]}/{_exporter_kind(node)}" not in copies), 0)


_PROCESSOR_COPIES = {"batch/console": "console", "simple/console": "console"}
_READER_COPIES = {"periodic/console": "console", "pull/prometheus/development": "prometheus"}


def _processors(m: Mapper, signal: str, path_word: str, node: Mapping[str, Any], at: Key) -> None:
    processors = node["processors"]
    main = _main(processors, _PROCESSOR_COPIES)
    _copies(m, signal, processors, main, (*at, "processors"), _PROCESSOR_COPIES)
    at = (*at, "processors", main)
    kind, body = one(processors[main])
    if kind not in ("batch", "simple"):
        m.refuse((*at, kind), f"processor {kind!r}", "use batch or simple")
        return
    m.put((signal, "processor_type"), kind, (*at, kind))
    if kind == "batch":
        for key, field in _BATCH.items():
            value, default = body.get(key), BATCH_DEFAULTS[signal][key]
            note = "" if value is not None else f" (omitted: {default}, the spec's default)"
            m.put_duration((signal, "export_config", field), default if value is None else value, (*at, kind, key),
                           note)
    _exporter(m, signal, path_word, body["exporter"], (*at, kind, "exporter"))


def _reader(m: Mapper, node: Mapping[str, Any], at: Key) -> None:
    readers = node["readers"]
    main = _main(readers, _READER_COPIES)
    _copies(m, "metrics", readers, main, (*at, "readers"), _READER_COPIES)
    for key in ("views", "exemplar_filter"):
        if node.get(key) is not None:
            m.refuse((*at, key), f"meter_provider.{key}")
    at = (*at, "readers", main)
    kind, body = one(readers[main])
    m.only(body, (*at, kind), {"interval", "timeout", "exporter"}, f"the {kind} reader")
    if kind == "periodic":
        for key, field in (("interval", "export_interval_millis"), ("timeout", "export_timeout_millis")):
            if body.get(key) is not None:
                m.put_duration(("metrics", field), body[key], (*at, kind, key))
    _exporter(m, "metrics", "metrics", body["exporter"], (*at, kind, "exporter"))


def _provider(m: Mapper, key: str, node: Mapping[str, Any] | None) -> None:
    signal, path_word = _SIGNALS[key]
    if node is None:
        m.put((signal, "enabled"), False, (), f" (no {key}: {path_word} off, as the spec says)")
        return
    at: Key = (key,)
    for extra in node:
        if extra not in ("processors", "readers", "sampler", "views", "exemplar_filter", "limits"):
            m.refuse((*at, extra), f"{key}.{extra}")
    if node.get("limits") and key in LIMITS:
        m.limits(key, node["limits"], (*at, "limits"))
    m.put((signal, "enabled"), True, at)
    if key == "meter_provider":
        _reader(m, node, at)
        return
    _processors(m, signal, path_word, node, at)
    if key == "tracer_provider" and node.get("sampler") is not None:
        _sampler(m, node["sampler"], (*at, "sampler"))


def _top_level(m: Mapper, data: Mapping[str, Any]) -> Iterator[str]:
    for key, value in data.items():
        if key in ("file_format", *_SIGNALS, "propagator"):
            continue
        if key == "disabled":
            if value:
                m.put(("enabled",), False, ("disabled",))
        elif key == "log_level":
            if value not in (None, "info"):
                m.refuse((key,), "the SDK's internal log level", "remove it (cryostorm reports problems itself)")
        elif key == "resource":
            _resource(m, value or {})
        elif key == "attribute_limits":
            m.limits(key, value or {}, (key,))
        else:
            yield key


FileEnv = dict[str, tuple[str, Origin]]


def otel_file_entries(found: OtelFile) -> tuple[list[Entry], FileEnv]:
    """Settings entries for the file, and the variables it sets for the program's SDK (its limits), each with
    its origin; SourceError lists what cryostorm cannot honour."""
    m = Mapper(found)
    for key in _top_level(m, found.data):
        m.refuse((key,), f"{key!r}")
    for key in _SIGNALS:
        _provider(m, key, found.data.get(key))
    _propagator(m, found.data.get("propagator"))
    if not any(e.path == ("service", "name") for e in m.entries):
        m.put(("service", "name"), "unknown_service", ("resource",) if "resource" in found.data else (),
              " (no service.name: unknown_service, the spec's default)")
    if m.problems:
        raise SourceError(m.problems)
    return m.entries, m.env


def chosen_file(environ: Mapping[str, str], flag: Path | None) -> tuple[Path, list[str]] | None:
    """The file to read (`--config-file` wins over OTEL_CONFIG_FILE; empty is unset) and a note for an
    OTEL_CONFIG_FILE the flag makes ineffective; None when no file is named."""
    named = environ.get("OTEL_CONFIG_FILE", "").strip()
    if flag is None:
        return (Path(named), []) if named else None
    notes = []
    if named and Path(named) != flag:
        notes.append(f"OTEL_CONFIG_FILE={named} has no effect: --config-file {flag} names the file")
    return flag, notes


def file_decides(found: OtelFile, others: list[Entry], environ: Mapping[str, str],
                 ) -> tuple[list[Entry], FileEnv, list[str], frozenset[str]]:
    """The entries to validate (the file's, and the others' for settings the file does not decide), the
    variables the file sets for the program, a note for each input the file makes ineffective, and the
    variables to take out of the program's environment.

    A variable the file substitutes (`${OTEL_SERVICE_NAME}`) is used, not ineffective."""
    label, referenced = found.label, found.referenced
    file_entries, file_env = otel_file_entries(found)
    kept, notes, seen = [], [], set()
    for entry in others:
        if not governed(entry.path):
            kept.append(entry)
            continue
        shown = entry.origin.describe()
        if entry.origin.name in referenced or shown in seen:
            continue
        seen.add(shown)
        notes.append(f"{shown} has no effect: the OpenTelemetry configuration file {label} decides "
                     f"{'.'.join(entry.path)} (with a configuration file, the other sources of OpenTelemetry "
                     "settings are ignored, as the specification says)")
    dropped = frozenset(name for name in SUPERSEDED_ENV if environ.get(name, "").strip())
    notes += [f"{name} has no effect: the OpenTelemetry configuration file {label} replaces it (taken out of the "
              "program's environment)" for name in sorted(dropped - referenced)]
    return kept + file_entries, file_env, notes, dropped
