"""How the hook speaks: one `cryostorm:` line on the program's stderr (header values and URL secrets masked,
control characters escaped). Its own module, so that any part of the hook or the export path can say something
without importing `bootstrap`."""

from __future__ import annotations

import os
import sys

STDERR_VAR = "_CRYOSTORM_STDERR"  # the stderr cryostorm-run was started with, as stderr_identity() (exec_plan)


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


def stderr_identity() -> str:
    """This process's stderr as "device:inode" ("closed" without one): which file, pipe or terminal it is."""
    try:
        st = os.fstat(2)
    except OSError:
        return "closed"
    return f"{st.st_dev}:{st.st_ino}"
