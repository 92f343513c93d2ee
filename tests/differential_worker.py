"""One side of the differential test (tests/test_differential.py), run as a real interpreter.

`python differential_worker.py upstream|cryostorm` imports that side's SDK, exporters and
configurator once, then reads one JSON line per deployment on stdin: `{"env": {...}}`. For each it
forks a child (a real process, with no provider set yet) that takes `env` as its whole environment,
runs that side's configurator, sends one span, one metric point and one log record through what was
built, and describes the result. The parent writes one JSON line per deployment on stdout.

- upstream: the plain SDK configurator (`_OTelSDKConfigurator`, which `opentelemetry-instrument`
  loads when no distro configures another) and `opentelemetry.propagate` imported in the child.
  Calling that private class here is deliberate: it is the oracle.
- cryostorm: the configurator registered as the `opentelemetry_configurator` entry point
  `cryostorm`, as the hook loads it, on the environment `cryostorm-run` gives the program.

Nothing leaves the machine: gRPC channels and the requests Session are replaced by recorders that
answer every export with success. What the exporters *send* (target, TLS, headers, timeout,
compression, URL, the request itself) is what is compared, so a private attribute renamed by a new
SDK release cannot hide a difference. The SDK objects' configuration (batch sizes, limits, reader
interval) is read from their attributes, private where the SDK has no public accessor.
"""

from __future__ import annotations

import gzip
import importlib
import json
import math
import os
import select
import signal
import sys
import urllib.parse
import zlib
from typing import Any

SIDE = sys.argv[1] if len(sys.argv) > 1 else "upstream"
RECORDS: list[dict[str, Any]] = []
CREDENTIALS: dict[int, Any] = {}  # id(credentials) -> (root, key, chain) file contents


def _text(data: bytes | None) -> str | None:
    return None if data is None else data.decode(errors="replace")


def _install_recorders() -> None:
    import grpc
    import requests

    real_ssl = grpc.ssl_channel_credentials

    def ssl_channel_credentials(root_certificates: Any = None, private_key: Any = None,
                                certificate_chain: Any = None) -> Any:
        creds = real_ssl(root_certificates, private_key, certificate_chain)
        CREDENTIALS[id(creds)] = (creds, [_text(root_certificates), _text(private_key), _text(certificate_chain)])
        return creds

    class Channel:
        def __init__(self, target: str, secure: bool, credentials: Any = None, options: Any = None,
                     compression: Any = None) -> None:
            self.target, self.secure, self.compression = target, secure, compression
            self.tls = CREDENTIALS.get(id(credentials), (None, "unknown credentials"))[1] if secure else None

        def unary_unary(self, method: str, request_serializer: Any = None, response_deserializer: Any = None,
                        *args: Any, **kwargs: Any) -> Any:
            def call(request: Any, timeout: Any = None, metadata: Any = None, compression: Any = None,
                     **_: Any) -> Any:
                body = request_serializer(request) if request_serializer else request
                chosen = compression if compression is not None else self.compression
                RECORDS.append({"transport": "grpc", "target": self.target, "secure": self.secure, "tls": self.tls,
                                "compression": _grpc_compression(chosen), "timeout": timeout,
                                "headers": {k: v for k, v in (metadata or ())}, "method": method, "body": body})
                return response_deserializer(b"") if response_deserializer else None

            return call

        def close(self) -> None:
            pass

    def insecure_channel(target: str, options: Any = None, compression: Any = None) -> Any:
        return Channel(target, False, None, options, compression)

    def secure_channel(target: str, credentials: Any, options: Any = None, compression: Any = None) -> Any:
        return Channel(target, True, credentials, options, compression)

    modules = [grpc]
    modules.append(importlib.import_module("opentelemetry.exporter.otlp.proto.grpc.exporter"))
    for module in modules:
        for name, fake in (("ssl_channel_credentials", ssl_channel_credentials), ("insecure_channel", insecure_channel),
                           ("secure_channel", secure_channel)):
            if hasattr(module, name):
                setattr(module, name, fake)

    # Session.send: what every request of a Session goes through (the SDK's exporters call post, cryostorm's
    # transport sends a request it prepared once), with the environment's settings merged in.
    def send(self: Any, prepared: Any, **kwargs: Any) -> Any:
        url = prepared.url
        headers = {k.lower(): v for k, v in prepared.headers.items()}
        data = prepared.body or b""
        encoding = headers.pop("content-encoding", "none")
        if encoding == "gzip":
            data = gzip.decompress(data)
        elif encoding == "deflate":
            data = zlib.decompress(data)
        verify = kwargs.get("verify") if kwargs.get("verify") is not None else self.verify
        cert = kwargs.get("cert") or self.cert
        for name in ("user-agent", "content-type", "accept", "accept-encoding", "connection", "content-length"):
            headers.pop(name, None)
        RECORDS.append({"transport": "http", "url": url, "timeout": kwargs.get("timeout"), "headers": headers,
                        "compression": encoding, "verify": _read(verify) if isinstance(verify, str) else verify,
                        "cert": [_read(c) for c in cert] if isinstance(cert, (tuple, list)) else _read(cert),
                        "body": data})
        response = requests.models.Response()
        response.status_code, response._content, response.url = 200, b"", url
        return response

    requests.Session.send = send  # type: ignore[method-assign,assignment]


def _read(path: Any) -> str | None:
    if not path:
        return None
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return f"unreadable {path}"


def _grpc_compression(value: Any) -> str:
    name = getattr(value, "name", str(value)).lower()
    return {"gzip": "gzip", "deflate": "deflate"}.get(name, "none")


def _warm_up() -> None:
    """Import what a configured program imports, once, before any fork."""
    for module in ("opentelemetry.sdk.trace", "opentelemetry.sdk.metrics", "opentelemetry.sdk._logs",
                   "opentelemetry.sdk.trace.export", "opentelemetry.sdk.metrics.export",
                   "opentelemetry.sdk._logs.export",
                   "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
                   "opentelemetry.exporter.otlp.proto.grpc.metric_exporter",
                   "opentelemetry.exporter.otlp.proto.grpc._log_exporter",
                   "opentelemetry.exporter.otlp.proto.http.trace_exporter",
                   "opentelemetry.exporter.otlp.proto.http.metric_exporter",
                   "opentelemetry.exporter.otlp.proto.http._log_exporter", "opentelemetry.propagators.b3",
                   "opentelemetry.proto.collector.trace.v1.trace_service_pb2",
                   "opentelemetry.proto.collector.metrics.v1.metrics_service_pb2",
                   "opentelemetry.proto.collector.logs.v1.logs_service_pb2", "requests", "grpc",
                   "opentelemetry.propagators.composite", "opentelemetry.trace.propagation.tracecontext",
                   "opentelemetry.baggage.propagation"):
        importlib.import_module(module)
    if SIDE == "upstream":
        importlib.import_module("opentelemetry.sdk._configuration")
        # The installed distributions' entry points, read once (the SDK caches them per process):
        # every child inherits the cache instead of scanning site-packages again.
        importlib.import_module("opentelemetry.util._importlib_metadata").entry_points()
    else:
        for module in ("cryostorm_run.hook.distro", "cryostorm_run.hook.entrypoints", "cryostorm_run.export.providers",
                       "cryostorm_run.export.signals", "cryostorm_run.export.otlp", "cryostorm_run.export.otlp_send",
                       "cryostorm_run.export.otlp_encode", "cryostorm_run.common.runtime",
                       "cryostorm_run.export.logbridge", "cryostorm_run.hook.instrument"):
            importlib.import_module(module)
    _install_recorders()


# -- in the child: configure, drive one item per signal, describe ----------------------------------------


def _configure() -> dict[str, Any]:
    """The three providers (None when a signal is off) and the propagator this side built."""
    from opentelemetry import _logs, metrics, trace

    if SIDE == "upstream":
        from opentelemetry.sdk._configuration import _OTelSDKConfigurator

        _OTelSDKConfigurator().configure()  # type: ignore[no-untyped-call]  # the oracle: upstream's own configurator, private by name
        from opentelemetry import propagate

        importlib.reload(propagate)  # reads OTEL_PROPAGATORS at import, as in a fresh program
        sdk = ("opentelemetry.sdk",)
        return {"traces": _sdk_or_none(trace.get_tracer_provider(), sdk),
                "metrics": _sdk_or_none(metrics.get_meter_provider(), sdk),
                "logs": _sdk_or_none(_logs.get_logger_provider(), sdk), "propagator": propagate.get_global_textmap()}
    from cryostorm_run.hook.entrypoints import entry_points

    eps = entry_points(["opentelemetry_configurator"])["opentelemetry_configurator"]
    configurator = next(ep for ep in eps if ep.name == "cryostorm").load()
    configurator().configure(eager=True)  # built now (another launcher's call would step aside for the SDK's)
    p = configurator.providers
    return {"traces": p.tracer_provider, "metrics": p.meter_provider, "logs": p.logger_provider,
            "propagator": p.propagator}


def _sdk_or_none(provider: Any, prefixes: tuple[str, ...]) -> Any:
    return provider if type(provider).__module__.startswith(prefixes) else None


def _drive(built: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """One span, one counter point, one log record through each provider; the requests each sent."""
    sent: dict[str, list[dict[str, Any]]] = {}
    tp, mp, lp = built["traces"], built["metrics"], built["logs"]
    if tp is not None:
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        from opentelemetry.trace import SpanContext, TraceFlags

        context = SpanContext(0x1234, 0x5678, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))
        span = ReadableSpan(name="diff", context=context, resource=tp.resource, start_time=1, end_time=2,
                            instrumentation_scope=InstrumentationScope("diff"))
        del RECORDS[:]
        tp._active_span_processor.on_end(span)
        tp.force_flush(5000)
        sent["traces"] = list(RECORDS)
    if mp is not None:
        del RECORDS[:]
        mp.get_meter("diff").create_counter("diff.count").add(1)
        mp.force_flush(5000)
        sent["metrics"] = list(RECORDS)
    if lp is not None:
        del RECORDS[:]
        lp.get_logger("diff").emit(body="diff", timestamp=1, observed_timestamp=1)
        lp.force_flush(5000)
        sent["logs"] = list(RECORDS)
    return sent


_REQUESTS = {"traces": ("opentelemetry.proto.collector.trace.v1.trace_service_pb2", "ExportTraceServiceRequest",
                        "resource_spans"),
             "metrics": ("opentelemetry.proto.collector.metrics.v1.metrics_service_pb2", "ExportMetricsServiceRequest",
                         "resource_metrics"),
             "logs": ("opentelemetry.proto.collector.logs.v1.logs_service_pb2", "ExportLogsServiceRequest",
                      "resource_logs")}


def _payload(signal_name: str, body: bytes) -> dict[str, Any]:
    """What the request carried: the resource's attributes, and for metrics the counter's temporality."""
    module, cls, field = _REQUESTS[signal_name]
    request = getattr(importlib.import_module(module), cls).FromString(body)
    out: dict[str, Any] = {}
    for resource_items in getattr(request, field):
        out["resource"] = {kv.key: str(getattr(kv.value, kv.value.WhichOneof("value"))) if kv.value.WhichOneof("value")
                           else "" for kv in resource_items.resource.attributes}
        if signal_name == "metrics":
            for scope in resource_items.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == "diff.count":
                        out["temporality"] = metric.sum.aggregation_temporality
    return out


def _exporters(signal_name: str, provider: Any) -> list[str]:
    """Class names of what the provider exports through (upstream builds a provider even for none)."""
    if provider is None:
        return []
    if signal_name == "metrics":
        provider = getattr(provider, "sdk_provider", provider)  # cryostorm's lazy provider: the SDK's inside
        readers = getattr(provider, "_metric_readers", None)
        if readers is None:
            readers = provider._sdk_config.metric_readers
        return [type(getattr(r, "_exporter", r)).__name__ for r in readers]
    processors = (provider._active_span_processor._span_processors if signal_name == "traces"
                  else provider._multi_log_record_processor._log_record_processors)
    names = []
    for processor in processors:
        inner = getattr(processor, "_batch_processor", None)
        queue = getattr(processor, "queue", None)  # cryostorm's processors
        exporter = (getattr(inner, "_exporter", None) or getattr(queue, "exporter", None)
                    or getattr(processor, "span_exporter", None) or getattr(processor, "_exporter", None))
        names.append(type(exporter).__name__)
    return names


def _exporter_of(signal_name: str, requests: list[dict[str, Any]], built: dict[str, Any]) -> dict[str, Any]:
    names = _exporters(signal_name, built[signal_name])
    if not names:
        return {"kind": "none"}
    if not requests:
        # cryostorm's `console`: ByTerminal picks a one-line or the SDK's JSON console exporter per export
        return {"kind": "console" if any("Console" in n or n == "ByTerminal" for n in names) else f"other: {names}"}
    r = requests[0]
    # Some exporters pass what is left of their deadline (a few ms less, more on a loaded machine): the
    # generated timeouts are multiples of 0.5 s, so the next multiple of 0.5 s is the configured one.
    timeout = None if r["timeout"] is None else math.ceil(round(r["timeout"], 3) * 2) / 2
    out: dict[str, Any] = {"requests": len(requests), "timeout": timeout,
                           "headers": r["headers"], "compression": r["compression"],
                           # OTEL_<SIGNAL>_EXPORTER=otlp,console: a console exporter beside the OTLP one
                           "console too": any("Console" in n or n == "ByTerminal" for n in names)}
    if r["transport"] == "grpc":
        target = r["target"]  # gRPC's DNS resolver: a target without a port means 443
        out.update(kind="otlp grpc", endpoint=target if ":" in target.rsplit("]", 1)[-1] else f"{target}:443",
                   secure=r["secure"], tls=r["tls"])
    else:
        url = urllib.parse.urlsplit(r["url"])  # the scheme's own port written out is the same URL
        if (url.scheme, url.port) in (("https", 443), ("http", 80)):
            url = url._replace(netloc=url.netloc.rsplit(":", 1)[0])
        out.update(kind="otlp http/protobuf", endpoint=url.geturl(), verify=r["verify"], client_cert=r["cert"])
    out.update(_payload(signal_name, r["body"]))
    return out


def _describe(built: dict[str, Any], sent: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    d: dict[str, Any] = {s: _exporter_of(s, sent.get(s, []), built) for s in ("traces", "metrics", "logs")}
    prop = built["propagator"]
    d["propagators"] = [type(p).__name__ for p in getattr(prop, "_propagators", [prop])]
    tp, mp, lp = (built[s] if d[s]["kind"] != "none" else None for s in ("traces", "metrics", "logs"))
    for provider in (tp, lp):
        if provider is not None:
            d["resource"] = {k: str(v) for k, v in provider.resource.attributes.items()}
            break
    if tp is not None:
        d["sampler"] = tp.sampler.get_description()
        limits = tp._span_limits
        d["span_limits"] = {k: getattr(limits, k) for k in (
            "max_attributes", "max_events", "max_links", "max_span_attributes", "max_event_attributes",
            "max_link_attributes", "max_attribute_length", "max_span_attribute_length")}
        d["bsp"] = _batch(tp._active_span_processor._span_processors, "spans")
    if lp is not None:
        d["blrp"] = _batch(lp._multi_log_record_processor._log_record_processors, "log records")
        d["log_processors"] = len(lp._multi_log_record_processor._log_record_processors)
    if mp is not None:
        mp = getattr(mp, "sdk_provider", mp)  # cryostorm's lazy provider: the SDK's inside
        config = mp._sdk_config
        readers = getattr(mp, "_metric_readers", None)
        readers = list(config.metric_readers if readers is None else readers)
        d["metric_reader"] = [{"interval_ms": getattr(r, "_export_interval_millis", None),
                               "timeout_ms": getattr(r, "_export_timeout_millis", None)} for r in readers]
        d["exemplar_filter"] = type(config.exemplar_filter).__name__
        if "resource" not in d:
            d["resource"] = {k: str(v) for k, v in config.resource.attributes.items()}
    return d


def _batch(processors: Any, kind: str) -> dict[str, Any] | None:
    for processor in processors:
        inner = getattr(processor, "_batch_processor", None)
        if inner is not None:  # the SDK's Batch*Processor
            return {"max_queue_size": inner._max_queue_size, "schedule_delay_ms": inner._schedule_delay_millis,
                    "max_export_batch_size": inner._max_export_batch_size,
                    "export_timeout_ms": inner._export_timeout_millis}
    from_cryostorm = sys.modules.get("cryostorm_run.export.batch")
    for queue in list(getattr(from_cryostorm, "BATCH_QUEUES", ())):
        if queue.kind == kind:
            return {"max_queue_size": queue.max_queue_size, "schedule_delay_ms": round(queue.delay_s * 1000),
                    # cryostorm caps the batch at the queue size
                    "max_export_batch_size": queue.batch_size,
                    "export_timeout_ms": round(queue.export_timeout_s * 1000)}
    return None


def _child(env: dict[str, str], out: int) -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # console exporters and the SDK's warnings: not part of the answer
    os.dup2(devnull, 2)
    os.environ.clear()
    os.environ.update(env)
    try:
        built = _configure()
        result = _describe(built, _drive(built))
    except BaseException as exc:  # the answer is that this side failed, and how
        result = {"error": f"{type(exc).__name__}: {exc}"}
    os.write(out, json.dumps(result, sort_keys=True, default=str).encode())
    os.close(out)
    os._exit(0)


def _run_one(env: dict[str, str], timeout_s: float = 30.0) -> dict[str, Any]:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        _child(env, write)
    os.close(write)
    chunks: list[bytes] = []
    while True:
        ready, _, _ = select.select([read], [], [], timeout_s)
        if not ready:
            os.kill(pid, signal.SIGKILL)
            chunks = [json.dumps({"error": f"no answer within {timeout_s} s"}).encode()]
            break
        chunk = os.read(read, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read)
    os.waitpid(pid, 0)
    text = b"".join(chunks)
    return json.loads(text) if text else {"error": "the child died without an answer"}


def main() -> None:
    _warm_up()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    for line in sys.stdin:
        env = json.loads(line)["env"]
        sys.stdout.write(json.dumps(_run_one(env), sort_keys=True) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
