"""How a process with telemetry leaves: the exit flush and what starts it (atexit, SIGTERM, a re-raised
signal, `os._exit`, multiprocessing and celery pool children; a terminated multiprocessing child told again
until it has ended: hook/terminate.py), the exporters built before the interpreter shuts down, a SIGTERM
that comes during that work, and an exit by Ctrl-C that stays one. Part of the hook (imported by
`bootstrap` once telemetry is configured); every line it prints goes through `hook.say.warn`."""

from __future__ import annotations

import atexit
import os
import signal
import sys

from cryostorm_run.hook.say import warn, whose
from cryostorm_run.hook.terminate import an_exit_status  # not at os._exit: a forked child may hold no import lock

TYPE_CHECKING = False  # not typing's: the hook keeps typing out of every process
if TYPE_CHECKING:
    from typing import Any, NoReturn


# The exit work under way in this process (its pid while the exporters are built for the exit or the exit
# flush runs) and a terminating signal that came meanwhile: it is acted on once that work is done. And a
# terminating signal the program is raising itself (`signal.raise_signal`) right now.
_EXITING: dict[str, int | None] = {"pid": None, "signal": None}
_RAISING: dict[str, int | None] = {"signal": None}
_TOLD_PID_1: list[int] = []  # the signal a PID 1 program was told about (once per process)
# Signals whose default action ends the process without atexit, sent from outside: the terminal closed
# (SIGHUP), Ctrl-\\ (SIGQUIT), a supervisor's SIGTERM, a SIGUSR1/SIGUSR2 meant for a handler the program
# does not have. Not SIGALRM: an `alarm()` watchdog is there to end a program stuck in native code, which
# never returns to run a Python handler (README, Known limits).
_TERMINATING = ("SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")


def register_exit(providers: Any) -> None:
    flushed_pid: list[int] = []

    def flush_at_exit() -> None:
        if os.getpid() in flushed_pid:  # atexit and a multiprocessing finalizer may both call it
            _die_by_a_deferred_signal()
            return
        flushed_pid.append(os.getpid())
        _EXITING["pid"] = os.getpid()
        try:
            flush_and_report(providers)
        finally:
            _EXITING["pid"] = None
            _die_by_a_deferred_signal()

    def at_exit() -> None:
        flush_at_exit()
        _keep_an_interrupted_exit()

    atexit.register(at_exit)

    def after_fork_in_child() -> None:
        # gunicorn/celery/multiprocessing workers: the SDK restarts its worker threads and cryostorm's
        # lazy exporters open their own connections; the resource gets this worker's identity.
        try:
            from cryostorm_run.export.providers import reidentify_after_fork

            reidentify_after_fork(providers)
        except Exception as exc:
            warn(f"after fork: {type(exc).__name__}: {exc}")

    os.register_at_fork(after_in_child=after_fork_in_child)

    def flush_in_multiprocessing_children(module: Any) -> None:
        # multiprocessing children leave through os._exit (no atexit) and clear the finalizers
        # inherited from the parent; its after-fork hooks run after that, so the flush is
        # registered as one of its finalizers from there.
        from multiprocessing.util import Finalize

        module.register_after_fork(providers, lambda p: Finalize(p, flush_at_exit, exitpriority=100))

    def flush_in_celery_pool_children(module: Any) -> None:
        # celery prefork children (billiard) also leave through os._exit, from inside billiard's worker
        # loop: before multiprocessing's finalizers would run, so the one above never does. Celery
        # sends worker_process_shutdown in the child right before (`max_tasks_per_child`, pool shutdown).
        def flush(sender: Any = None, **kwargs: Any) -> None:
            flush_at_exit()

        module.worker_process_shutdown.connect(flush, weak=False)

    from cryostorm_run.hook.instrument import FINDER

    FINDER.install()
    FINDER.when_imported("multiprocessing.util", flush_in_multiprocessing_children)
    FINDER.when_imported("celery.signals", flush_in_celery_pool_children)

    def terminate_until_gone(module: Any) -> None:
        from cryostorm_run.hook.terminate import install

        install(module, providers.runtime.shutdown_timeout_ms / 1000)

    FINDER.when_imported("multiprocessing.process", terminate_until_gone)

    def flush_and_go_on(signum: int) -> None:
        _go_on_as_pid_1(providers, signum, exiting=lambda: os.getpid() in flushed_pid)

    _flush_on_terminating_signals(at_exit, flush_at_exit, flush_and_go_on)
    _flush_before_a_reraised_signal(flush_at_exit)
    _flush_before_os_exit(flush_at_exit)


def flush_and_report(providers: Any, by_the_program: bool = False) -> bool:
    """Shut `providers` down within shutdown_timeout_millis and say what was lost or left, and why (also the
    facade's, for providers it built: facade/telemetry.py). False when the deadline passed first."""
    from cryostorm_run.export.providers import loss_report, shutdown

    if not providers.built() and providers.log_handler is None:
        return True  # nothing was built in this process: nothing to send, nothing lost
    from cryostorm_run.common.words import counted
    timeout = providers.runtime.shutdown_timeout_ms / 1000
    flushed = shutdown(providers)
    report = loss_report()
    said = whose()
    for kind, counts in sorted(report.items()):
        if counts["dropped"]:
            warn(f"{counted(counts['dropped'], kind)} dropped because the export queue was full or the collector was "
                 f"not keeping up (raise export_config.max_queue_size, or reduce volume){said}")
        if counts["failed"]:
            warn(f"{counted(counts['failed'], kind)} not delivered: the exporter gave up on them (see the errors "
                 f"above){said}")
        if counts["late"]:
            warn(f"{counted(counts['late'], kind)} ended after Telemetry.shutdown(): not exported{said}"
                 if by_the_program else f"{counted(counts['late'], kind)} ended after telemetry was shut down for "
                 f"the exit, by a thread still running then (a daemon thread): not exported{said}")
    otlp = sys.modules.get("cryostorm_run.export.otlp")  # not loaded: nothing was sent over OTLP
    items = getattr(otlp, "REJECTED_ITEMS", {})
    for sig, count in sorted(getattr(otlp, "REJECTED", {}).items()):
        warn(f"the collector rejected {counted(count, items.get(sig, 'items'))} in total (partial success; see "
             f"above){said}")
    _arm_after_report(report, said, by_the_program)
    if not flushed:
        targets = ", ".join(f"{k}: {v}" for k, v in providers.exporters.items() if v.startswith("otlp"))
        warn(f"telemetry not fully flushed within {timeout:g} s (shutdown_timeout_millis): "
             f"{_unconfirmed(report, providers.stopping, _last_faults())}; exporters still busy ({targets or 'none'}); "
             f"exiting anyway{said}")
    return flushed


def _arm_after_report(report: dict[str, dict[str, int]], said: str, by_the_program: bool = False) -> None:
    """What a daemon thread still ends after the report is told, once a queue: by the queue as it comes, or here
    at once for what came while the report was being said (counted nowhere else). After the program's own
    `Telemetry.shutdown()` (it goes on running), what it still ends is told as that."""
    from cryostorm_run.export.batch import BATCH_QUEUES

    def say(label: str) -> None:
        warn(f"{label} still ended after Telemetry.shutdown(): not exported (said once){said}" if by_the_program else
             f"{label} still ended after the exit report above, by a thread still running (a daemon thread): lost, "
             f"and not counted there{said}")

    queues = list(BATCH_QUEUES)
    late: dict[str, int] = {}
    for batch in queues:
        batch.after_report = say
        late[batch.label] = late.get(batch.label, 0) + batch.late
    for batch in queues:
        if late[batch.label] > report.get(batch.label, {}).get("late", 0) and batch.after_report is not None:
            batch.after_report = None
            say(batch.label)


def _last_faults() -> str:
    """Why: what the last failed request of each signal still failing ended with (export/errors.py)."""
    errors = sys.modules.get("cryostorm_run.export.errors")
    told = {(fault.what, fault.fix): None for _, fault in sorted(getattr(errors, "LAST_FAULT", {}).items())}
    return "".join(f"; the last attempt failed: {what}; fix: {fix}" for what, fix in told)


def _unconfirmed(report: dict[str, dict[str, int]], stopping: str, why: str = "") -> str:
    """What the exit flush left: queued items were never sent; items in an export still under way at the
    deadline, to a collector that answers (a slow one), may yet reach it (the process ends right after), so
    they are not called lost."""
    held = [(kind, c["queued"] + c["in_flight"], c.get("under_way", 0)) for kind, c in sorted(report.items())
            if c["queued"] + c["in_flight"]]
    if not held:
        return (f"the last {stopping} export not delivered" if stopping else "an export in flight not delivered") + why
    from cryostorm_run.common.words import counted

    text = ", ".join(counted(count, kind) for kind, count, _ in held) + " not confirmed delivered"
    under_way = [counted(flying, kind) for kind, _, flying in held if flying]
    refused = [counted(report[kind].get("refused", 0), kind) for kind, _, _ in held if report[kind].get("refused")]
    if refused and not why:  # no failure left to name (later exports succeeded): a retry delay outlasted the exit
        text += f" ({' and '.join(refused)} of them waiting out a retry delay after a failed attempt)"
    if under_way:
        text += (f" ({' and '.join(under_way)} of them in an export still under way at the deadline: the "
                 "collector may yet have those)")
    return text + why


def _flush_on_terminating_signals(at_exit: Any, flush_at_exit: Any, flush_and_go_on: Any) -> None:
    """A program killed by SIGTERM, SIGHUP (its terminal closed), SIGQUIT, SIGUSR1 or SIGUSR2 with the
    default action never runs atexit. For each the program has no handler of its own for: flush first, then
    die by the same signal (the same exit status, and SIGQUIT's core dump). `signal.getsignal` shows this
    handler for them. As PID 1 the default action does nothing: `flush_and_go_on`, and the program goes on."""
    if not _in_main_thread():
        return

    def on_signal(signum: int, frame: Any) -> None:
        if signal.getsignal(signum) is not on_signal:
            # Called by the program's own handler, which took `signal.getsignal`'s answer as the previous
            # handler to chain to: the default action was not callable, so the program's handler goes on
            # to its own end (atexit flushes then). Dying here would skip that end.
            return
        if _EXITING["pid"] == os.getpid():
            # It interrupted the exit work (a pool terminating workers that are already leaving): dying
            # now would lose what is queued without a word, and waiting here for the export thread could
            # deadlock on what the interrupted code holds. That work ends (bounded), then the signal acts.
            _EXITING["signal"] = signum
            return
        if os.getpid() == 1:
            flush_and_go_on(signum)
            return
        atexit.unregister(at_exit)
        flush_at_exit()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        warn(f"still running after {signal.Signals(signum).name}, which should have ended it: telemetry was shut down "
             f"for the exit, nothing the program makes from now on is exported{whose()}")

    for name in _TERMINATING:
        signum = getattr(signal, name, None)
        if signum is not None and signal.getsignal(signum) is signal.SIG_DFL:
            signal.signal(signum, on_signal)


def _go_on_as_pid_1(providers: Any, signum: int, exiting: Any) -> None:
    """PID 1 (a container's first process, no init) with no handler of its own for `signum`: the kernel ignores
    the signal's default action there, so the program goes on, as it would without cryostorm, and so does its
    telemetry. What is buffered is sent now in a background thread (the stop's SIGKILL may follow), the program
    not held. A program still running a second later is told why the signal did not end it; one re-raising a
    signal it handled (uvicorn, after its graceful shutdown) is ending anyway: nothing then, its exit flushes."""
    if _RAISING["signal"] == signum:
        return
    import threading
    import time

    from cryostorm_run.common.ownthreads import start
    from cryostorm_run.export.providers import flush

    def in_the_background() -> None:
        came = time.monotonic()
        if providers.built():
            flush(providers, providers.runtime.shutdown_timeout_ms / 1000)
        time.sleep(max(0.0, came + 1.0 - time.monotonic()))
        if exiting() or sys.is_finalizing() or _TOLD_PID_1:
            return
        _TOLD_PID_1.append(signum)
        warn(f"{signal.Signals(signum).name} did not end the program: it is PID 1 (a container's first process) "
             "with no handler of its own for it, where the kernel ignores the signal, as it would without "
             "cryostorm; its telemetry was flushed and goes on (what is buffered when a SIGKILL comes is lost). "
             "To have the signal end it, run it under an init: docker run --init, compose init: true, tini")

    try:  # noqa: SIM105  (contextlib stays out of the hook)
        start(threading.Thread(target=in_the_background, name="cryostorm-pid-1", daemon=True))
    except RuntimeError:  # interpreter shutting down: its exit flushes
        pass


def _flush_before_os_exit(flush_at_exit: Any) -> None:
    """A process that leaves through `os._exit` (a forked child, a worker pool) runs no atexit: flush
    first when anything is still queued (bounded by shutdown_timeout_millis), and report what is left."""
    original = os._exit
    if getattr(original, "cryostorm", False):
        return

    def _exit(*args: Any, **kwargs: Any) -> NoReturn:
        # Whatever the original takes (`os._exit(4)`, `os._exit(status=4)`) and the same error for what it
        # does not: the call is passed on as made; only a call that will end the process flushes first.
        try:
            if an_exit_status(args, kwargs):
                queues = getattr(sys.modules.get("cryostorm_run.export.batch"), "BATCH_QUEUES", [])  # none: none queued
                if any(batch.queue or batch.in_flight or batch.dropped or batch.failed for batch in list(queues)):
                    flush_at_exit()
        except BaseException:  # never stand between the program and its exit
            pass
        original(*args, **kwargs)

    _exit.cryostorm, _exit.__wrapped__ = True, original  # type: ignore[attr-defined]
    os._exit = _exit


def _flush_before_a_reraised_signal(flush_at_exit: Any) -> None:
    """Servers that shut down gracefully on SIGTERM and then re-raise it with the default action
    (uvicorn, also as gunicorn's UvicornWorker, whose worker resets every handler to SIG_DFL first)
    die by the signal: no atexit, no flush. `signal.raise_signal` is wrapped so that raising a
    terminating signal whose action is the default flushes first (bounded), then raises it as asked:
    the process still ends the way the server intends, with the same status. Not as PID 1, where the signal
    does nothing: the program goes on, its telemetry on, and its exit flushes. Likewise `os.kill` of the
    process's own PID (the re-raise idiom from before `raise_signal`, after resetting the handler)."""
    fatal = {getattr(signal, name) for name in _TERMINATING if hasattr(signal, name)}
    original, original_kill = signal.raise_signal, os.kill
    if getattr(original, "cryostorm", False):
        return

    def flush_first(signum: int) -> None:
        try:
            if signum in fatal and signal.getsignal(signum) is signal.SIG_DFL and os.getpid() != 1:
                atexit.unregister(flush_at_exit)  # (at_exit is what atexit holds; flushing twice is a no-op)
                flush_at_exit()
        except Exception as exc:  # never stand between the program and its signal
            warn(f"flush before signal {signum}: {type(exc).__name__}: {exc}")

    def kill(pid: int, signum: int, /) -> None:
        if pid == os.getpid():
            flush_first(signum)
        original_kill(pid, signum)

    def raise_signal(signum: int, /) -> None:
        flush_first(signum)
        _RAISING["signal"] = signum  # (its handler runs within the call, in the main thread)
        try:
            original(signum)
        finally:
            _RAISING["signal"] = None

    raise_signal.cryostorm = kill.cryostorm = True  # type: ignore[attr-defined]
    raise_signal.__wrapped__, kill.__wrapped__ = original, original_kill  # type: ignore[attr-defined]
    signal.raise_signal, os.kill = raise_signal, kill


def after_first_build(providers: Any) -> None:
    """Once the first provider is about to be built: what only a process with telemetry needs."""
    _report_while_running(providers)
    _before_interpreter_shutdown(providers)


def _report_while_running(providers: Any) -> None:
    """Losses are told while the program runs (a server may never exit), and counted as metrics."""
    from cryostorm_run.export import batch

    batch.REPORTERS.append(lambda line: warn(line + whose()))
    if providers.runtime.metrics.enabled:
        def own_metrics() -> None:
            from cryostorm_run.export.selfmetrics import register

            meter_provider = providers.deferred.meter_provider()
            if meter_provider is not None:
                register(meter_provider)

        batch.ON_FIRST_ITEM.append(own_metrics)


def _before_interpreter_shutdown(providers: Any) -> None:
    import concurrent.futures.thread  # noqa: F401  (its exit hook must be registered before ours)
    import threading

    from cryostorm_run.export.providers import build_exporters_before_exit

    register = getattr(threading, "_register_atexit", None)  # CPython >= 3.9, used by concurrent.futures
    if register is not None:
        import contextlib

        def build() -> None:
            _EXITING["pid"] = os.getpid()  # a SIGTERM now waits for the exit flush (see on_signal)
            try:
                build_exporters_before_exit(providers)
            finally:
                _EXITING["pid"] = None

        with contextlib.suppress(RuntimeError):  # the first provider built during interpreter shutdown
            register(build)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _die_by_a_deferred_signal() -> None:
    """A terminating signal came during the exit work: now that it is done, end as the signal would have."""
    signum = _EXITING["signal"]
    if signum is not None and _EXITING["pid"] is None:
        _EXITING["signal"] = None
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _keep_an_interrupted_exit() -> None:
    """A program ended by an unhandled KeyboardInterrupt (Ctrl-C) dies by SIGINT once the interpreter has shut
    down (status 130 in a shell), unless code run in the meantime cleared CPython's mark of it: any `exec` or
    `eval` of a string does (namedtuple and dataclass creation, imports of modules that use them), and the
    exit flush builds and imports what it needs. The mark is set again, the way CPython sets it: by a
    KeyboardInterrupt escaping evaluated code. Not in an interactive session (its last error is not its end)."""
    if isinstance(getattr(sys, "last_value", None), KeyboardInterrupt) and not hasattr(sys, "ps1") \
            and not sys.flags.interactive:
        try:  # noqa: SIM105  (contextlib stays out of the hook)
            exec("raise KeyboardInterrupt")
        except KeyboardInterrupt:
            pass
