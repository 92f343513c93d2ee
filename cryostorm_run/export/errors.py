"""The export path's errors: a provider that could not be built, and what a failed export means.

Each exporter call runs inside `exporting(signal, target)` on its own thread, so an error logged from
deep inside an exporter (the SDK's "Transient error ..." lines, cryostorm's transport) is known to
belong to that signal and endpoint. `explain` names its class and fix (common/faults.py, shared with
`check-config --probe`); hook/sdk_warnings prints that line, rate-limited, instead of the raw text.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from cryostorm_run.common.faults import Fault, Target, classify
from cryostorm_run.common.runtime import SignalRuntime
from cryostorm_run.export.reach import connection_check

# The loggers whose records say that an export failed: the SDK's exporters, cryostorm's span transport
# (not partial success or other records logged during an export, whose text is the collector's).
FAILURE_LOGGERS = ("opentelemetry.exporter.", "opentelemetry.cryostorm.export.transport")
# Classes that retrying cannot heal: told at the first failed attempt, not after the retry budget.
CONFIGURATION_FAULTS = frozenset({"tls_untrusted", "tls_plaintext_collector", "tls", "unauthenticated",
                                  "permission_denied", "not_found"})


class TelemetrySetupError(RuntimeError):
    """A provider could not be built; the message says what and how to fix it."""


def fault_target(sig: SignalRuntime) -> Target:
    """The exporter's endpoint and TLS as the SDK's exporters decide it (gRPC: https is TLS, else the
    insecure flag, else the scheme; HTTP: the scheme)."""
    grpc = sig.protocol == "grpc"
    scheme = sig.endpoint.partition("://")[0].lower() if "://" in sig.endpoint else ""
    if not grpc or scheme == "https":
        tls = scheme == "https"
    else:
        tls = scheme != "http" if sig.insecure is None else not sig.insecure
    return Target(sig.endpoint, grpc=grpc, tls=tls, certificate=sig.certificate)


_CURRENT = threading.local()


@contextmanager
def exporting(signal: str, target: Target | None) -> Iterator[None]:
    """Errors logged on this thread meanwhile belong to `signal`'s export to `target`."""
    previous = getattr(_CURRENT, "export", None)
    _CURRENT.export = (signal, target, []) if target is not None else None
    try:
        yield
    except Exception as error:
        # An exporter that lets the error out (SDK 1.40's HTTP exporters raise requests' exceptions) logs
        # nothing itself: said here, while the export is still known, if it names a class.
        text = f"{type(error).__name__}: {error}"
        if explain(text) is not None:
            logging.getLogger(FAILURE_LOGGERS[1]).warning("%s", text)
        raise
    finally:
        _CURRENT.export = previous


# Per signal, what its exporter's last failed request ended with, until one succeeds (export/otlp.py clears
# it): the exit line names it when items are left unsent (hook/exiting.py), which a short-lived process
# needs, its retries not having run out yet (so nothing was said before).
LAST_FAULT: dict[str, Fault] = {}


def note_transport_error(text: str, check_connection: bool = False) -> None:
    """A failed request: an exception the exporter itself only summarises (the HTTP exporter's "due to
    timeout" line), or the error of one attempt of cryostorm's span transport. `check_connection`: a gRPC
    deadline, which may mean no connection at all (reach.connection_check)."""
    current = getattr(_CURRENT, "export", None)
    if current is not None:
        signal, target, noted = current
        if check_connection and target.grpc:
            text += connection_check(target.where, 2.0)
        noted[:] = [text]
        fault = classify(text, target)
        if fault is not None:
            LAST_FAULT[signal] = fault
        else:  # a class of its own (HTTP 500, ...): an older cause would mislead
            LAST_FAULT.pop(signal, None)


def explain(text: str, logger: str = FAILURE_LOGGERS[1]) -> tuple[str, Fault] | None:
    """("<signal> export to <endpoint> failed", its fault) for a failure logged by `logger` during an
    export on this thread whose text (or the transport error noted before it) names a known class."""
    current = getattr(_CURRENT, "export", None)
    if current is None or not logger.startswith(FAILURE_LOGGERS):
        return None
    signal, target, noted = current
    fault = classify(text, target)
    if noted and (fault is None or fault.kind == "timeout"):  # what the request showed may say more (the
        fault = classify(noted[0], target) or fault           # connection check after a gRPC deadline)
    if fault is None:
        return None
    return f"{signal} export to {target.endpoint} failed", fault
