"""cryostorm's own OTLP span transport: the pre-encoded request bytes sent on public APIs only.

gRPC through grpcio's public API (one channel, a unary call taking the bytes as they are), HTTP
through `requests` (a Session whose connection pool holds one connection per export in flight).
Both are safe to call from several threads at once, which is what lets several exports of one
queue be in flight together (the SDK's exporters serialise their exports). The options are the
ones the SDK's span exporters would get from cryostorm (`otlp._grpc_kwargs` / `otlp._http_kwargs`),
with the SDK's meaning: TLS from the endpoint's scheme and the insecure flag, certificates,
headers, gzip, the per-request timeout. Retries live in `deliver`, within the retry budget.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from cryostorm_run.export.reach import connection_check

_logger = logging.getLogger("opentelemetry.cryostorm.export.transport")

TRACE_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
# OTLP's retryable gRPC codes (RESOURCE_EXHAUSTED: the collector is overloaded), as the SDK's exporter.
TRANSIENT_CODES = frozenset({"CANCELLED", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED", "OUT_OF_RANGE",
                             "UNAVAILABLE", "DATA_LOSS"})
TRANSIENT_HTTP = frozenset({429, 502, 503, 504})
# The keyword arguments of the SDK's span exporters that this transport honours (others, e.g. from
# `additional_exporter_args`: the SDK's exporter is used instead).
GRPC_KWARGS = frozenset({"endpoint", "headers", "timeout", "compression", "insecure", "credentials"})
HTTP_KWARGS = frozenset({"endpoint", "headers", "timeout", "compression", "certificate_file",
                         "client_certificate_file", "client_key_file"})


class Attempt(NamedTuple):
    """What one request ended with."""

    ok: bool
    transient: bool = False  # worth retrying: unreachable, overloaded, timed out
    retry_after: float | None = None  # the collector's own delay (RetryInfo, Retry-After)
    error: str = ""
    response: Any = None  # the parsed ExportTraceServiceResponse (partial success)


def _version() -> str:
    try:
        from opentelemetry.exporter.otlp.proto.grpc.version import __version__
    except ImportError:  # pragma: no cover - the package is a dependency
        return "OTel-OTLP-Exporter-Python"
    return f"OTel-OTLP-Exporter-Python/{__version__}"


class GrpcSender:
    """One channel; `send` may be called from several threads at once."""

    def __init__(self, kwargs: Mapping[str, Any]) -> None:
        import urllib.parse

        import grpc
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

        from cryostorm_run.export import forkgate

        endpoint = str(kwargs.get("endpoint") or "http://localhost:4317")
        parsed = urllib.parse.urlparse(endpoint)
        # As the SDK's exporter: https is TLS; otherwise the insecure flag, or else the scheme decides.
        insecure = kwargs.get("insecure")
        if parsed.scheme == "https":
            insecure = False
        elif insecure is None:
            insecure = parsed.scheme == "http"
        self.target = parsed.netloc or endpoint
        self.timeout = float(kwargs.get("timeout") or 10)
        # After an outage, reconnect within about a second (gRPC's own backoff grows to 120 s): the
        # same channel options the SDK's exporters get (otlp.RECONNECT_OPTIONS, through the kwargs).
        options = [("grpc.primary_user_agent", _version()), *kwargs.get("channel_options", ())]
        compression = kwargs.get("compression")
        if insecure:
            self._channel = grpc.insecure_channel(self.target, options=options, compression=compression)
        else:
            credentials = kwargs.get("credentials") or grpc.ssl_channel_credentials()
            self._channel = grpc.secure_channel(self.target, credentials, options=options, compression=compression)
        self._call = self._channel.unary_unary(TRACE_EXPORT, request_serializer=_passthrough,
                                               response_deserializer=ExportTraceServiceResponse.FromString)
        self._metadata = tuple((kwargs.get("headers") or {}).items()) or None
        self._rpc_error = grpc.RpcError
        self._forkgate = forkgate

    def send(self, data: bytes, timeout: float) -> Attempt:
        try:
            with self._forkgate.grpc_call():  # never in flight when the process forks (export/forkgate.py)
                response = self._call(data, timeout=timeout, metadata=self._metadata)
        except self._rpc_error as error:
            code = error.code() if callable(getattr(error, "code", None)) else None
            name = getattr(code, "name", "UNKNOWN")
            details = error.details() if callable(getattr(error, "details", None)) else ""
            from cryostorm_run.common.faults import too_large  # here: faults imports re, kept out of every start

            retry = name in TRANSIENT_CODES and not too_large(details)  # over the receiver's size limit: for good
            if name == "DEADLINE_EXCEEDED":
                details += connection_check(self.target, timeout)
            return Attempt(False, retry, _retry_info(error), f"gRPC {name}: {details}")
        return Attempt(True, response=response)

    def close(self) -> None:
        self._channel.close()


def _passthrough(data: bytes) -> bytes:
    return data


def _retry_info(error: Any) -> float | None:
    trailing = getattr(error, "trailing_metadata", None)
    try:
        found = dict(trailing() or ()).get("google.rpc.retryinfo-bin") if callable(trailing) else None
        if found is None:
            return None
        from google.rpc.error_details_pb2 import RetryInfo  # type: ignore[import-untyped]

        info = RetryInfo.FromString(found)
        return float(info.retry_delay.seconds + info.retry_delay.nanos / 1e9)
    except Exception:  # malformed: the usual backoff
        return None


class HttpSender:
    """A requests Session with one pooled connection per export in flight."""

    def __init__(self, kwargs: Mapping[str, Any], pool_size: int) -> None:
        import requests
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

        self.url = str(kwargs.get("endpoint") or "http://localhost:4318/v1/traces")
        self.timeout = float(kwargs.get("timeout") or 10)
        compression = kwargs.get("compression")
        self.compression = str(getattr(compression, "value", compression or "none")).lower()
        self.headers = {"Content-Type": "application/x-protobuf", "User-Agent": _version(),
                        **dict(kwargs.get("headers") or {})}
        if self.compression in ("gzip", "deflate"):
            self.headers["Content-Encoding"] = self.compression
        # As the SDK's exporter: the CA file (else the system's), a client certificate with its key, set
        # on the Session (so REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE still win, as README "Known limits" says).
        self._session = requests.Session()
        self._session.verify = kwargs.get("certificate_file") or True
        cert, key = kwargs.get("client_certificate_file"), kwargs.get("client_key_file")
        if cert:
            self._session.cert = (cert, key) if key else cert
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=max(1, pool_size))
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._response_cls = ExportTraceServiceResponse
        self._request_error = requests.RequestException
        # Prepared once, sent many times: `Session.post` would merge the environment's proxies and CA
        # bundle, look up ~/.netrc and build the request anew for every export, half the CPU of a send
        # (0.72 -> 0.38 ms for 150 kB here). The environment is read once, when the sender is built, with
        # what `post` would pass: REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE and proxies still win as they do there.
        self._template = self._session.prepare_request(requests.Request("POST", self.url, headers=self.headers,
                                                                        data=b""))
        self._settings = self._session.merge_environment_settings(self._template.url or self.url, {}, None, None,
                                                                  None)

    def send(self, data: bytes, timeout: float) -> Attempt:
        import gzip
        import zlib

        if self.compression == "gzip":
            data = gzip.compress(data)
        elif self.compression == "deflate":
            data = zlib.compress(data)
        try:
            request = self._template.copy()
            request.prepare_body(data, None)
            response = self._session.send(request, timeout=timeout, **self._settings)
        except self._request_error as error:  # refused, reset, timed out: worth retrying
            return Attempt(False, True, None, f"{type(error).__name__}: {error}")
        status = response.status_code
        if 200 <= status < 300:
            parsed = None
            if response.content:
                try:
                    parsed = self._response_cls.FromString(response.content)
                except Exception:  # not protobuf (a proxy's page): nothing to report
                    parsed = None
            return Attempt(True, response=parsed)
        retry_after = None
        header = response.headers.get("Retry-After")
        if header:
            try:
                retry_after = max(0.0, float(header))
            except ValueError:  # an HTTP date: the usual backoff
                retry_after = None
        return Attempt(False, status in TRANSIENT_HTTP, retry_after, f"HTTP {status}: {response.text[:200]}")

    def close(self) -> None:
        self._session.close()


def deliver(sender: Any, data: bytes, *, budget_s: float, stop: threading.Event,
            on_answer: Callable[[bool, float], None], what: str, kept: bool = False) -> Attempt:
    """Send `data`, retrying transient failures with backoff (or the collector's own delay) for up to
    `budget_s`; `on_answer(ok, seconds)` after each attempt (the queue tells a stuck collector by it,
    and a near one by how soon it answers).
    `kept`: a transient failure past the budget leaves the data queued (said so, not "failed")."""
    import random

    from cryostorm_run.export.errors import CONFIGURATION_FAULTS, explain, note_transport_error

    started = time.monotonic()
    delay = 0.5
    told = False
    where = getattr(sender, "target", None) or sender.url
    while True:
        sent = time.monotonic()
        attempt: Attempt = sender.send(data, sender.timeout)
        on_answer(attempt.ok, time.monotonic() - sent)
        if not attempt.ok:
            note_transport_error(attempt.error)
        if attempt.ok or not attempt.transient or stop.is_set():
            break
        explained = None if told else explain(attempt.error)
        if explained is not None and explained[1].kind in CONFIGURATION_FAULTS:
            # A TLS mismatch fails transiently (UNAVAILABLE, SSLError) yet no retry heals it: say so now.
            told = True
            _logger.warning("exporting %s to %s failed: %s", what, where, attempt.error)
        wait = attempt.retry_after if attempt.retry_after is not None else delay * random.uniform(0.8, 1.2)
        if time.monotonic() - started + wait >= budget_s:
            if kept:  # back to the queue, whose worker takes it again at once: the backoff first, or a budget
                stop.wait(wait)  # shorter than it (export_config.timeout_millis < ~0.4 s) retried in a busy loop
            break
        _logger.debug("exporting %s: %s; retrying in %.1fs", what, attempt.error, wait)
        if stop.wait(wait):
            break
        delay = min(delay * 2, 1.0)  # back within about a second of the collector
    if not attempt.ok and kept and attempt.transient and not stop.is_set():
        _logger.warning("exporting %s to %s: still failing after %.1f s, kept in the queue to be retried: %s", what,
                        where, time.monotonic() - started, attempt.error)
    elif not attempt.ok and attempt.transient and stop.is_set():
        # shut down with this export under way (the exit's budget spent, or a long outage given up on):
        # its channel closed under it (gRPC CANCELLED), or no retry was left to make
        _logger.warning("exporting %s to %s failed and was not retried: the exporter was shut down (%s)", what,
                        where, attempt.error)
    elif not attempt.ok:
        _logger.warning("exporting %s to %s failed%s: %s", what, where,
                        " (retried until the budget ran out)" if attempt.transient else "", attempt.error)
    return attempt


def span_sender(protocol: str, kwargs: Mapping[str, Any], pool_size: int) -> Any:
    if protocol == "grpc":
        return GrpcSender(kwargs)
    return HttpSender(kwargs, pool_size)
