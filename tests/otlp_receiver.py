"""A real OTLP receiver (gRPC + HTTP/protobuf) for tests and benchmarks.

Test usage::

    from otlp_receiver import Receiver, Fault

    with Receiver() as rcv:
        ...  # point an exporter at rcv.grpc_endpoint or rcv.http_endpoint + "/v1/traces"
        spans = rcv.wait_for_spans(2)

or through the ``otlp_receiver`` pytest fixture defined at the bottom.

Standalone sink (benchmarks)::

    python tests/otlp_receiver.py --grpc-port 4317 --http-port 4318

prints ``READY grpc=<port> http=<port>``, serves until SIGTERM/SIGINT, then prints
``spans=<n> metrics_points=<n> logs=<n>``.

Everything listens on 127.0.0.1 only.

Semantics worth knowing:

* ``required_headers`` is checked first; a request failing it gets UNAUTHENTICATED / 401 and
  does not consume a ``set_fault(..., times=N)`` budget.
* Faulted requests are recorded in :meth:`Receiver.requests` (``accepted=False``) but their
  payload is not stored. PARTIAL_SUCCESS stores the whole payload (the rejection is only
  reported back). SLOW stores the payload after the delay, unless the client has given up
  meanwhile (gRPC deadline / HTTP connection closed): then it is recorded as not accepted
  with ``grpc_code="CANCELLED"`` / ``http_status=None``.
* HTTP error replies carry a serialized ``google.rpc.Status``; gRPC RESOURCE_EXHAUSTED carries
  ``google.rpc.retryinfo-bin`` (what the Python SDK reads) and ``grpc-status-details-bin``.
* An unknown HTTP path is answered 404 and recorded with ``signal=""``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import enum
import gzip
import http.server
import json
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2, duration_pb2, json_format
from google.protobuf.message import DecodeError, Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

__all__ = [
    "Fault",
    "ReceivedLog",
    "ReceivedMetric",
    "ReceivedRequest",
    "ReceivedSpan",
    "Receiver",
    "make_self_signed_cert",
    "otlp_receiver",
    "otlp_receiver_fixture",
]

HOST = "127.0.0.1"
_T = TypeVar("_T")


class Fault(enum.Enum):
    """Failure the receiver simulates (see :meth:`Receiver.set_fault`)."""

    NONE = "none"
    UNAVAILABLE = "unavailable"  # grpc UNAVAILABLE / http 503
    RESOURCE_EXHAUSTED = "resource_exhausted"  # grpc + RetryInfo / http 429 + Retry-After
    UNAUTHENTICATED = "unauthenticated"  # grpc UNAUTHENTICATED / http 401
    PERMISSION_DENIED = "permission_denied"  # grpc PERMISSION_DENIED / http 403
    SLOW = "slow"  # sleep `delay` seconds, then answer OK
    PARTIAL_SUCCESS = "partial_success"  # OK with partial_success.rejected_* = `rejected`
    DROP_CONNECTION = "drop_connection"  # http: close socket unanswered; grpc: UNAVAILABLE


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    kind: str  # SERVER, CLIENT, INTERNAL, PRODUCER, CONSUMER (UNSPECIFIED if unset)
    trace_id: str  # 32 hex chars
    span_id: str  # 16 hex chars
    parent_span_id: str | None
    attributes: dict[str, Any]
    resource: dict[str, Any]
    status_code: str  # UNSET, OK, ERROR
    status_message: str
    events: tuple[tuple[str, dict[str, Any]], ...]
    scope: str
    transport: str  # "grpc" | "http"
    # extras (defaults keep the documented positional layout intact)
    links: tuple[tuple[str, str, dict[str, Any]], ...] = ()  # (trace_id, span_id, attributes)
    start_time_unix_nano: int = 0
    end_time_unix_nano: int = 0
    raw: Any = field(default=None, compare=False, repr=False)  # the opentelemetry.proto Span


@dataclass(frozen=True)
class ReceivedMetric:
    name: str
    kind: str  # sum, gauge, histogram, exponential_histogram, summary
    resource: dict[str, Any]
    points: tuple[dict[str, Any], ...]
    scope: str
    transport: str
    # extras
    unit: str = ""
    description: str = ""
    temporality: str | None = None  # "cumulative" | "delta" | None (gauge/summary)
    is_monotonic: bool | None = None  # sums only
    raw: Any = field(default=None, compare=False, repr=False)  # the opentelemetry.proto Metric


@dataclass(frozen=True)
class ReceivedLog:
    body: Any
    severity_text: str
    severity_number: int
    trace_id: str | None
    span_id: str | None
    attributes: dict[str, Any]
    resource: dict[str, Any]
    transport: str
    # extras
    scope: str = ""
    event_name: str = ""
    time_unix_nano: int = 0
    raw: Any = field(default=None, compare=False, repr=False)  # the opentelemetry.proto LogRecord


@dataclass(frozen=True)
class ReceivedRequest:
    transport: str  # "grpc" | "http"
    signal: str  # "traces" | "metrics" | "logs" ("" for an unknown HTTP path)
    headers: dict[str, str]  # lower-case keys
    accepted: bool  # True when the payload was stored and answered OK
    path: str | None = None  # HTTP path; for gRPC the full method name
    fault: str = "NONE"  # Fault applied to this request
    http_status: int | None = None  # HTTP only (None when the connection was dropped)
    grpc_code: str | None = None  # gRPC only, e.g. "OK", "UNAVAILABLE"
    items: int = 0  # spans / metric data points / log records in the payload
    peer: str = ""  # the client's end of the connection ("ipv4:127.0.0.1:PORT" for gRPC, "127.0.0.1:PORT" for HTTP)


# --------------------------------------------------------------------------- proto conversion


def _any_value(value: Any) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_any_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return _kv_dict(value.kvlist_value.values)
    return getattr(value, which)  # string/bool/int/double/bytes


def _kv_dict(kvs: Any) -> dict[str, Any]:
    return {kv.key: _any_value(kv.value) for kv in kvs}


def _hex_or_none(raw: bytes) -> str | None:
    return raw.hex() if raw else None


def _enum_name(enum_type: Any, number: int, prefix: str) -> str:
    try:
        return str(enum_type.Name(number)).removeprefix(prefix)
    except ValueError:
        return str(number)


def _spans_from(req: trace_service_pb2.ExportTraceServiceRequest, transport: str) -> list[ReceivedSpan]:
    out = []
    for rs in req.resource_spans:
        resource = _kv_dict(rs.resource.attributes)
        for ss in rs.scope_spans:
            for s in ss.spans:
                out.append(
                    ReceivedSpan(
                        name=s.name,
                        kind=_enum_name(trace_pb2.Span.SpanKind, s.kind, "SPAN_KIND_"),
                        trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(),
                        parent_span_id=_hex_or_none(s.parent_span_id),
                        attributes=_kv_dict(s.attributes),
                        resource=resource,
                        status_code=_enum_name(trace_pb2.Status.StatusCode, s.status.code, "STATUS_CODE_"),
                        status_message=s.status.message,
                        events=tuple((e.name, _kv_dict(e.attributes)) for e in s.events),
                        scope=ss.scope.name,
                        transport=transport,
                        links=tuple((ln.trace_id.hex(), ln.span_id.hex(), _kv_dict(ln.attributes)) for ln in s.links),
                        start_time_unix_nano=s.start_time_unix_nano,
                        end_time_unix_nano=s.end_time_unix_nano,
                        raw=s,
                    )
                )
    return out


def _number(p: Any) -> int | float | None:
    which = p.WhichOneof("value")
    return getattr(p, which) if which else None


def _points(metric: Any, kind: str) -> tuple[dict[str, Any], ...]:
    data = getattr(metric, kind)
    pts = []
    for p in data.data_points:
        attrs = _kv_dict(p.attributes)
        if kind in ("sum", "gauge"):
            pts.append({"attributes": attrs, "value": _number(p)})
        elif kind == "histogram":
            pts.append({"attributes": attrs, "count": p.count, "sum": p.sum if p.HasField("sum") else None})
        elif kind == "exponential_histogram":
            pts.append(
                {
                    "attributes": attrs,
                    "count": p.count,
                    "sum": p.sum if p.HasField("sum") else None,
                    "scale": p.scale,
                    "zero_count": p.zero_count,
                }
            )
        else:  # summary
            pts.append(
                {
                    "attributes": attrs,
                    "count": p.count,
                    "sum": p.sum,
                    "quantiles": {q.quantile: q.value for q in p.quantile_values},
                }
            )
    return tuple(pts)


def _metrics_from(req: metrics_service_pb2.ExportMetricsServiceRequest, transport: str) -> list[ReceivedMetric]:
    out = []
    for rm in req.resource_metrics:
        resource = _kv_dict(rm.resource.attributes)
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                if kind is None:
                    continue
                data = getattr(m, kind)
                temporality = None
                if kind in ("sum", "histogram", "exponential_histogram"):
                    name = _enum_name(
                        metrics_pb2.AggregationTemporality,
                        data.aggregation_temporality,
                        "AGGREGATION_TEMPORALITY_",
                    )
                    temporality = None if name == "UNSPECIFIED" else name.lower()
                out.append(
                    ReceivedMetric(
                        name=m.name,
                        kind=kind,
                        resource=resource,
                        points=_points(m, kind),
                        scope=sm.scope.name,
                        transport=transport,
                        unit=m.unit,
                        description=m.description,
                        temporality=temporality,
                        is_monotonic=data.is_monotonic if kind == "sum" else None,
                        raw=m,
                    )
                )
    return out


def _logs_from(req: logs_service_pb2.ExportLogsServiceRequest, transport: str) -> list[ReceivedLog]:
    out = []
    for rl in req.resource_logs:
        resource = _kv_dict(rl.resource.attributes)
        for sl in rl.scope_logs:
            for r in sl.log_records:
                out.append(
                    ReceivedLog(
                        body=_any_value(r.body),
                        severity_text=r.severity_text,
                        severity_number=int(r.severity_number),
                        trace_id=_hex_or_none(r.trace_id),
                        span_id=_hex_or_none(r.span_id),
                        attributes=_kv_dict(r.attributes),
                        resource=resource,
                        transport=transport,
                        scope=sl.scope.name,
                        event_name=r.event_name,
                        time_unix_nano=r.time_unix_nano or r.observed_time_unix_nano,
                        raw=r,
                    )
                )
    return out


def _count_spans(req: Any) -> int:
    return sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)


def _count_server_spans(req: Any) -> int:
    server = trace_pb2.Span.SpanKind.SPAN_KIND_SERVER
    return sum(1 for rs in req.resource_spans for ss in rs.scope_spans for span in ss.spans if span.kind == server)


def _count_points(req: Any) -> int:
    n = 0
    for rm in req.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                if kind:
                    n += len(getattr(m, kind).data_points)
    return n


def _count_logs(req: Any) -> int:
    return sum(len(sl.log_records) for rl in req.resource_logs for sl in rl.scope_logs)


@dataclass(frozen=True)
class _Signal:
    name: str
    request_cls: type
    response_cls: type
    http_path: str
    grpc_method: str
    rejected_field: str
    count: Callable[[Any], int]
    convert: Callable[[Any, str], list[Any]]


_SIGNALS = {
    s.name: s
    for s in (
        _Signal(
            "traces",
            trace_service_pb2.ExportTraceServiceRequest,
            trace_service_pb2.ExportTraceServiceResponse,
            "/v1/traces",
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            "rejected_spans",
            _count_spans,
            _spans_from,
        ),
        _Signal(
            "metrics",
            metrics_service_pb2.ExportMetricsServiceRequest,
            metrics_service_pb2.ExportMetricsServiceResponse,
            "/v1/metrics",
            "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
            "rejected_data_points",
            _count_points,
            _metrics_from,
        ),
        _Signal(
            "logs",
            logs_service_pb2.ExportLogsServiceRequest,
            logs_service_pb2.ExportLogsServiceResponse,
            "/v1/logs",
            "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
            "rejected_log_records",
            _count_logs,
            _logs_from,
        ),
    )
}
_SIGNAL_BY_PATH = {s.http_path: s for s in _SIGNALS.values()}
_COUNT_KEYS = {"traces": "spans", "metrics": "metrics_points", "logs": "logs"}

_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})


def _hex_id(value: Any) -> Any:
    if isinstance(value, str) and len(value) in (16, 32):
        with contextlib.suppress(ValueError):
            return base64.b64encode(bytes.fromhex(value)).decode("ascii")
    return value


def _hex_ids_to_base64(node: Any) -> Any:
    """OTLP/JSON encodes trace/span ids as hex; protobuf's json_format expects base64."""
    if isinstance(node, dict):
        return {key: _hex_id(value) if key in _ID_KEYS else _hex_ids_to_base64(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_hex_ids_to_base64(v) for v in node]
    return node


# --------------------------------------------------------------------------- outcome of one request


@dataclass
class _Outcome:
    fault: Fault
    grpc_code: grpc.StatusCode = grpc.StatusCode.OK
    http_status: int = 200
    message: str = ""
    retry_after: int | None = None
    response: Message | None = None
    drop: bool = False

    @property
    def ok(self) -> bool:
        return self.grpc_code is grpc.StatusCode.OK and not self.drop


def _merge_headers(pairs: Any) -> dict[str, Any]:
    """Lower-case keys; repeated text headers are joined with ', '."""
    headers: dict[str, Any] = {}
    for key, value in pairs:
        name = key.lower()
        headers[name] = f"{headers[name]}, {value}" if name in headers and isinstance(value, str) else value
    return headers


class _DecodeFailed(Exception):
    def __init__(self, http_status: int, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status


# --------------------------------------------------------------------------- gRPC side


class _GrpcHandler:
    """Implements Export for one signal on top of the generated servicer base class."""

    def __init__(self, receiver: Receiver, sig: _Signal) -> None:
        self._receiver = receiver
        self._signal = sig

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        outcome = self._receiver._process(
            transport="grpc",
            sig=self._signal,
            headers=_merge_headers(context.invocation_metadata()),
            path=self._signal.grpc_method,
            decode=lambda: request,
            still_wanted=context.is_active,
            peer=context.peer(),
        )
        if outcome.ok:
            return outcome.response
        if outcome.retry_after is not None:
            info = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=outcome.retry_after))
            detail = any_pb2.Any()
            detail.Pack(info)
            status = status_pb2.Status(code=outcome.grpc_code.value[0], message=outcome.message, details=[detail])
            context.set_trailing_metadata(
                (
                    ("google.rpc.retryinfo-bin", info.SerializeToString()),
                    ("grpc-status-details-bin", status.SerializeToString()),
                )
            )
        context.abort(outcome.grpc_code, outcome.message)
        return None  # unreachable: abort raises


def _servicer(base: type, receiver: Receiver, sig: _Signal) -> Any:
    cls = type(f"_{sig.name.title()}Servicer", (_GrpcHandler, base), {})
    return cls(receiver, sig)


# --------------------------------------------------------------------------- HTTP side


def _decode_http_body(sig: _Signal, raw_body: bytes, content_type: str, encoding: str) -> Message:
    try:
        if encoding == "gzip":
            body = gzip.decompress(raw_body)
        elif encoding == "deflate":
            try:
                body = zlib.decompress(raw_body)
            except zlib.error:
                body = zlib.decompress(raw_body, -zlib.MAX_WBITS)  # raw deflate stream
        elif encoding in ("", "identity"):
            body = raw_body
        else:
            raise _DecodeFailed(415, f"unsupported Content-Encoding {encoding!r}")
        msg = sig.request_cls()
        if content_type == "application/json":
            json_format.ParseDict(_hex_ids_to_base64(json.loads(body)), msg, ignore_unknown_fields=True)
        elif content_type == "application/x-protobuf":
            msg.ParseFromString(body)
        else:
            raise _DecodeFailed(415, f"unsupported Content-Type {content_type!r}")
        return msg
    except _DecodeFailed:
        raise
    except (OSError, EOFError, zlib.error, ValueError, DecodeError, json_format.ParseError) as exc:
        raise _DecodeFailed(400, f"cannot decode body: {exc}") from exc


class _HttpServer(http.server.ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = False
    block_on_close = True

    def __init__(self, port: int, receiver: Receiver, ssl_ctx: ssl.SSLContext | None) -> None:
        self.receiver = receiver
        self.ssl_ctx = ssl_ctx
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._closing = False
        super().__init__((HOST, port), _HttpHandler)

    def _track(self, sock: socket.socket, add: bool) -> bool:
        with self._conns_lock:
            if not add:
                self._conns.discard(sock)
            elif self._closing:
                return False
            else:
                self._conns.add(sock)
            return True

    def finish_request(self, request: Any, client_address: Any) -> None:
        conn = request
        if not self._track(request, True):
            return  # being taken down
        try:
            if self.ssl_ctx is not None:
                request.settimeout(10)
                try:
                    conn = self.ssl_ctx.wrap_socket(request, server_side=True)
                except (OSError, ValueError):
                    return  # failed handshake; the SSL socket already closed itself
                finally:
                    self._track(request, False)
                conn.settimeout(None)
                if not self._track(conn, True):
                    return
            super().finish_request(conn, client_address)
        finally:
            self._track(conn, False)
            if conn is not request:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):  # peer went away, we were taken down, ...
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        with self._conns_lock:
            self._closing = True
            conns = list(self._conns)
        for sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _HttpHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "otlp-test-receiver"
    sys_version = ""
    server: _HttpServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _client_still_there(self) -> bool:
        sock = self.connection
        if isinstance(sock, ssl.SSLSocket):
            return True  # cannot peek through TLS cheaply; assume the client waits
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            return not readable or sock.recv(1, socket.MSG_PEEK) != b""
        except (OSError, ValueError):
            return False

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _reply(
        self,
        status: int,
        body: bytes = b"",
        content_type: str = "application/x-protobuf",
        extra: Iterable[tuple[str, str]] = (),
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in extra:
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, code: int, message: str, extra: Iterable[tuple[str, str]] = ()) -> None:
        body = status_pb2.Status(code=code, message=message).SerializeToString()
        self._reply(status, body, extra=extra)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        self._read_body()
        if path in _SIGNAL_BY_PATH:
            self._error(405, code_pb2.UNIMPLEMENTED, "use POST", extra=[("Allow", "POST")])
        else:
            self._error(404, code_pb2.NOT_FOUND, f"unknown path {path}")

    def do_POST(self) -> None:
        receiver = self.server.receiver
        path = self.path.split("?", 1)[0]
        try:
            raw_body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        headers = _merge_headers(self.headers.items())
        sig = _SIGNAL_BY_PATH.get(path)
        if sig is None:
            receiver._record(ReceivedRequest("http", "", headers, False, path, http_status=404))
            self._error(404, code_pb2.NOT_FOUND, f"unknown path {path}")
            return
        content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        encoding = headers.get("content-encoding", "identity").strip().lower()
        is_json = content_type == "application/json"

        outcome = receiver._process(
            transport="http",
            sig=sig,
            headers=headers,
            path=path,
            decode=lambda: _decode_http_body(sig, raw_body, content_type, encoding),
            still_wanted=self._client_still_there,
            peer=f"{self.client_address[0]}:{self.client_address[1]}",
        )
        if outcome.drop:
            self.close_connection = True
            return
        if outcome.ok:
            assert outcome.response is not None
            if is_json:
                body = json_format.MessageToJson(outcome.response).encode()
                self._reply(200, body, "application/json")
            else:
                self._reply(200, outcome.response.SerializeToString())
            return
        extra = [("Retry-After", str(outcome.retry_after))] if outcome.retry_after is not None else []
        self._error(outcome.http_status, outcome.grpc_code.value[0], outcome.message, extra)


# --------------------------------------------------------------------------- the receiver

_FAULT_STATUS = {
    Fault.UNAVAILABLE: (grpc.StatusCode.UNAVAILABLE, 503, "test fault: unavailable"),
    Fault.RESOURCE_EXHAUSTED: (grpc.StatusCode.RESOURCE_EXHAUSTED, 429, "test fault: resource exhausted"),
    Fault.UNAUTHENTICATED: (grpc.StatusCode.UNAUTHENTICATED, 401, "test fault: unauthenticated"),
    Fault.PERMISSION_DENIED: (grpc.StatusCode.PERMISSION_DENIED, 403, "test fault: permission denied"),
    Fault.DROP_CONNECTION: (grpc.StatusCode.UNAVAILABLE, 0, "test fault: connection dropped"),
}


class Receiver:
    """OTLP receiver on 127.0.0.1 speaking gRPC and HTTP (protobuf + JSON)."""

    def __init__(
        self,
        *,
        grpc_port: int = 0,
        http_port: int = 0,
        tls: tuple[str, str] | None = None,
        required_headers: dict[str, str] | None = None,
        keep_data: bool = True,
        grpc_identity_only: bool = False,
        max_grpc_message: int = 64 * 1024 * 1024,  # a collector's default is 4 MiB
    ) -> None:
        self.grpc_port = grpc_port
        self.http_port = http_port
        self._tls = tls
        self._required = {k.lower(): v for k, v in (required_headers or {}).items()}
        self._keep_data = keep_data  # False: only count items (cheap benchmark sink)
        # True: the gRPC server accepts uncompressed messages only, and answers a gzip-compressed
        # one with UNIMPLEMENTED (gRPC exposes no request's grpc-encoding to the handler: this is how
        # a test observes which compression a gRPC exporter really used).
        self._grpc_identity_only = grpc_identity_only
        self._max_grpc_message = max_grpc_message

        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._spans: list[ReceivedSpan] = []
        self._metrics: list[ReceivedMetric] = []
        self._logs: list[ReceivedLog] = []
        self._requests: list[ReceivedRequest] = []
        self._counts = {"spans": 0, "metrics_points": 0, "logs": 0, "server_spans": 0}

        self._fault = Fault.NONE
        self._fault_opts: dict[str, Any] = {}
        self._fault_times: int | None = None

        self._grpc_server: grpc.Server | None = None
        self._executor: futures.ThreadPoolExecutor | None = None
        self._http_server: _HttpServer | None = None
        self._http_thread: threading.Thread | None = None
        self._halt = threading.Event()  # set while down, wakes SLOW handlers
        self._started = False
        self._serving = False

    # ----------------------------------------------------------------- lifecycle
    @property
    def grpc_endpoint(self) -> str:
        return f"{'https' if self._tls else 'http'}://{HOST}:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        return f"{'https' if self._tls else 'http'}://{HOST}:{self.http_port}"

    def start(self) -> Receiver:
        if self._started:
            raise RuntimeError("receiver already started")
        self._started = True
        try:
            self._serve()
        except BaseException:
            self._shutdown_servers()
            self._started = False
            raise
        return self

    def stop(self) -> None:
        if not self._started:
            return
        self._shutdown_servers()
        self._started = False

    def down(self) -> None:
        """Stop listening on both ports (connection refused); keeps data and ports."""
        if not self._started:
            raise RuntimeError("receiver not started")
        self._shutdown_servers()

    def up(self) -> None:
        """Listen again on the same ports after :meth:`down`."""
        if not self._started:
            raise RuntimeError("receiver not started")
        if self._serving:
            return
        try:
            self._serve()
        except BaseException:
            self._shutdown_servers()
            raise

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def _serve(self) -> None:
        self._halt = threading.Event()
        cert_key = None
        if self._tls:
            cert_key = (Path(self._tls[0]).read_bytes(), Path(self._tls[1]).read_bytes())

        self._executor = futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="otlp-grpc")
        server = grpc.server(
            self._executor,
            options=[
                ("grpc.max_receive_message_length", self._max_grpc_message),
                ("grpc.max_send_message_length", 64 * 1024 * 1024),
                ("grpc.so_reuseport", 0),  # a busy port must fail loudly, not be shared
                *([("grpc.compression_enabled_algorithms_bitset", 1)] if self._grpc_identity_only else []),
            ],
        )
        self._grpc_server = server
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call]
            _servicer(trace_service_pb2_grpc.TraceServiceServicer, self, _SIGNALS["traces"]), server
        )
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(  # type: ignore[no-untyped-call]
            _servicer(metrics_service_pb2_grpc.MetricsServiceServicer, self, _SIGNALS["metrics"]), server
        )
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(  # type: ignore[no-untyped-call]
            _servicer(logs_service_pb2_grpc.LogsServiceServicer, self, _SIGNALS["logs"]), server
        )
        address = f"{HOST}:{self.grpc_port}"
        try:
            if cert_key:
                port = server.add_secure_port(address, grpc.ssl_server_credentials([(cert_key[1], cert_key[0])]))
            else:
                port = server.add_insecure_port(address)
        except RuntimeError as exc:
            raise OSError(f"cannot bind gRPC port {address}: {exc}") from exc
        if not port:
            raise OSError(f"cannot bind gRPC port {address}")
        self.grpc_port = port
        server.start()

        ssl_ctx = None
        if self._tls:
            ssl_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ssl_ctx.load_cert_chain(self._tls[0], self._tls[1])
        self._http_server = _HttpServer(self.http_port, self, ssl_ctx)
        self.http_port = self._http_server.server_address[1]
        self._http_thread = threading.Thread(
            target=self._http_server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="otlp-http",
            daemon=True,
        )
        self._http_thread.start()
        self._serving = True

    def _shutdown_servers(self) -> None:
        self._serving = False
        self._halt.set()
        if self._grpc_server is not None:
            self._grpc_server.stop(grace=None).wait(5)
            self._grpc_server = None
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        if self._http_server is not None:
            if self._http_thread is not None:
                self._http_server.shutdown()
                self._http_thread.join(5)
                self._http_thread = None
            self._http_server.close_connections()
            self._http_server.server_close()  # joins the per-connection threads
            self._http_server = None

    # ----------------------------------------------------------------- faults
    def set_fault(
        self,
        fault: Fault,
        *,
        delay: float = 0.0,
        retry_after: int = 1,
        rejected: int = 0,
        times: int | None = None,
    ) -> None:
        """Make the next requests fail. times=None: until changed; times=N: next N requests."""
        with self._lock:
            self._fault = fault
            self._fault_opts = {"delay": delay, "retry_after": retry_after, "rejected": rejected}
            self._fault_times = times
            if times is not None and times <= 0:
                self._fault = Fault.NONE

    @property
    def current_fault(self) -> Fault:
        """The fault the next request gets (NONE again once `times` requests have taken it)."""
        with self._lock:
            return self._fault

    def _take_fault(self) -> tuple[Fault, dict[str, Any]]:
        with self._lock:
            fault, opts = self._fault, dict(self._fault_opts)
            if fault is not Fault.NONE and self._fault_times is not None:
                self._fault_times -= 1
                if self._fault_times <= 0:
                    self._fault, self._fault_times = Fault.NONE, None
            return fault, opts

    # ----------------------------------------------------------------- request core
    def _process(
        self,
        *,
        transport: str,
        sig: _Signal,
        headers: dict[str, Any],
        path: str,
        decode: Callable[[], Message],
        still_wanted: Callable[[], bool],
        peer: str = "",
    ) -> _Outcome:
        halt = self._halt
        items = 0
        outcome = self._decide(headers)
        if outcome is None:
            fault, opts = self._take_fault()
            outcome = _Outcome(fault)
            if fault in _FAULT_STATUS:
                code, status, message = _FAULT_STATUS[fault]
                outcome.grpc_code, outcome.http_status, outcome.message = code, status, message
                outcome.drop = fault is Fault.DROP_CONNECTION and transport == "http"
                if fault is Fault.RESOURCE_EXHAUSTED:
                    outcome.retry_after = int(opts["retry_after"])
            else:
                try:
                    request = decode()
                except _DecodeFailed as exc:
                    outcome.grpc_code, outcome.http_status, outcome.message = (
                        grpc.StatusCode.INVALID_ARGUMENT,
                        exc.http_status,
                        str(exc),
                    )
                else:
                    items = sig.count(request)
                    if fault is Fault.SLOW and halt.wait(opts["delay"]):
                        # taken down while sleeping: behave like a vanished server
                        outcome.grpc_code, outcome.http_status = grpc.StatusCode.UNAVAILABLE, 0
                        outcome.message, outcome.drop = "receiver went down", transport == "http"
                    elif fault is Fault.SLOW and not still_wanted():
                        # the client gave up (deadline/timeout) while we slept: nothing is stored
                        outcome.grpc_code, outcome.http_status = grpc.StatusCode.CANCELLED, 0
                        outcome.message, outcome.drop = "client went away", transport == "http"
                    else:
                        response = sig.response_cls()
                        if fault is Fault.PARTIAL_SUCCESS:
                            setattr(response.partial_success, sig.rejected_field, opts["rejected"])
                            response.partial_success.error_message = "test rejection"
                        outcome.response = response
                        self._store(sig, request, transport, items)
        self._record(
            ReceivedRequest(
                transport=transport,
                signal=sig.name,
                headers=headers,
                accepted=outcome.ok,
                path=path,
                fault=outcome.fault.name,
                http_status=(outcome.http_status or None) if transport == "http" and not outcome.drop else None,
                grpc_code=outcome.grpc_code.name if transport == "grpc" else None,
                items=items,
                peer=peer,
            )
        )
        return outcome

    def _decide(self, headers: dict[str, Any]) -> _Outcome | None:
        missing = [k for k, v in self._required.items() if headers.get(k) != v]
        if not missing:
            return None
        return _Outcome(
            Fault.NONE,
            grpc.StatusCode.UNAUTHENTICATED,
            401,
            f"missing or wrong required header(s): {', '.join(sorted(missing))}",
        )

    def _store(self, sig: _Signal, request: Any, transport: str, items: int) -> None:
        converted = sig.convert(request, transport) if self._keep_data else []
        with self._cond:
            self._counts[_COUNT_KEYS[sig.name]] += items
            if sig.name == "traces":  # one per request served, whatever else a launcher adds (benchmarks)
                self._counts["server_spans"] += _count_server_spans(request)
            self._stores()[sig.name].extend(converted)
            self._cond.notify_all()

    def _stores(self) -> dict[str, list[Any]]:
        return {"traces": self._spans, "metrics": self._metrics, "logs": self._logs}

    def _record(self, req: ReceivedRequest) -> None:
        with self._cond:
            self._requests.append(req)
            self._cond.notify_all()

    # ----------------------------------------------------------------- accessors
    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    def metrics(self) -> list[ReceivedMetric]:
        with self._lock:
            return list(self._metrics)

    def logs(self) -> list[ReceivedLog]:
        with self._lock:
            return list(self._logs)

    def requests(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._requests)

    def counts(self) -> dict[str, int]:
        """Items accepted so far (also counted with keep_data=False)."""
        with self._lock:
            return dict(self._counts)

    def clear(self) -> None:
        with self._lock:
            self._spans.clear()
            self._metrics.clear()
            self._logs.clear()
            self._requests.clear()
            self._counts = dict.fromkeys(self._counts, 0)

    # ----------------------------------------------------------------- waiting
    def _wait(
        self,
        get: Callable[[], list[_T]],
        check: Callable[[list[_T]], bool],
        timeout: float,
        what: str,
        describe: Callable[[list[_T]], Any],
    ) -> list[_T]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                items = list(get())
                if check(items):
                    return items
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            requests = list(self._requests)
        rejected = [
            f"{r.transport}:{r.signal}:{r.fault}:{r.http_status or r.grpc_code}" for r in requests if not r.accepted
        ]
        raise AssertionError(
            f"timed out after {timeout:.1f}s waiting for {what}; received {len(items)}: {describe(items)}; "
            f"{len(requests)} request(s) seen, not accepted: {rejected or 'none'}"
        )

    @staticmethod
    def _check(predicate: Any, attr: str) -> tuple[Callable[[list[Any]], bool], str]:
        if isinstance(predicate, bool):
            raise TypeError("predicate must be a callable, an int or a str")
        if isinstance(predicate, int):
            return (lambda items: len(items) >= predicate), f"at least {predicate} item(s)"
        if isinstance(predicate, str):
            return (lambda items: any(getattr(i, attr) == predicate for i in items)), f"{attr}={predicate!r}"
        return predicate, f"predicate {getattr(predicate, '__name__', predicate)!r}"

    def wait_for_spans(
        self, predicate: Callable[[list[ReceivedSpan]], bool] | int | str, timeout: float = 15.0
    ) -> list[ReceivedSpan]:
        """int: at least that many spans; str: a span with that name; callable: predicate(spans)."""
        check, what = self._check(predicate, "name")
        return self._wait(lambda: self._spans, check, timeout, f"spans ({what})", lambda s: [x.name for x in s])

    def wait_for_metrics(
        self, predicate_or_name: Callable[[list[ReceivedMetric]], bool] | int | str, timeout: float = 15.0
    ) -> list[ReceivedMetric]:
        """str: a metric with that name; int: at least that many metrics; callable: predicate(metrics)."""
        check, what = self._check(predicate_or_name, "name")
        return self._wait(
            lambda: self._metrics, check, timeout, f"metrics ({what})", lambda m: sorted({x.name for x in m})
        )

    def wait_for_logs(
        self, predicate_or_count: Callable[[list[ReceivedLog]], bool] | int | str, timeout: float = 15.0
    ) -> list[ReceivedLog]:
        """int: at least that many records; str: a record with that body; callable: predicate(logs)."""
        check, what = self._check(predicate_or_count, "body")
        return self._wait(lambda: self._logs, check, timeout, f"logs ({what})", lambda r: [x.body for x in r][:50])

    def wait_for_requests(
        self, predicate_or_count: Callable[[list[ReceivedRequest]], bool] | int, timeout: float = 15.0
    ) -> list[ReceivedRequest]:
        """int: at least that many requests (accepted or not); callable: predicate(requests)."""
        check, what = self._check(predicate_or_count, "signal")
        return self._wait(
            lambda: self._requests,
            check,
            timeout,
            f"requests ({what})",
            lambda r: [f"{x.transport}:{x.signal}:{'ok' if x.accepted else 'rejected'}" for x in r],
        )


# --------------------------------------------------------------------------- TLS helper


def make_self_signed_cert(directory: str | Path) -> tuple[str, str]:
    """Write a self-signed cert (CN=localhost, SAN localhost + 127.0.0.1) and key; return their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    try:
        import cryptography  # noqa: F401
    except ImportError:
        _cert_with_openssl(cert_path, key_path)
    else:
        _cert_with_cryptography(cert_path, key_path)
    return str(cert_path), str(key_path)


def _cert_with_cryptography(cert_path: Path, key_path: Path) -> None:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _cert_with_openssl(cert_path: Path, key_path: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("neither the 'cryptography' package nor the 'openssl' CLI is available")
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-nodes",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-keyout",
            str(key_path),
            "-out",
            str(cert_path),
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            f"subjectAltName=DNS:localhost,IP:{HOST}",
        ],
        check=True,
        capture_output=True,
    )


# --------------------------------------------------------------------------- pytest fixture

try:
    import pytest
except ImportError:  # pragma: no cover - script use without pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture(name="otlp_receiver")
    def otlp_receiver_fixture() -> Iterator[Receiver]:
        """Fixture ``otlp_receiver``: a started :class:`Receiver` on ephemeral ports, stopped at teardown.

        Import either name into a test module or conftest (``otlp_receiver_fixture`` avoids
        lint complaints about the test parameter shadowing the import).
        """
        with Receiver() as rcv:
            yield rcv

    otlp_receiver = otlp_receiver_fixture


# --------------------------------------------------------------------------- standalone sink


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="OTLP sink on 127.0.0.1 (gRPC + HTTP)")
    parser.add_argument("--grpc-port", type=int, default=0)
    parser.add_argument("--http-port", type=int, default=0)
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"), help="serve TLS with this cert/key")
    args = parser.parse_args(argv)

    stop = threading.Event()

    def _on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    rcv = Receiver(
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        tls=tuple(args.tls) if args.tls else None,
        keep_data=False,
    )
    with rcv:
        print(f"READY grpc={rcv.grpc_port} http={rcv.http_port}", flush=True)
        while not stop.wait(0.5):
            pass
    counts = rcv.counts()
    print(f"spans={counts['spans']} metrics_points={counts['metrics_points']} logs={counts['logs']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
