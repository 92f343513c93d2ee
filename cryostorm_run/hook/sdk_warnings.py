"""The SDK's own warnings (collector unreachable, queue full, rejected data) on stderr, whatever the
program's logging setup, rate-limited, and counted so the exit report can say what was lost.

An export error of a known class (TLS mismatch, untrusted certificate, refused, no answer, 401/403)
becomes one line naming the class and the fix, counted per signal and class, instead of the
exporter's raw text ("Socket closed", `WRONG_VERSION_NUMBER` deep in a gRPC status).

A program that sets OpenTelemetry up itself (its own provider, its own `instrument()` call) gets upstream's
bare warnings: told as what they mean for that program and how to keep either set-up (`own_setup`)."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import Counter

WINDOW_S = 10.0


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
    from cryostorm_run.hook.own_setup import told

    message = record.getMessage()
    if record.exc_info and record.exc_info[1] is not None:
        message += f": {type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
    own = told(message)
    if own is not None:
        return (record.name, record.msg), own, True
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
            from cryostorm_run.export.errors import explain  # noqa: F401  (_shaped's imports, under the gate)
            from cryostorm_run.hook.own_setup import told  # noqa: F401
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
