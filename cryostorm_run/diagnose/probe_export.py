"""The OTLP step of `check-config --probe`: one Export request per signal, as the exporters send it
(an empty request is valid OTLP; `--probe-span` adds one span), its answer classified."""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import Mapping
from typing import Any

from cryostorm_run.common.faults import GRPC_STATUS, HTTP_STATUS, USE_HTTPS_FIX, ca_bundle_fix
from cryostorm_run.diagnose.probe_types import ProbeFailure, ProbeTarget, remaining

__all__ = ["grpc_export", "http_export", "make_request"]


def make_request(signal: str, with_span: bool, service_name: str) -> object:
    """An empty Export*ServiceRequest for `signal`; for traces `with_span`, one span named `cryostorm-run probe`."""
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

    if signal == "metrics":
        return metrics_service_pb2.ExportMetricsServiceRequest()
    if signal == "logs":
        return logs_service_pb2.ExportLogsServiceRequest()
    request = trace_service_pb2.ExportTraceServiceRequest()
    if with_span:
        from opentelemetry.proto.common.v1 import common_pb2
        from opentelemetry.proto.trace.v1 import trace_pb2

        now = time.time_ns()
        resource = request.resource_spans.add()
        resource.resource.attributes.append(
            common_pb2.KeyValue(key="service.name", value=common_pb2.AnyValue(string_value=service_name)))
        scope = resource.scope_spans.add()
        scope.scope.name = "cryostorm-run"
        scope.spans.append(trace_pb2.Span(trace_id=os.urandom(16), span_id=os.urandom(8), name="cryostorm-run probe",
                                          kind=trace_pb2.Span.SPAN_KIND_INTERNAL, start_time_unix_nano=now - 1000,
                                          end_time_unix_nano=now))
    return request


# After the transport checks passed, UNAVAILABLE is a plaintext channel that a TLS port dropped.
_GRPC_KINDS = {**GRPC_STATUS, "UNAVAILABLE": ("error", USE_HTTPS_FIX)}


def grpc_export(target: ProbeTarget, signal: str, request: object, deadline: float) -> None:
    """Send `request` over gRPC with the target's TLS and headers; raise ProbeFailure naming what went wrong."""
    import grpc

    address = f"{target.host}:{target.port}"
    if target.tls:
        def read(path: str | None) -> bytes | None:
            if path is None:
                return None
            with open(path, "rb") as fh:
                return fh.read()

        credentials = grpc.ssl_channel_credentials(read(target.certificate), read(target.client_key),
                                                   read(target.client_certificate))
        channel = grpc.secure_channel(address, credentials)
    else:
        channel = grpc.insecure_channel(address)
    stub = _stub(signal, channel)
    try:
        stub.Export(request, timeout=remaining(deadline), metadata=[(k.lower(), v) for k, v in target.headers])
    except grpc.RpcError as exc:
        code = exc.code().name if hasattr(exc, "code") else "UNKNOWN"
        if code == "DEADLINE_EXCEEDED":
            raise TimeoutError("no answer") from None
        details = exc.details() if hasattr(exc, "details") else ""
        kind, hint = _GRPC_KINDS.get(code, ("error", ""))
        message = f"gRPC {code}" + (f": {details}" if details else "")
        if code == "UNIMPLEMENTED":
            message = f"the server does not implement the OTLP {signal} service (gRPC UNIMPLEMENTED)"
        raise ProbeFailure(kind, message, hint) from None
    finally:
        channel.close()


def _stub(signal: str, channel: object) -> Any:
    if signal == "metrics":
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc

        return metrics_service_pb2_grpc.MetricsServiceStub(channel)  # type: ignore[no-untyped-call]
    if signal == "logs":
        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc

        return logs_service_pb2_grpc.LogsServiceStub(channel)  # type: ignore[no-untyped-call]
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

    return trace_service_pb2_grpc.TraceServiceStub(channel)  # type: ignore[no-untyped-call]


def _ssl_reason(exc: BaseException) -> str:
    """The TLS reason buried in a requests/urllib3 exception chain."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            break
        if isinstance(seen, ssl.SSLCertVerificationError):
            return f"certificate not trusted: {seen.verify_message}"
        if isinstance(seen, ssl.SSLError):
            return str(seen.reason or seen)
        inner = getattr(seen, "reason", None)
        if not isinstance(inner, BaseException):
            inner = next((a for a in seen.args if isinstance(a, BaseException)), None) or seen.__context__
        seen = inner
    return "handshake failed"


def http_export(target: ProbeTarget, signal: str, request: object, deadline: float,
                environ: Mapping[str, str]) -> None:
    """POST `request` to the signal's OTLP/HTTP URL; raise ProbeFailure naming what went wrong."""
    import requests

    # Like the exporter (requests session, CA bundle as `session.verify`), so REQUESTS_CA_BUNDLE acts the same.
    session = requests.Session()
    session.verify = target.certificate or True
    if target.client_certificate and target.client_key:
        session.cert = (target.client_certificate, target.client_key)
    headers = {"Content-Type": "application/x-protobuf", **dict(target.headers)}
    try:
        response = session.post(target.url([signal]), data=request.SerializeToString(),  # type: ignore[attr-defined]
                                headers=headers, timeout=remaining(deadline))
    except requests.exceptions.SSLError as exc:
        bundles = [n for n in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE") if environ.get(n)]
        hint = "check the https:// scheme and otlp.certificate_file"
        if bundles and target.certificate:
            hint = ca_bundle_fix(bundles[0])
        message = f"TLS error talking to {target.host}:{target.port} ({_ssl_reason(exc)})"
        raise ProbeFailure("tls", message, hint) from None
    except requests.exceptions.Timeout:
        raise TimeoutError("no answer") from None
    except requests.exceptions.ConnectionError:
        raise ProbeFailure("error", f"{target.host}:{target.port} closed the connection without an HTTP answer",
                           USE_HTTPS_FIX) from None
    finally:
        session.close()
    if 200 <= response.status_code < 300:
        return
    kind, hint = HTTP_STATUS.get(response.status_code, ("error", ""))
    raise ProbeFailure(kind, f"HTTP {response.status_code} {response.reason}", hint)
