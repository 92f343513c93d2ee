"""The SDK's own warnings (collector unreachable, queue full, rejected data) on stderr, whatever the
program's logging setup, rate-limited, and counted so the exit report can say what was lost.

An export error of a known class (TLS mismatch, untrusted certificate, refused, no answer, 401/403)
becomes one line naming the class and the fix, counted per signal and class, instead of the
exporter's raw text ("Socket closed", `WRONG_VERSION_NUMBER` deep in a gRPC status)."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import Counter

WINDOW_S = 10.0


class DiagnosticsHandler(logging.Handler):
    """Prints each kind of SDK message at most once per window and counts the rest."""

    def __init__(self, window_s: float = WINDOW_S) -> None:
        super().__init__(logging.WARNING)
        self.window_s = window_s
        self._last: dict[tuple[str, object], float] = {}
        self._suppressed: Counter[tuple[str, object]] = Counter()
        self._lock_ = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        from cryostorm_run.export.forkgate import exporter_build

        with exporter_build():  # imported here (installed in every process, used in few): a fork waits for it
            from cryostorm_run.common.shown import scrubbed
            from cryostorm_run.export.errors import explain
            from cryostorm_run.hook.say import whose

        try:
            message = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                message += f": {type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
            explained = explain(message, record.name)  # None unless an export failure of a known class
            key: tuple[str, object] = (record.name, record.msg)
            if explained is not None:
                head, fault = explained
                if "kept in the queue to be retried" in message:  # not given up: nothing is lost (yet)
                    head = head.removesuffix(" failed") + ": still failing, kept in the queue to be retried"
                key, message = (head, fault.kind), f"{head}: {fault.what}; fix: {fault.fix}"
            now = time.monotonic()
            with self._lock_:
                last = self._last.get(key)
                if last is not None and now - last < self.window_s:
                    self._suppressed[key] += 1
                    return
                self._last[key] = now
                more = self._suppressed.pop(key, 0)
            suffix = f" (+{more} similar in the last {self.window_s:g} s)" if more else ""
            text = scrubbed(message)  # header values and URL secrets masked, control characters escaped
            sys.stderr.write(f"cryostorm: {record.levelname.lower()}: {text}{suffix}{whose()}\n")
        except Exception:
            self.handleError(record)


HANDLER: DiagnosticsHandler | None = None


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
