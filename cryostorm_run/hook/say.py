"""How the hook speaks: one `cryostorm:` line on the program's stderr (header values and URL secrets masked,
control characters escaped). Its own module, so that any part of the hook or the export path can say something
without importing `bootstrap`."""

from __future__ import annotations

import os
import sys


def warn(message: str) -> None:
    from cryostorm_run.common.shown import scrubbed

    try:
        # Messages quote settings and errors (an exporter's error may quote a header it refused).
        sys.stderr.write(f"cryostorm: {scrubbed(message)}\n")
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass  # no usable stderr (closed, or pythonw): nothing better to do


def whose() -> str:
    """` (pid N)` for a line of a process other than the one cryostorm-run started (a server's worker, a
    child): several print the same lines at once; the start-up line names each by pid too."""
    launcher = os.environ.get("_CRYOSTORM_LAUNCHER_PID")  # not set: the facade without cryostorm-run
    return "" if launcher in (None, str(os.getpid())) else f" (pid {os.getpid()})"
