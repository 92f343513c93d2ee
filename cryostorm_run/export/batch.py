"""cryostorm's own batch processing: one bounded queue per signal, drained by export worker threads.

Built only on the SDK's public interfaces (`SpanProcessor`, `SimpleLogRecordProcessor`, exporters'
`export`/`shutdown`/`force_flush`), so it behaves the same on every supported OpenTelemetry line
instead of reaching into one release's `BatchSpanProcessor` internals. What it adds over the SDK's:

- exact accounting: every item handed to it is exported, failed, still queued, in flight, or counted as
  dropped when refused (`seen`, `entered`, `shed`, `overflow`, `late`: ended once closed for the exit);
- several exports in flight (`max_in_flight` workers draining the one queue, each batch taken by
  exactly one of them): a distant collector that answers slowly is kept up with;
- it never holds the program while the collector is not keeping up (failing, or not answering
  within its timeout; a slow answer is still an answer): the queue is capped at
  1/`KEEP_WHILE_FAILING` of its size and the rest is shed (and counted); a full queue waits
  at most `max_block_s`, and only while the collector answers quickly (a burst to a near one);
- fork: the child starts with an empty queue, zero counters and new workers (started lazily);
- a worker that cannot be started (interpreter shutdown) never loses the queue: flush and shutdown drain it
  in the calling thread, within their deadline; shutdown happens once (a second call waits for nothing).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from cryostorm_run.common.ownthreads import start
from cryostorm_run.common.words import counted
from cryostorm_run.export.quiet import suppressed

# An exporter that does not say how long an answer may take (`answer_timeout_s`, the OTLP timeout): an export
# still unanswered after this means the collector is stuck, not keeping up.
ANSWER_TIMEOUT_S = 10.0

# While the collector is failing or stuck, at most this share of max_queue_size stays queued: a queue of 16k
# spans the collector cannot take only costs memory and GC pauses (p99 x2.5 with a full 16k queue, 1x with 2k).
KEEP_WHILE_FAILING = 8

# Behind (more queued than every worker can take in full batches), one export carries up to this many batches
# of pre-encoded spans (a round trip to a distant collector moves more), far below a collector's 4 MiB limit.
GROW_BATCHES = 4
GROWN_BYTES_MAX = 1 << 20

# A full queue waits for room (`max_block_s`) only behind a collector whose answers take at most this share
# of the longest wait allowed (50 ms of 500 ms): room then comes soon. Behind a distant one a wait would hold
# the program for a round trip, so the item is dropped and reported.
QUICK_ANSWER_SHARE = 0.1

class _RetryLater:  # an exporter's answer when the collector stayed unreachable for a batch's whole retry
    name = "RETRY_LATER"  # budget: the queue keeps it, in front, and retries it (an outage costs what is shed)


RETRY_LATER = _RetryLater()

BATCH_QUEUES: weakref.WeakSet[BatchQueue] = weakref.WeakSet()  # this process's, for the exit report
# A long-running process reports losses while it runs: at most one line per queue per interval (until closed).
REPORT_INTERVAL_S = int(os.environ.get("_CRYOSTORM_LOSS_REPORT_MILLIS", "60000")) / 1000
REPORTERS: list[Callable[[str], None]] = []  # the hook adds its `cryostorm:` line writer
ON_FIRST_ITEM: list[Callable[[], None]] = []  # once per process, at the first item (cryostorm's own metrics)
_first_item_seen = False
_STARTING = threading.Lock()  # starting a queue's workers (new in a forked child: see _reset_after_fork)


class BatchQueue:
    """A bounded queue of items for one exporter, exported in batches by `max_in_flight` worker threads."""

    def __init__(self, exporter: Any, kind: str, *, max_queue_size: int, schedule_delay_ms: float,
                 max_export_batch_size: int, export_timeout_ms: float = 30_000, max_block_s: float = 0.0,
                 keep_while_failing: int = KEEP_WHILE_FAILING,
                 export: Callable[[Sequence[Any]], Any] | None = None, max_in_flight: int = 1,
                 copy_to: str = "") -> None:
        self.exporter = exporter
        self.kind = kind  # "spans" or "log records", as the reports name them
        self.copy_to = copy_to  # the signal's other exporter it feeds (OTEL_TRACES_EXPORTER=otlp,console)
        self.label = f"{kind} (copy to {copy_to})" if copy_to else kind
        self.max_queue_size = max_queue_size
        self.batch_size = min(max_export_batch_size, max_queue_size)
        self.delay_s = schedule_delay_ms / 1000
        self.export_timeout_s = export_timeout_ms / 1000
        self.max_block_s = max_block_s
        self.max_in_flight = max(1, max_in_flight)
        self.answer_timeout_s = float(getattr(exporter, "answer_timeout_s", None) or ANSWER_TIMEOUT_S)
        # While the collector is not keeping up, keep 1/keep_while_failing of the queue (1: all of it).
        self.failing_cap = max(1, max_queue_size // max(1, keep_while_failing))
        self._export = export or exporter.export
        self._fresh()
        BATCH_QUEUES.add(self)

    def _fresh(self) -> None:
        self.queue: deque[Any] = deque()
        self.seen = self.entered = self.shed = self.overflow = self.late = 0
        self.after_report: Callable[[str], None] | None = None  # set once the exit report is said (its label)
        self.exported = self.failed = 0
        self.in_flight = 0  # items taken from the queue by exports not finished yet (all workers)
        self.last_ok, self.last_duration_s = True, 0.0
        self._exports: dict[int, float] = {}  # id of a batch in flight -> when its export began
        self._cond = threading.Condition(threading.Lock())
        self._flushes: list[threading.Event] = []
        self._worker: threading.Thread | None = None  # the first of `_workers`, once started
        self._workers: list[threading.Thread] = []
        self._closed = False
        self._shut = self._exporter_shut = False  # shut down (once), and its exporter with it
        self._reported_at = float("-inf")
        self._reported = (0, 0, 0, 0)

    # -- the program's side (hot path) ---------------------------------------------------------

    def put(self, item: Any) -> bool:
        """Queue `item`, or count it as dropped; never raises, never waits long."""
        self.seen += 1
        queue = self.queue
        size = self._held()
        if size >= self.failing_cap:
            if not self.keeping_up():
                self.shed += 1
                self._report_soon()
                return False
            if size >= self.max_queue_size and not self._wait_for_room():
                self.overflow += 1
                self._report_soon()
                return False
        if self._closed:  # ended after the exit's shutdown, by a thread still running then (a daemon thread)
            self.late += 1
            say, self.after_report = self.after_report, None
            if say is not None:  # and after the exit report: counted nowhere else, so told here (once)
                say(self.label)
            return False
        queue.append(item)
        self.entered += 1
        if self._worker is None:
            self._start_worker()
        elif len(queue) == self.batch_size:
            with self._cond:
                self._cond.notify()
        return True

    def keeping_up(self) -> bool:
        """Is the collector answering? Told by answers, not latency: a distant one answering every export (slowly)
        keeps up; one failing, or not answering within its timeout, does not (one that never fails: yes)."""
        exporter = self.exporter
        if getattr(exporter, "building", False):
            return True  # importing grpc for the first export: nothing known about the collector yet
        if not self.last_ok or getattr(exporter, "answering", True) is False:
            return False
        started = list(self._exports.values())  # an export unanswered past the timeout: stuck
        return not (started and time.monotonic() - min(started) > self.answer_timeout_s)

    def _wait_for_room(self) -> bool:
        """Backpressure for bursts: True once the queue has room, False if it stays full."""
        if self.max_block_s <= 0:
            return False
        deadline = time.monotonic() + self.max_block_s
        while self._held() >= self.max_queue_size:
            answer_s = getattr(self.exporter, "answer_s", None)  # its last request alone, when it says
            quick = (self.last_duration_s if answer_s is None else answer_s) <= self.max_block_s * QUICK_ANSWER_SHARE
            if time.monotonic() >= deadline or not quick or not self.keeping_up():
                return False
            time.sleep(0.0005)  # releases the GIL: the worker drains the queue meanwhile
        return True

    def _held(self) -> int:
        # In flight beyond one batch counts against the queue: at most max_queue_size + one batch held,
        # as with one export in flight, however many there are.
        return len(self.queue) + max(0, self.in_flight - self.batch_size)

    dropped = property(lambda self: self.shed + self.overflow + self.late)

    def _report_soon(self) -> None:
        # From the program's thread, on a drop: the worker may be stuck in an export for a while.
        if time.monotonic() - self._reported_at >= REPORT_INTERVAL_S:
            with contextlib.suppress(Exception):
                self.report_losses()

    def report_losses(self) -> str | None:
        """One line on what was lost since the last line, rate-limited; the running totals with it."""
        now = time.monotonic()
        counts = (self.shed, self.overflow, self.failed, self.late)
        if counts == self._reported or now - self._reported_at < REPORT_INTERVAL_S:
            return None
        shed, overflow, failed, late = (c - r for c, r in zip(counts, self._reported, strict=True))
        self._reported, self._reported_at = counts, now
        parts = [f"{n} {why}" for n, why in ((shed, "dropped while the collector was not keeping up"),
                                             (overflow, "dropped because the export queue was full"),
                                             (failed, "not delivered (the exporter gave up on them)"),
                                             (late, "ended after the exit's shutdown (a thread still running)"))
                 if n]
        line = (f"{self.label}: {', '.join(parts)} since the last report; so far {self.seen} created = "
                f"{self.exported} delivered + {self.dropped + self.failed} lost + "
                f"{len(self.queue) + self.in_flight} queued or in flight")
        for report in REPORTERS:
            report(line)
        return line

    # -- the worker ----------------------------------------------------------------------------

    def _start_worker(self) -> None:
        with _STARTING:  # the first items of threads ending spans at once: one set of workers, started once
            if self._worker is None:
                self._start_workers()

    def _start_workers(self) -> None:
        global _first_item_seen
        first: tuple[Callable[[], None], ...] = ()
        if not _first_item_seen:  # run by the first worker: the program's thread never waits for them
            _first_item_seen, first = True, tuple(ON_FIRST_ITEM)
        name, workers = f"cryostorm-export-{self.kind.split()[0]}{'-' + self.copy_to if self.copy_to else ''}", []
        for n in range(self.max_in_flight):
            worker = threading.Thread(target=self._run, args=(first if n == 0 else (),),
                                      name=name if n == 0 else f"{name}-{n + 1}", daemon=True)
            try:
                start(worker)  # leaving the program's signals to the program (common/ownthreads.py)
            except RuntimeError:  # interpreter shutting down: flush/shutdown drain inline
                break
            workers.append(worker)
        self._workers = workers
        self._worker = workers[0] if workers else None

    def _run(self, first: Sequence[Callable[[], None]] = ()) -> None:
        from opentelemetry import context

        from cryostorm_run.export.forkgate import exporter_build

        with exporter_build():  # its imports are never half done at a fork (export/forkgate.py)
            for callback in first:  # cryostorm's own metrics (building the SDK meter provider: ~20 ms)
                with contextlib.suppress(Exception):  # they must never cost an item
                    callback()
            context.attach(suppressed())  # an exporter's own HTTP/gRPC calls must not become telemetry
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            if batch:
                self._export_batch(batch)
            if not self._closed:  # closed: its losses are in the shutdown's report (the exit line)
                self.report_losses()

    def _next_batch(self) -> list[Any] | None:
        """The next batch for this worker ([] on a timer wake with nothing to send; None: closed and empty). A full
        batch goes at once; a partial one only at the schedule delay, on flush or at shutdown: taking whatever is
        queued after each export would send many small batches (12x the export requests at 2,000 spans/s with 4
        workers), each costing the program CPU."""
        with self._cond:
            timer = time.monotonic() + self.delay_s
            while True:
                size = len(self.queue)
                if size and (self._closed or self._flushes or size >= self.batch_size):
                    return self._take()
                if not size:
                    self._flushed()
                    if self._closed:
                        return None
                left = timer - time.monotonic()
                if left <= 0 or not self._cond.wait(left):  # the schedule delay: a partial batch goes out
                    return self._take() if self.queue else []

    def _take(self) -> list[Any]:
        """Under `_cond`: one batch out of the queue, counted in flight from now on."""
        queue = self.queue
        batch = [queue.popleft() for _ in range(min(self.batch_size, len(queue)))]
        if len(queue) >= self.batch_size * self.max_in_flight and _encoded(batch[0]):
            size, most = sum(len(item[2]) for item in batch), self.batch_size * GROW_BATCHES
            while queue and len(batch) < most and size < GROWN_BYTES_MAX and _encoded(queue[0]):
                item = queue.popleft()
                batch.append(item)
                size += len(item[2])
        self.in_flight += len(batch)
        if len(queue) >= self.batch_size or (queue and (self._closed or self._flushes)):
            self._cond.notify()  # another worker takes the next batch meanwhile
        return batch

    def _flushed(self) -> None:
        """Under `_cond`: once nothing is queued or in flight, every waiting flush is done."""
        if not self.queue and not self.in_flight and self._flushes:
            for event in self._flushes:
                event.set()
            self._flushes = []

    def _drain_here(self, deadline: float) -> bool:
        """Drain in the calling thread (no worker: interpreter shutdown, or never started)."""
        if not self.queue:  # nothing to send: no suppression context (its import costs ~40 ms at exit)
            return True
        from opentelemetry import context

        token = context.attach(suppressed())
        try:
            while True:
                with self._cond:
                    if not self.queue:
                        return True
                    if time.monotonic() >= deadline:
                        return False
                    batch = self._take()
                self._export_batch(batch)
        finally:
            context.detach(token)

    def _export_batch(self, batch: list[Any]) -> None:
        key = id(batch)
        started = self._exports[key] = time.monotonic()
        ok = again = False
        try:
            result = self._export(batch)
            ok = getattr(result, "name", "SUCCESS") == "SUCCESS" and result is not False
            again = result is RETRY_LATER
        except Exception as exc:  # an exporter bug must not kill the worker; one shut down under the export
            if not self._exporter_shut:  # (the exit's time ran out) fails it: counted and told at exit, not here
                logging.getLogger("opentelemetry.cryostorm.export").warning(
                    "exporting %s failed: %s: %s", counted(len(batch), self.label), type(exc).__name__, exc)
        finally:
            self._exports.pop(key, None)
            with self._cond:
                self.last_duration_s = time.monotonic() - started
                self.last_ok = ok
                if ok:
                    self.exported += len(batch)
                elif again:  # still queued, in front: taken again at once (given up only at the exit deadline)
                    self.queue.extendleft(reversed(batch))
                else:
                    self.failed += len(batch)
                self.in_flight -= len(batch)
                self._flushed()
                self._cond.notify_all()  # a worker waiting for the others (flush, shutdown)

    # -- flush and shutdown (any thread) ---------------------------------------------------------

    def force_flush(self, timeout_millis: float = 30_000) -> bool:
        deadline = time.monotonic() + timeout_millis / 1000
        if not any(worker.is_alive() for worker in self._workers):
            return self._drain_here(deadline)
        event = threading.Event()
        with self._cond:
            self._flushes.append(event)
            self._flushed()
            self._cond.notify_all()
        return event.wait(max(0.0, deadline - time.monotonic()))

    def close_soon(self) -> None:
        """Take nothing more; the workers export what is queued and stop (`shutdown` then waits for them)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def shutdown(self, timeout_millis: float | None = None) -> bool:
        """Export what is queued within `timeout_millis` (default: export_timeout), then stop. Once: the
        providers' own call, after the exit path's bounded one, waits for nothing (`abandon` too)."""
        if self._shut:
            return self.stopped
        self._shut = True
        deadline = time.monotonic() + (self.export_timeout_s if timeout_millis is None else timeout_millis / 1000)
        self.close_soon()
        workers = [worker for worker in self._workers if worker.is_alive()]
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        done = not any(worker.is_alive() for worker in workers) if workers else self._drain_here(deadline)
        shutdown = getattr(self.exporter, "shutdown", None)
        self._exporter_shut = True
        if shutdown is not None:
            with contextlib.suppress(Exception):  # the exporter's own trouble: the queue's outcome counts
                shutdown()
        if not done:  # the exporter stops retrying when shut down: its export's end is then counted, not guessed
            for worker in workers:
                worker.join(0.05)
        return done

    def abandon(self) -> None:  # no time left for it at exit: what it holds stays (reported), nothing waits
        self._shut = True

    @property
    def closed(self) -> bool:
        """Shut down (or being shut down): it takes nothing more."""
        return self._closed

    @property
    def stopped(self) -> bool:
        """True once shut down and nothing is left queued or being exported."""
        return (self._closed and not self.queue and not self.in_flight
                and not any(worker.is_alive() for worker in self._workers))


def _encoded(item: Any) -> bool:
    """A pre-encoded span, `(resource, scope, bytes)` (see `otlp_encode.preencode`)."""
    return type(item) is tuple and len(item) == 3 and type(item[2]) is bytes


def _reset_after_fork() -> None:
    # The parent's queue, worker and locks are not the child's: start empty, count from zero.
    global _STARTING
    _STARTING = threading.Lock()
    for batch in list(BATCH_QUEUES):
        batch._fresh()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
