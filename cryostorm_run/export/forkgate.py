"""Fork while exporting: no export call in flight and no exporter half-loaded when the process forks.

A process forked while one of its gRPC calls is in flight can find gRPC broken in the child: grpcio's
core state is copied mid-call, and the child aborts (SIGABRT) or its calls never complete (README,
Known limits; measured: 7 of 80 children forked that way died, 0 of 80 forked with nothing in flight).
A process forked while another thread imports a module (the first export loads grpc or requests) leaves
that module's import lock held in the child by a thread that does not exist there: the child's own
import of it waits forever. celery's prefork pool, gunicorn and multiprocessing fork at any moment,
from any thread.

Every gRPC export cryostorm makes passes through `grpc_call()` (its own span transport,
export/otlp_send.py; the stubs of the SDK's log and metric exporters, export/otlp.py), and every
exporter build (and each export worker's first imports) through `exporter_build()`. Before a fork, the
forking thread waits until none is under way: at most `FORK_WAIT_S` for calls (a collector that answers
within it costs the fork that long), at most `BUILD_WAIT_S` for a build (it only imports: ~0.1 s, once
per process). Meanwhile none starts. A child forked past a wait is told on stderr; past a build,
`BUILD_BROKEN` makes its exporters fail at once, reported, instead of hanging. `subprocess` is not
delayed: it runs no Python fork handlers.
"""

from __future__ import annotations

import concurrent.futures.thread  # noqa: F401  (both before our fork handlers are registered: see below)
import contextlib
import logging  # noqa: F401
import os
import sys
import threading
import time
import warnings
from collections.abc import Iterator

FORK_WAIT_S = 0.25
BUILD_WAIT_S = 5.0
BUILD_BROKEN = [False]  # in a child forked while its parent was building an exporter


class _Gate:
    def __init__(self) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.under_way = {"call": 0, "build": 0}
        self.forking = 0  # forks under way (threads may fork at the same time)
        self.left = {"call": 0, "build": 0}  # what was still under way when the last fork went ahead


_GATE = _Gate()
_THREAD = threading.local()  # depth: a thread already under way never waits for a fork that waits for it


@contextlib.contextmanager
def _under_way(kind: str) -> Iterator[None]:
    gate = _GATE
    depth = getattr(_THREAD, "depth", 0)
    with gate.cond:
        while gate.forking and not depth:
            gate.cond.wait()
        gate.under_way[kind] += 1
    _THREAD.depth = depth + 1
    try:
        yield
    finally:
        _THREAD.depth = depth
        with gate.cond:
            gate.under_way[kind] -= 1
            gate.cond.notify_all()


def grpc_call() -> contextlib.AbstractContextManager[None]:
    """Around one gRPC call: it waits while the process forks, and a fork waits for it."""
    return _under_way("call")


def exporter_build() -> contextlib.AbstractContextManager[None]:
    """Around building an exporter (importing grpc or requests): the same, with the longer wait."""
    return _under_way("build")


# Python 3.12+ warns at every fork of a process that has other threads ("This process is multi-threaded,
# use of fork() may lead to deadlocks in the child", a DeprecationWarning shown where __main__ forks). The
# export threads are telemetry's, made safe to fork across (this module, the queues' after-fork resets): a
# program that is single-threaded without cryostorm must not get that warning with it. So before a fork
# where every other thread is telemetry's (cryostorm's export workers, the SDK's `Otel*` readers and
# processors, grpcio's core threads), a filter ignoring that one message is put first; before a fork where
# the program has threads of its own, it is taken out again, and the program gets the warning as it would
# without cryostorm. Python warns after the fork's `after_in_parent` handlers (3.13), so the filter stays
# until the next fork decides again; that message is only ever given by a fork.
_FORK_WARNING = r"This process \(pid=\d+\) is multi-threaded, use of fork\(\) may lead to deadlocks"
_TELEMETRY_THREADS = ("cryostorm-", "Otel")
_GRPC_CORE_THREADS = ("grpc", "event_engine", "lifeguard", "default-executo", "resolver-execu", "timer_manager")


# A thread the kernel lists but that is neither a Python thread nor named as grpc's may be a thread of the
# program's own (a native library's pool), or only in passing: a Python thread between its OS start and
# its entry in `threading` (or between leaving it and its OS exit), a grpc thread not yet named (it starts
# with its creator's name). Seen under load: a single-threaded program got the warning it would not get
# without cryostorm. So such a thread is looked at again after 1, 2 and 4 ms; one still there is the
# program's, remembered by its id so that later forks do not wait for it again.
_SETTLE_S = (0.001, 0.002, 0.004)
_PROGRAM_TASKS: set[int] = set()  # thread ids seen to be the program's own (this process's: reset at fork)
_pause = time.sleep


def only_telemetry_threads() -> bool:
    """Is every thread of this process but the calling one telemetry's?"""
    unknown = _unknown_tasks()
    for wait in _SETTLE_S:
        if unknown is None or not unknown or unknown & _PROGRAM_TASKS:
            break
        _pause(wait)
        unknown = _unknown_tasks()
    if unknown is None:
        return False
    _PROGRAM_TASKS.update(unknown)
    return not unknown


def _unknown_tasks() -> set[int] | None:
    """None: a Python thread of the program's own. Else the ids of the threads the kernel lists that are
    neither Python's nor grpc's (empty: every thread but the calling one is telemetry's)."""
    me = threading.current_thread()
    python_ids = set()
    for thread in threading.enumerate():
        if thread is not me and not thread.name.startswith(_TELEMETRY_THREADS):
            return None
        python_ids.add(thread.native_id)
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:  # not Linux: Python counts its own threads only
        return set()
    unknown = set()
    for task in tasks:
        if task.isdigit() and int(task) not in python_ids:
            try:
                with open(f"/proc/self/task/{task}/comm") as comm:
                    name = comm.read().strip()
            except OSError:  # ended meanwhile
                continue
            if not name.startswith(_GRPC_CORE_THREADS):
                unknown.add(int(task))
    return unknown


def _quiet_fork_warning() -> None:
    if sys.version_info < (3, 12):
        return
    found = [entry for entry in warnings.filters if entry[0] == "ignore" and entry[2] is DeprecationWarning
             and getattr(entry[1], "pattern", None) == _FORK_WARNING]
    if only_telemetry_threads():
        if not found:  # put in once: each change of the filters makes Python show "once" warnings again
            warnings.filterwarnings("ignore", message=_FORK_WARNING, category=DeprecationWarning)
        return
    for entry in found:  # an "ignore" leaves no trace in warning registries: removing it is all it takes
        warnings.filters.remove(entry)


def _before_fork() -> None:
    _quiet_fork_warning()
    gate = _GATE
    start = time.monotonic()
    with gate.cond:
        gate.forking += 1
        while gate.under_way["call"] or gate.under_way["build"]:
            limit = BUILD_WAIT_S if gate.under_way["build"] else FORK_WAIT_S
            left = start + limit - time.monotonic()
            if left <= 0:
                break
            gate.cond.wait(left)
        gate.left = dict(gate.under_way)


def _after_fork_in_parent() -> None:
    gate = _GATE
    with gate.cond:
        gate.forking -= 1
        gate.cond.notify_all()


def _after_fork_in_child() -> None:
    global _GATE
    _PROGRAM_TASKS.clear()  # the parent's threads, whose ids the kernel may give to new ones here
    left = _GATE.left
    _GATE = _Gate()  # the parent's calls and builds, and their threads, do not exist here
    BUILD_BROKEN[0] = BUILD_BROKEN[0] or bool(left["build"])
    said = []
    if left["call"]:
        said.append(f"while {left['call']} gRPC export(s) of its parent were still in flight after "
                    f"{FORK_WAIT_S * 1000:g} ms; gRPC can fail in it (abort or hang). For a server that forks while "
                    "it exports, use otlp.protocol http/protobuf")
    if left["build"]:
        said.append(f"while its parent was still loading an exporter after {BUILD_WAIT_S:g} s; it cannot load one "
                    "itself, so its telemetry is not exported (reported at exit)")
    with contextlib.suppress(OSError, ValueError, AttributeError):  # no usable stderr: nothing better to do
        for text in said:
            sys.stderr.write(f"cryostorm: warning: this process was forked {text}\n")


# `before` handlers run in reverse order of registration. logging's takes its module lock and
# concurrent.futures.thread's its global shutdown lock; ours waits for builds under way, which create
# loggers and submit to thread pools (the SDK's resource detection): both locks. So ours is registered after
# theirs (imported above), to run first: the other way round, a fork waiting for a build deadlocked with
# them until the wait ran out.
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                        after_in_child=_after_fork_in_child)
