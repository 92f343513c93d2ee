"""What an OTLP export failure means, and its fix: one source for `check-config --probe` (launcher)
and for the program's run-time export errors (hook). Stdlib only, no I/O.

The probe sees structured failures (an `ssl.SSLCertVerificationError`, a refused socket) and takes
its fixes from here; at run time only the exporters' error text is left (gRPC's status and details,
requests' exception chain), so `classify` reads that text, knowing how the exporter was configured:
"Socket closed" means "the collector wants TLS" only from a plaintext channel.

Example:
    >>> target = Target("https://collector:4317", grpc=True)
    >>> fault = classify("gRPC UNAVAILABLE: Tls handshake failed: SSL_ERROR_SSL: WRONG_VERSION_NUMBER", target)
    >>> fault.kind, fault.what
    ('tls_plaintext_collector', 'TLS is configured but collector:4317 answers in plaintext (WRONG_VERSION_NUMBER)')
    >>> fault.fix
    'for a plaintext collector use http:// (gRPC: or otlp.insecure=true / OTEL_EXPORTER_OTLP_INSECURE=true)'
"""

from __future__ import annotations

import os
import re
import urllib.parse
from typing import NamedTuple

__all__ = ["ANSWER_TIMEOUT_FIX", "CONNECT_TIMEOUT_FIX", "DNS_FIX", "GRPC_STATUS", "HTTP_STATUS", "USE_HTTPS_FIX",
           "Fault", "Target", "ca_bundle_fix", "classify", "handshake_fix", "plaintext_fix", "refused_fix", "too_large",
           "untrusted_fix"]

CONNECT_TIMEOUT_FIX = "check the host and port, and any firewall in between"
ANSWER_TIMEOUT_FIX = "the collector is slow or overloaded, or this port is not an OTLP receiver"
USE_HTTPS_FIX = "if the collector serves TLS on this port, use https://"
DNS_FIX = "check the host name in the collector URL"
_HEADERS_FIX = "check otlp.headers (e.g. the authorization token)"
_DENIED_FIX = "the credentials in otlp.headers are not allowed to export here"

# A status the collector answered with: (kind, fix).
GRPC_STATUS = {
    "UNAUTHENTICATED": ("unauthenticated", _HEADERS_FIX),
    "PERMISSION_DENIED": ("permission_denied", _DENIED_FIX),
    "UNIMPLEMENTED": ("not_found", "is this an OTLP/gRPC port, with a pipeline for this signal?"),
}
HTTP_STATUS = {
    401: ("unauthenticated", _HEADERS_FIX),
    403: ("permission_denied", _DENIED_FIX),
    404: ("not_found", "no OTLP receiver at this path: check the collector path (cryostorm adds /v1/<signal>)"),
    405: ("not_found", "this URL does not accept OTLP exports: check the collector path"),
    415: ("error", "the server does not take OTLP/protobuf here: is this an OTLP/HTTP endpoint?"),
}
# A batch over the receiver's size limit (gRPC: 4 MiB by default) fails whenever it is sent again.
_TOO_LARGE = re.compile(r"(?:Received|Sent) message larger than max[^)]*\)?", re.I)
_TOO_LARGE_FIX = ("export fewer items per request (<signal>.export_config.batch_size, e.g. 128), or raise the "
                  "collector's limit (its OTLP receiver's max_recv_msg_size_mib)")
HTTP_STATUS[413] = ("too_large", _TOO_LARGE_FIX)


def too_large(detail: str) -> bool:
    """Is this export error the receiver refusing the request's size (never to be retried as it is)?"""
    return _TOO_LARGE.search(detail) is not None


def refused_fix(port: int) -> str:
    return f"is the collector running and listening on port {port}?"


def plaintext_fix(grpc: bool) -> str:
    """TLS is configured, the collector speaks plaintext."""
    return "for a plaintext collector use an http:// URL" + (  # an https URL is TLS, whatever insecure says
        " (gRPC: with otlp.insecure unset or true; false makes it TLS too)" if grpc else "")


def handshake_fix(port: int | str, grpc: bool) -> str:
    """A TLS handshake failed without naming why: maybe the collector speaks plaintext."""
    return f"does the collector serve TLS on port {port}? {plaintext_fix(grpc)}"


def untrusted_fix(certificate: str | None) -> str:
    if certificate:
        return f"check that otlp.certificate_file ({certificate}) holds the CA that signed the collector's certificate"
    return "set otlp.certificate_file to the CA bundle that signed the collector's certificate"


def ca_bundle_fix(variable: str) -> str:
    """requests verifies with REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE, not with the exporter's certificate file."""
    return (f"{variable} is set: requests verifies with it instead of otlp.certificate_file; unset it "
            "for the program, or point it at the collector's CA bundle")


class Fault(NamedTuple):
    """`kind`: one word for the class (also what repeated failures are counted by); `what` happened
    (never a header value: only the exporter's error text and the endpoint); the `fix`."""

    kind: str
    what: str
    fix: str


class Target(NamedTuple):
    """How the failing exporter was configured."""

    endpoint: str
    grpc: bool
    tls: bool | None = None  # None: from the scheme (https)
    certificate: str | None = None

    @property
    def where(self) -> str:
        parsed = urllib.parse.urlsplit(self.endpoint if "://" in self.endpoint else f"http://{self.endpoint}")
        try:
            port = parsed.port or (443 if parsed.scheme == "https" else 80)
        except ValueError:
            port = 0
        return f"{parsed.hostname or ''}:{port}"

    @property
    def uses_tls(self) -> bool:
        return self.tls if self.tls is not None else self.endpoint.startswith("https://")


_UNTRUSTED = re.compile(r"CERTIFICATE_VERIFY_FAILED\]?:?\s*(?:certificate verify failed:\s*)?([\w .-]*)", re.I)
_PLAINTEXT_PEER = re.compile(r"WRONG_VERSION_NUMBER|wrong version number|packet length too long|record layer failure",
                             re.I)
_OTHER_TLS = re.compile(r"Tls handshake failed|SSL_ERROR_\w+|SSLError|\[SSL[^\]]*\]", re.I)
_GRPC_CODE = re.compile(r"\b(UNAUTHENTICATED|PERMISSION_DENIED|UNIMPLEMENTED)\b")
_HTTP_CODE = re.compile(r"\b(?:HTTP|code:?)\s*(\d{3})\b")
_REFUSED = re.compile(r"Connection refused|ECONNREFUSED", re.I)
_DNS = re.compile(r"Name or service not known|nodename nor servname|Temporary failure in name resolution|"
                  r"DNS resolution failed|No address associated with hostname|errors resolving|Domain name not found",
                  re.I)  # the last two: grpcio's event engine (1.6x)
# A plaintext request to a TLS port: the TLS server drops it (gRPC: "Socket closed", requests: reset or
# "Remote end closed connection"); some answer 400 ("plain HTTP request was sent to HTTPS port").
_CLOSED = re.compile(r"Socket closed|Connection reset by peer|Remote end closed connection|RemoteDisconnected|"
                     r"plain HTTP request was sent to HTTPS port|Connection aborted", re.I)
_CONNECT_TIMEOUT = re.compile(r"ConnectTimeout|Connection to \S+ timed out|connect timeout|TCP connect timed out|"
                              r"connect\(\) timed out|tcp handshaker shutdown", re.I)  # otlp_send's check; grpcio
_TIMEOUT = re.compile(r"DEADLINE_EXCEEDED|Deadline Exceeded|ReadTimeout|Read timed out|timed out", re.I)


def _tls(detail: str, target: Target, where: str) -> Fault | None:
    found = _UNTRUSTED.search(detail)
    if found:
        reason = found.group(1).strip() or "CERTIFICATE_VERIFY_FAILED"
        # requests (OTLP/HTTP) verifies with REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE over the certificate file
        bundle = next((n for n in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE") if os.environ.get(n)), None)
        return Fault("tls_untrusted", f"the TLS certificate of {where} is not trusted ({reason})",
                     ca_bundle_fix(bundle) if bundle and target.certificate and not target.grpc else
                     untrusted_fix(target.certificate))
    found = _PLAINTEXT_PEER.search(detail)
    if found:
        what = f"TLS is configured but {where} answers in plaintext ({found.group(0)})"
        return Fault("tls_plaintext_collector", what, plaintext_fix(target.grpc))
    return None


def _answered(detail: str, target: Target, where: str) -> Fault | None:
    found = _TOO_LARGE.search(detail)
    if found:
        return Fault("too_large", f"the collector refused the export as too large ({found.group(0)})", _TOO_LARGE_FIX)
    if target.grpc:
        found = _GRPC_CODE.search(detail)
        if found:
            kind, fix = GRPC_STATUS[found.group(1)]
            return Fault(kind, f"the collector answered {found.group(1)}", fix)
        return None
    found = _HTTP_CODE.search(detail)
    if found and int(found.group(1)) in HTTP_STATUS:
        kind, fix = HTTP_STATUS[int(found.group(1))]
        return Fault(kind, f"the collector answered HTTP {found.group(1)}", fix)
    return None


# gRPC sent to an HTTP/1 server (the OTLP/HTTP port): it gets an HTTP/1 answer where HTTP/2 frames belong.
_NOT_HTTP2 = re.compile(r"Failed parsing HTTP/2|Expected SETTINGS frame|Trying to connect an http1\.x server", re.I)


def _connection(detail: str, target: Target, where: str) -> Fault | None:
    port = where.rpartition(":")[2]
    found = _NOT_HTTP2.search(detail) if target.grpc else None
    if found:
        return Fault("wrong_protocol", f"{where} answers HTTP/1, not gRPC ({found.group(0)}): an OTLP/HTTP port?",
                     "send gRPC to the collector's OTLP/gRPC port (4317 by default), or set otlp.protocol="
                     "http/protobuf for this one")
    if _REFUSED.search(detail):
        return Fault("refused", f"connection to {where} refused", refused_fix(int(port) if port.isdigit() else 0))
    if _DNS.search(detail):
        return Fault("dns", f"the host name of {where} does not resolve", DNS_FIX)
    found = _CLOSED.search(detail)
    if found and not target.uses_tls:
        return Fault("tls_expected", f"{where} closed the connection without an answer ({found.group(0)}): "
                     "it may expect TLS" + ("" if target.grpc else ", or be an OTLP/gRPC port"), USE_HTTPS_FIX + (
                         "" if target.grpc else "; if it is the OTLP/gRPC port, send OTLP/HTTP to the collector's "
                         "OTLP/HTTP port (4318 by default), or set otlp.protocol=grpc"))
    found = _OTHER_TLS.search(detail) if target.uses_tls else None
    if found:
        return Fault("tls", f"the TLS handshake with {where} failed ({found.group(0)})",
                     handshake_fix(port, target.grpc))
    return None


def _timeout(detail: str, target: Target, where: str) -> Fault | None:
    found = _CONNECT_TIMEOUT.search(detail)
    if found:
        return Fault("timeout", f"no connection to {where} in time ({found.group(0)})", CONNECT_TIMEOUT_FIX)
    found = _TIMEOUT.search(detail)
    if found:
        return Fault("timeout", f"no answer from {where} in time ({found.group(0)})", ANSWER_TIMEOUT_FIX)
    return None


def classify(detail: str, target: Target) -> Fault | None:
    """The class and fix of an export error's text (`detail`), or None when it names none of them.
    The most telling evidence first: a TLS verdict, then the collector's answer, then the connection."""
    where = target.where
    for rule in (_tls, _answered, _connection, _timeout):
        fault = rule(detail, target, where)
        if fault is not None:
            return fault
    return None
