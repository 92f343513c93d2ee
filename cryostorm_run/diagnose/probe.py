"""`check-config --probe`: can each enabled OTLP signal reach its collector, as configured?

Each distinct endpoint is checked step by step, so a failure says exactly what is wrong:
DNS lookup, TCP connect (refused / no answer), TLS handshake (untrusted certificate, a plaintext
collector), then one empty Export request (valid OTLP) with the configured headers: 401/403
(UNAUTHENTICATED / PERMISSION_DENIED), 404 (wrong path), OK. Header values are never shown.

Example:
    >>> from cryostorm_run import TelemetrySettings
    >>> probe_targets(TelemetrySettings())  # the console exporter: nothing to probe
    []
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

from cryostorm_run.common.faults import (
    ANSWER_TIMEOUT_FIX,
    CONNECT_TIMEOUT_FIX,
    DNS_FIX,
    handshake_fix,
    refused_fix,
    untrusted_fix,
)
from cryostorm_run.config.enums import ExporterType, OtlpProtocol
from cryostorm_run.config.model import TelemetryModel
from cryostorm_run.diagnose.probe_types import ProbeFailure, ProbeResult, ProbeTarget, remaining
from cryostorm_run.launch.envmap import (
    SIGNALS,
    effective_exporters,
    effective_headers,
    effective_protocol,
    signal_endpoint,
    tls_files,
)

__all__ = ["ProbeResult", "ProbeTarget", "probe", "probe_targets", "render_results"]

DEFAULT_TIMEOUT_S = 3.0


def probe_targets(settings: TelemetryModel) -> list[ProbeTarget]:
    """The endpoints of the signals exporting with OTLP; signals sharing one endpoint share a target."""
    targets: dict[tuple[object, ...], ProbeTarget] = {}
    for signal, (upper, path) in SIGNALS.items():
        if ExporterType.OTLP not in effective_exporters(settings, signal):
            continue
        protocol = effective_protocol(settings, signal)
        url = signal_endpoint(settings, signal)
        base = url if protocol is OtlpProtocol.GRPC else url[: -len(path)]
        scheme = urllib.parse.urlsplit(url).scheme
        # As the SDK decides: gRPC uses TLS for https, or for http when insecure is explicitly false.
        insecure = getattr(settings, signal).insecure
        insecure = settings.otlp.insecure if insecure is None else insecure
        tls = scheme == "https" or (protocol is OtlpProtocol.GRPC and insecure is False)
        ca, cert, key_file = (str(p) if p else None for _, p, _ in tls_files(settings, signal))
        headers = tuple(effective_headers(settings, signal)[0].items())
        key = (protocol, base, tls, ca, cert, key_file, headers)
        known = targets.get(key)
        signals = (*known.signals, upper.lower()) if known else (upper.lower(),)
        targets[key] = ProbeTarget(signals, protocol, base, tls, ca, cert, key_file, headers=headers)
    return list(targets.values())


# -- transport-level checks (shared by the targets on one host:port) ------------------------------




def _resolve(host: str, port: int, deadline: float, timeout: float) -> list[Any]:
    """getaddrinfo has no timeout of its own: run it in a thread and stop waiting at the deadline."""
    box: list[Any] = []

    def lookup() -> None:
        try:
            box.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            box.append(exc)

    worker = threading.Thread(target=lookup, daemon=True)
    worker.start()
    worker.join(max(deadline - time.monotonic(), 0))
    if not box:
        raise ProbeFailure("dns", f"DNS lookup of {host} did not answer within {timeout:g} s",
                           "check the host name and this machine's DNS")
    if isinstance(box[0], OSError):
        reason = getattr(box[0], "strerror", None) or str(box[0])
        raise ProbeFailure("dns", f"DNS lookup of {host} failed ({reason})", DNS_FIX)
    result: list[Any] = box[0]
    return result


def _connect(target: ProbeTarget, deadline: float, timeout: float) -> socket.socket:
    host, port = target.host, target.port
    addresses = _resolve(host, port, deadline, timeout)
    error: OSError | None = None
    for family, kind, proto, _, address in addresses:
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(remaining(deadline))
            sock.connect(address)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    if isinstance(error, ConnectionRefusedError):
        raise ProbeFailure("refused", f"connection to {host}:{port} refused", refused_fix(port))
    if isinstance(error, TimeoutError):
        raise ProbeFailure("timeout", f"no answer from {host}:{port} within {timeout:g} s", CONNECT_TIMEOUT_FIX)
    reason = getattr(error, "strerror", None) or str(error)
    raise ProbeFailure("unreachable", f"cannot connect to {host}:{port} ({reason})", "check the host and port")


def _tls_context(target: ProbeTarget) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=target.certificate)
    if target.client_certificate and target.client_key:
        context.load_cert_chain(target.client_certificate, target.client_key)
    context.set_alpn_protocols(["h2"] if target.protocol is OtlpProtocol.GRPC else ["http/1.1"])
    return context


def _handshake(target: ProbeTarget, sock: socket.socket, deadline: float) -> None:
    where = f"{target.host}:{target.port}"
    plaintext = handshake_fix(target.port, target.protocol is OtlpProtocol.GRPC)
    try:
        sock.settimeout(remaining(deadline))
        with _tls_context(target).wrap_socket(sock, server_hostname=target.host):
            return
    except ssl.SSLCertVerificationError as exc:
        hint = untrusted_fix(target.certificate)
        message = f"TLS: the certificate of {where} is not trusted ({exc.verify_message})"
        raise ProbeFailure("tls", message, hint) from None
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as exc:
        reason = getattr(exc, "reason", None) or type(exc).__name__
        raise ProbeFailure("tls", f"TLS handshake with {where} failed ({reason})", plaintext) from None
    except TimeoutError:
        raise ProbeFailure("tls", f"TLS handshake with {where} got no answer", plaintext) from None
    except OSError as exc:
        raise ProbeFailure("tls", f"TLS handshake with {where} failed ({exc.strerror or exc})") from None


def _transport_check(target: ProbeTarget, deadline: float, timeout: float) -> None:
    sock = _connect(target, deadline, timeout)
    if target.tls:
        _handshake(target, sock, deadline)  # closes the socket
    else:
        sock.close()


def _mask(text: str, target: ProbeTarget) -> str:
    from cryostorm_run.common.shown import mask_values

    return mask_values(text, (value for _, value in target.headers))


def probe(
    settings: TelemetryModel,
    environ: Mapping[str, str],
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    send_span: bool = False,
) -> list[ProbeResult]:
    """Probe every OTLP endpoint of these settings; each endpoint's checks are bounded by `timeout` seconds.

    `environ` is the environment the exporters would see (requests reads REQUESTS_CA_BUNDLE from it).
    """
    results: list[ProbeResult] = []
    transport: dict[tuple[object, ...], ProbeFailure | None] = {}  # one DNS/TCP/TLS check per host:port
    for target in probe_targets(settings):
        deadline = time.monotonic() + timeout
        key = (target.host, target.port, target.tls, target.certificate, target.client_certificate)
        try:
            if key not in transport:
                transport[key] = None
                _transport_check(target, deadline, timeout)
        except ProbeFailure as exc:
            transport[key] = exc
        except TimeoutError:
            transport[key] = ProbeFailure("timeout", f"no answer from {target.host}:{target.port} within {timeout:g} s",
                                          CONNECT_TIMEOUT_FIX)
        failed = transport[key]
        if failed is not None:
            results.append(_result(target, target.signals, failed))
            continue
        outcomes: list[tuple[str, ProbeFailure]] = []
        for signal in target.signals:
            # After a timeout the deadline has passed: the other signals would only repeat it.
            timed_out = outcomes and outcomes[-1][1].kind == "timeout"
            outcomes.append((signal, outcomes[-1][1] if timed_out else
                             _export(target, signal, deadline, send_span, settings.service.name, environ, timeout)))
        sent = send_span and any(signal == "traces" and o.kind == "ok" for signal, o in outcomes)
        if len({(o.kind, o.message, o.hint) for _, o in outcomes}) == 1:
            results.append(_result(target, target.signals, outcomes[0][1], sent))
        else:
            results += [_result(target, (signal,), o, sent and signal == "traces") for signal, o in outcomes]
    return results


def _result(target: ProbeTarget, signals: tuple[str, ...], outcome: ProbeFailure, sent: bool = False) -> ProbeResult:
    message = outcome.message + (", test span sent" if sent else "")
    return ProbeResult(target, signals, outcome.kind, _mask(message, target), _mask(outcome.hint, target))


def _export(target: ProbeTarget, signal: str, deadline: float, send_span: bool, service_name: str,
            environ: Mapping[str, str], timeout: float) -> ProbeFailure:
    """The outcome of one export (as a ProbeFailure, of kind "ok" when it worked)."""
    from cryostorm_run.diagnose.probe_export import grpc_export, http_export, make_request

    request = make_request(signal, send_span and signal == "traces", service_name)
    try:
        if target.protocol is OtlpProtocol.GRPC:
            grpc_export(target, signal, request, deadline)
        else:
            http_export(target, signal, request, deadline, environ)
    except ProbeFailure as exc:
        return exc
    except TimeoutError:
        return ProbeFailure("timeout", f"no answer within {timeout:g} s", ANSWER_TIMEOUT_FIX)
    return ProbeFailure("ok", "OK")


def render_results(results: Sequence[ProbeResult], timeout: float) -> str:
    """The report: one line per endpoint (and signal, where they differ), the hint under a failure."""
    if not results:
        return "cryostorm-run: probe: no signal exports with OTLP, nothing to probe\n"
    failed = sum(not r.ok for r in results)
    lines = [f"cryostorm-run: probe (timeout {timeout:g} s): {'all OK' if not failed else f'{failed} failed'}"]
    for r in results:
        status = "ok  " if r.ok else "FAIL"
        lines.append(f"  {status} {', '.join(r.signals)} -> {r.target.protocol.value} {r.url}: {r.message}")
        if r.hint:
            lines.append(f"       {r.hint}")
    return "\n".join(lines) + "\n"
