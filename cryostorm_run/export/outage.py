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
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any


def give_up_on_long_outages(budget_s: float, exporters: Iterable[Any]) -> None:
    """At the start of the exit flush (`budget_s` for all of it): exporters whose collector has failed
    every export for longer than `budget_s` and does not accept a connection now give up at once."""
    from cryostorm_run.export.reach import host_port, reachable

    now = time.monotonic()
    by_collector: dict[tuple[str, int], list[Any]] = {}
    for exporter in exporters:
        key = host_port(exporter.endpoint)
        if key is not None:
            by_collector.setdefault(key, []).append(exporter)
    for (host, port), group in by_collector.items():
        tried = [e for e in group if e.failing_since is not None or e.answered_once]
        if not tried or any(e.failing_since is None for e in tried):
            continue  # nothing sent yet, or the collector answered the last export of one of them
        failing_s = now - min(e.failing_since for e in tried)
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
