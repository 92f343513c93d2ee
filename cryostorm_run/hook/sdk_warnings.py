"""The SDK's own warnings (collector unreachable, queue full, rejected data) on stderr, whatever the
program's logging setup, rate-limited, and counted so the exit report can say what was lost.

An export error of a known class (TLS mismatch, untrusted certificate, refused, no answer, 401/403)
becomes one line naming the class and the fix, counted per signal and class, instead of the
exporter's raw text ("Socket closed", `WRONG_VERSION_NUMBER` deep in a gRPC status).

A program that sets OpenTelemetry up itself gets the API's "Overriding of current TracerProvider is not
allowed" for its `set_tracer_provider`: told here as what it means for that program (its own processors and
exporters get nothing) and how to keep either set-up."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import Counter

WINDOW_S = 10.0

# The API's warning when a provider is already global (its text on every supported line, 1.40 to 1.45), and
# what the program's own provider of that kind has attached to it, and the setting that leaves it to the program.
_REFUSED = {
    "Overriding of current TracerProvider is not allowed": ("TracerProvider", "spans", "span processors", "TRACING",
                                                            "traces"),
    "Overriding of current MeterProvider is not allowed": ("MeterProvider", "measurements", "metric readers",
                                                           "METRICS", "metrics"),
    "Overriding of current LoggerProvider is not allowed": ("LoggerProvider", "log records", "log record processors",
                                                            "LOGGING", "logs"),
}


def refused_provider(message: str) -> str | None:
    """The line for the API's refusal of the program's own provider (None: another message)."""
    refused = _REFUSED.get(message)
    if refused is None:
        return None
    kind, items, attached, section, signal = refused
    return (f"the program's own {kind}{_caller()} was not installed: cryostorm's stays OpenTelemetry's global one, "
            f"so {items} made through the global API are exported by cryostorm, and the {attached} and exporters "
            f"attached to the program's provider receive none of them; fix: remove the program's own set-up of "
            f"{signal}, or set CRYOSTORM_{section}__ENABLED=false to leave {signal} to the program")


def _caller() -> str:
    """` (file:line)` of the program's call that reached the API (the first frame outside OpenTelemetry,
    cryostorm and logging), or ""."""
    import inspect
    import os

    frame = inspect.currentframe()
    while frame is not None:
        path = frame.f_code.co_filename
        parts = path.replace("\\", "/").split("/")
        if not ({"opentelemetry", "cryostorm_run", "logging"} & set(parts)) and not path.startswith("<frozen"):
            return f" (set at {os.path.basename(path)}:{frame.f_lineno})"
        frame = frame.f_back
    return ""


class _Window:
    """Each kind of message at most once per window; the rest counted, and told with the next one."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._last: dict[tuple[str, object], float] = {}
        self._suppressed: Counter[tuple[str, object]] = Counter()
        self._lock_ = threading.Lock()

    def admit(self, key: tuple[str, object]) -> str | None:
        """None: said within the window, counted; else the suffix telling how many were not said."""
        now = time.monotonic()
        with self._lock_:
            last = self._last.get(key)
            if last is not None and now - last < self.window_s:
                self._suppressed[key] += 1
                return None
            self._last[key] = now
            more = self._suppressed.pop(key, 0)
        return f" (+{more} similar in the last {self.window_s:g} s)" if more else ""


def _shaped(record: logging.LogRecord) -> tuple[tuple[str, object], str, bool]:
    """(kind, line, explained): an export failure of a known class as its cause and fix, a refused provider as
    what it means; anything else as logged."""
    from cryostorm_run.export.errors import explain

    message = record.getMessage()
    if record.exc_info and record.exc_info[1] is not None:
        message += f": {type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
    refused = refused_provider(message)
    if refused is not None:
        return (record.name, record.msg), refused, True
    explained = explain(message, record.name)  # None unless an export failure of a known class
    if explained is None:
        return (record.name, record.msg), message, False
    head, fault = explained
    if "kept in the queue to be retried" in message:  # not given up: nothing is lost (yet)
        head = head.removesuffix(" failed") + ": still failing, kept in the queue to be retried"
    return (head, fault.kind), f"{head}: {fault.what}; fix: {fault.fix}", True


class DiagnosticsHandler(logging.Handler):
    """Prints each kind of SDK message at most once per window and counts the rest."""

    def __init__(self, window_s: float = WINDOW_S) -> None:
        super().__init__(logging.WARNING)
        self.window = _Window(window_s)

    def emit(self, record: logging.LogRecord) -> None:
        from cryostorm_run.export.forkgate import exporter_build

        with exporter_build():  # imported here (installed in every process, used in few): a fork waits for it
            from cryostorm_run.common.shown import scrubbed
            from cryostorm_run.export.errors import explain  # noqa: F401  (loaded under the gate for _shaped)
            from cryostorm_run.hook.say import whose

        try:
            key, message, _ = _shaped(record)
            suffix = self.window.admit(key)
            if suffix is None:
                return
            text = scrubbed(message)  # header values and URL secrets masked, control characters escaped
            sys.stderr.write(f"cryostorm: {record.levelname.lower()}: {text}{suffix}{whose()}\n")
        except Exception:
            self.handleError(record)


class OwnLines(logging.Filter):
    """The facade's providers without the hook (the program's logging prints cryostorm's lines): an export
    failure of a known class told with its cause and fix, once per window per kind, as the hook tells it,
    instead of one raw record per failed batch; anything else passes as logged."""

    def __init__(self, window_s: float = WINDOW_S) -> None:
        super().__init__()
        self.window = _Window(window_s)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            key, message, explained = _shaped(record)
            if not explained:
                return True
            suffix = self.window.admit(key)
            if suffix is None:
                return False
            from cryostorm_run.common.shown import scrubbed

            record.msg, record.args, record.exc_info = scrubbed(message) + suffix, None, None
        except Exception:  # the record as it was
            return True
        return True


HANDLER: DiagnosticsHandler | None = None
OWN_LINES: OwnLines | None = None


def install() -> DiagnosticsHandler:
    """Route the `opentelemetry` loggers to cryostorm's stderr reporter (once per process)."""
    global HANDLER
    if HANDLER is None:
        HANDLER = DiagnosticsHandler()
        sdk_logger = logging.getLogger("opentelemetry")
        sdk_logger.addHandler(HANDLER)
        # Not through the program's handlers: these are cryostorm's lines, printed exactly once.
        sdk_logger.propagate = False
    return HANDLER


def install_own() -> None:
    """The facade's own providers, without the hook: cryostorm's own export lines (`opentelemetry.cryostorm`),
    through the program's logging as a library's, are shaped by `OwnLines`, and losses are told there while
    the program runs (batch.REPORTERS), as the hook tells them on stderr. The SDK's own loggers are untouched."""
    global OWN_LINES
    if HANDLER is None and OWN_LINES is None:
        OWN_LINES = OwnLines()
        for name in ("opentelemetry.cryostorm.export", "opentelemetry.cryostorm.export.transport"):
            logging.getLogger(name).addFilter(OWN_LINES)
        from cryostorm_run.export import batch

        batch.REPORTERS.append(logging.getLogger("opentelemetry.cryostorm.export").warning)
