"""A multiprocessing child told to end is told again until it has (`Process.terminate`, `Pool.__exit__`).

cryostorm's SIGTERM handler (hook/exiting.py) is a Python one: CPython runs it in the child's main thread
between bytecodes, and a blocking wait (a lock, a pipe read) is cut short for it only when the signal comes
*during* the wait. One that comes in the few microseconds before the wait begins is taken, but its handler
runs only once the wait ends: an idle pool worker going back to its task queue right when `Pool.__exit__`
terminates it then waits for a task that never comes, and the program hangs in `join()` for good (measured:
about one `with Pool() as pool` in a hundred on a busy 2-core machine, fork and spawn alike). Without
cryostorm the default action ends it wherever it is.

So in every instrumented process, `multiprocessing`'s `BaseProcess.terminate` (the standard library's public
method) sends SIGTERM as before, then a thread of cryostorm's watches the child through a pidfd (Linux 5.3+,
Python 3.9+; elsewhere nothing changes): gone within the exit budget (`shutdown_timeout_millis`, the child's
flush) plus a second, nothing more happens; still there, it gets SIGTERM again (then once a second, at most
five more times), which the child, waiting by then, cannot miss. A pidfd names that one process: a pid the
system has reused is never signalled. One `cryostorm:` line tells of a child that needed it.
"""

from __future__ import annotations

import os
import signal

from cryostorm_run.hook.say import warn

TYPE_CHECKING = False  # not typing's: the hook keeps typing out of every process
if TYPE_CHECKING:
    from typing import Any

RESENDS = 5  # after the first re-send, once a second: a child that handles SIGTERM itself is not pestered long


def install(module: Any, budget_s: float) -> None:
    """Wrap `module.BaseProcess.terminate` (module: `multiprocessing.process`)."""
    cls = getattr(module, "BaseProcess", None)
    original = getattr(cls, "terminate", None)
    if original is None or getattr(original, "cryostorm", False):
        return
    if not hasattr(os, "pidfd_open") or not hasattr(signal, "pidfd_send_signal"):
        return  # not Linux, or Python < 3.9: the plain terminate

    def terminate(self: Any) -> None:
        pidfd = None
        pid = self.pid
        if pid is not None and pid != os.getpid():
            try:  # noqa: SIM105  (contextlib stays out of the hook)
                pidfd = os.pidfd_open(pid)  # before the signal: the child cannot be reaped (and its pid reused) first
            except OSError:  # already reaped, or no pidfd here: the plain terminate
                pass
        try:
            original(self)
        except BaseException:
            if pidfd is not None:
                os.close(pidfd)
            raise
        if pidfd is not None:
            _watch(pidfd, pid, budget_s)

    terminate.cryostorm = True  # type: ignore[attr-defined]
    terminate.__wrapped__ = original  # type: ignore[attr-defined]
    cls.terminate = terminate  # type: ignore[union-attr]


def _watch(pidfd: int, pid: int, budget_s: float) -> None:
    import threading

    from cryostorm_run.common.ownthreads import start

    thread = threading.Thread(target=_until_gone, args=(pidfd, pid, budget_s + 1.0),
                              name="cryostorm-terminate", daemon=True)
    try:
        start(thread)
    except RuntimeError:  # interpreter shutting down: the plain terminate
        os.close(pidfd)


def _until_gone(pidfd: int, pid: int, first_wait_s: float) -> None:
    import select

    try:
        poller = select.poll()  # not select(): a program with over 1,024 files open has pidfds beyond its reach
        poller.register(pidfd, select.POLLIN)
        wait = first_wait_s
        for attempt in range(RESENDS + 1):
            if poller.poll(wait * 1000):  # readable: the process has ended
                return
            try:
                signal.pidfd_send_signal(pidfd, signal.SIGTERM)
            except ProcessLookupError:
                return
            if attempt == 0:
                warn(f"multiprocessing child {pid} was still running {first_wait_s:g} s after terminate(): "
                     f"SIGTERM sent again (one that lands just before a wait begins is acted on only when the wait "
                     f"ends)")
            wait = 1.0
    except Exception as exc:  # never in the program's way
        warn(f"watching terminated child {pid}: {type(exc).__name__}: {exc}")
    finally:
        os.close(pidfd)


def an_exit_status(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether `os._exit(*args, **kwargs)` ends the process: one status, by position or as `status=`, that is a C
    int. A call it refuses (TypeError, OverflowError) leaves the program running, its telemetry untouched."""
    if len(args) + len(kwargs) != 1 or (kwargs and "status" not in kwargs):
        return False
    status = args[0] if args else kwargs["status"]
    try:
        index: int = type(status).__index__(status)  # what the original's int conversion calls
    except Exception:
        return False
    return -(2**31) <= index < 2**31
