"""An exit during a long outage is not held for it.

The exit flush waits up to shutdown_timeout_millis for what is queued: a collector that is restarting may be
back within it. One that has failed every export for longer than that whole budget already is not likely
to be, and waiting for it holds the program for the whole budget, every time, then reports everything
lost anyway (a server worker recycled by `gunicorn --max-requests` during an outage: its slot served
nothing for those seconds). So when the exit flush begins, each collector (host and port) whose exporters
have all been failing for longer than the budget gets one TCP check (at most 0.2 s); refused or silent,
its exporters give up at once: no more attempts, what is left is reported lost, and one line says why.
A collector that accepts the connection, or one whose outage is younger than the budget, gets the whole
budget, as before.

The outage's age is shared by the program's processes (a small note per collector, kept while its exports
fail, in /dev/shm): a worker forked or recycled during the outage (gunicorn --max-requests, celery's
max-tasks-per-child, a pool's maxtasksperchild) has exported little or nothing itself, yet the outage is
as old for it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from typing import Any

from cryostorm_run.export.reach import host_port, reachable

_PREFIX = "cryostorm-outage-"


def _base() -> str:
    return "/dev/shm" if os.path.isdir("/dev/shm") else "/tmp"


def _program() -> str | None:
    """This program, as long as it runs: its first process (the launcher's PID, kept by exec) and that
    process's start time, so a note left by an earlier program whose PID came round again is not its."""
    launcher = os.environ.get("_CRYOSTORM_LAUNCHER_PID")
    return _started(launcher) if launcher and launcher.isdigit() else None


def _started(pid: str) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read(1024).rpartition(b")")[2].split()
        return f"{os.getuid()}-{pid}-{int(fields[19])}"  # starttime, field 22 of proc(5)
    except (OSError, ValueError, IndexError):
        return None


def _note(endpoint: str | None) -> str | None:
    """The shared note of `endpoint`'s outage for this program, or None (not launched; no /proc)."""
    program, key = _program(), host_port(endpoint)
    if program is None or key is None:
        return None
    return os.path.join(_base(), f"{_PREFIX}{program}-{key[0]}-{key[1]}")


def note_outage(endpoint: str | None, since: float | None) -> None:
    """An exporter's collector began failing at `since` (monotonic, the same clock in every process), or
    answered (None). The oldest start is kept; any answer removes the note. Never raises."""
    path = _note(endpoint)
    if path is None:
        return
    try:
        if since is None:
            os.unlink(path)
        else:
            _forget_ended_programs()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(repr(since))
    except (OSError, ValueError):  # there already (an older start), gone, or no room: only a hint
        pass


def _forget_ended_programs() -> None:
    """Notes of programs that have ended during an outage (nobody removes them then): gone at the next one."""
    for name in os.listdir(_base()):
        parts = name[len(_PREFIX):].split("-") if name.startswith(_PREFIX) else []
        if len(parts) >= 3 and parts[0] == str(os.getuid()) and _started(parts[1]) != "-".join(parts[:3]):
            os.unlink(os.path.join(_base(), name))


def _shared_since(endpoint: str | None) -> float | None:
    path = _note(endpoint)
    try:
        with open(path or "", encoding="ascii") as note:
            return float(note.read(64))
    except (OSError, ValueError):
        return None


def give_up_on_long_outages(budget_s: float, exporters: Iterable[Any]) -> None:
    """At the start of the exit flush (`budget_s` for all of it): exporters whose collector has failed
    every export for longer than `budget_s` and does not accept a connection now give up at once."""
    now = time.monotonic()
    by_collector: dict[tuple[str, int], list[Any]] = {}
    for exporter in exporters:
        key = host_port(exporter.endpoint)
        if key is not None:
            by_collector.setdefault(key, []).append(exporter)
    for (host, port), group in by_collector.items():
        tried = [e for e in group if e.failing_since is not None or e.answered_once]
        if any(e.failing_since is None for e in tried):
            continue  # the collector answered the last export of one of them
        since = [e.failing_since for e in tried] + [t for t in [_shared_since(group[0].endpoint)] if t is not None]
        if not since:
            continue  # nothing sent yet, here or by the program's other processes
        failing_s = now - min(since)
        # A connection takes one round trip: a distant collector that is back answers within a quarter of
        # the budget (0.5 s by default), or it would not get far in the rest of it.
        if failing_s < budget_s or reachable(group[0].endpoint, min(0.5, budget_s / 4)):
            continue
        names = sorted({str(e.fault_target[0] or "telemetry") for e in group})
        logging.getLogger("opentelemetry.cryostorm.export").warning(
            "the collector at %s:%d has failed every export for %.1f s, longer than the exit's whole %g s "
            "(shutdown_timeout_millis), and cannot be reached now (refused, not resolved or silent): not waited "
            "for at exit, nothing more is sent to it (%s); what is still queued is reported lost", host, port,
            failing_s, budget_s, ", ".join(names))
        for exporter in group:
            exporter.give_up()
