"""cryostorm's own threads leave the program's signals to the program.

A signal sent to the process (`kill`, a container's SIGTERM, Ctrl-C) is taken by any one of its threads
that does not block it. CPython runs the Python handler in the main thread, but only the thread that took
the signal is woken: when that is one of cryostorm's export threads, the main thread's `time.sleep`,
`select` or lock wait goes on as if nothing came (a SIGTERM acted on a minute late); and a program that
blocks a signal in its main thread to take it with `signal.sigwait` in a thread of its own finds it
taken by cryostorm's thread instead, its handler run or its default action (death) taken.

Every thread cryostorm starts (export workers, the bounded flush and shutdown, the SDK's periodic metric
reader) starts with the asynchronous signals blocked, so the kernel gives them to the program's threads;
the threads those start (grpc's) inherit the mask. Signals a thread raises itself (a fault in it, SIGPIPE
of its own write) stay unblocked. Where `signal.pthread_sigmask` does not exist (Windows), nothing changes.
"""

from __future__ import annotations

import os
import signal

TYPE_CHECKING = False  # not typing's: the hook keeps typing out of every process
if TYPE_CHECKING:
    import threading
    from collections.abc import Callable
    from typing import TypeVar

    T = TypeVar("T")

_SAVED: list[threading.local] = []  # the mask a forking thread had, while the fork handlers run

# Raised by a thread on itself, for itself: a thread that blocks them cannot be told of its own fault.
_OWN = ("SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGABRT", "SIGTRAP", "SIGSYS", "SIGPIPE", "SIGXFSZ")


def _asynchronous() -> set[signal.Signals]:
    own = {getattr(signal, name) for name in _OWN if hasattr(signal, name)}
    return {signum for signum in signal.valid_signals() if signum not in own}


def leaving_signals_to_the_program(build: Callable[[], T]) -> T:
    """`build()`, with every thread it starts blocking the program's asynchronous signals from its first
    instruction (the calling thread's mask is what a new thread inherits; it is restored right after)."""
    mask = getattr(signal, "pthread_sigmask", None)
    if mask is None:
        return build()
    previous = mask(signal.SIG_BLOCK, _asynchronous())
    try:
        return build()
    finally:
        mask(signal.SIG_SETMASK, previous)  # a signal that came meanwhile is taken here, at once


def start(thread: threading.Thread) -> None:
    """`thread.start()`, the thread blocking the program's asynchronous signals (RuntimeError as start's)."""
    leaving_signals_to_the_program(thread.start)


def quiet_at_fork() -> None:
    """The threads that fork handlers registered before this call start in a forked child (the SDK's periodic
    metric reader restarts its thread there, from the forking thread) block the program's asynchronous
    signals too: the forking thread blocks them before the fork and gets its mask back once those handlers
    ran (handlers after a fork run in the order they were registered)."""
    mask, register = getattr(signal, "pthread_sigmask", None), getattr(os, "register_at_fork", None)
    if mask is None or register is None:
        return
    if not _SAVED:
        import threading

        _SAVED.append(threading.local())
    saved = _SAVED[0]

    def before() -> None:
        saved.__dict__.setdefault("masks", []).append(mask(signal.SIG_BLOCK, _asynchronous()))

    def after() -> None:
        masks = saved.__dict__.get("masks")
        if masks:
            mask(signal.SIG_SETMASK, masks.pop())

    register(before=before, after_in_child=after, after_in_parent=after)
