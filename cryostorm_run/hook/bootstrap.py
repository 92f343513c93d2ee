"""What the hook does inside the program's process: configure the SDK, instrument, report.

Imported by ``sitecustomize`` only. It must never break the program: every failure becomes
one clear line on stderr and the program runs on.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import time

TYPE_CHECKING = False  # not typing's: the hook keeps typing out of every process
if TYPE_CHECKING:
    from typing import Any, NoReturn

_DONE = False
HOOK_DIR_VAR = "_CRYOSTORM_HOOK_DIR"
REPORT_VAR = "_CRYOSTORM_REPORT"
# Interpreters multiprocessing starts for its own bookkeeping (`python -c "from multiprocessing.X import
# main; ..."`): they never run the program's code, so they never emit. Configuring telemetry there cost
# ~0.5 s of CPU each and printed a start-up line that looked like one more worker.
HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.semaphore_tracker")  # the latter: Python < 3.8
# The forkserver runs no program code either, but the workers it forks inherit what it configured: it
# announces itself, saying what it is (its workers, forked, print no line of their own).
FORKSERVER = "multiprocessing.forkserver"


def helper_role(argv: list[str]) -> tuple[str | None, bool]:
    """(the multiprocessing module this interpreter serves, whether it can emit), or (None, True)."""
    code = argv[argv.index("-c") + 1] if "-c" in argv[:-1] else ""
    for module in (*HELPERS, FORKSERVER):
        if code.startswith(f"from {module} import main"):
            return module, module == FORKSERVER
    return None, True


def warn(message: str) -> None:
    from cryostorm_run.common.shown import scrubbed

    try:
        # Messages quote settings and errors (an exporter's error may quote a header it refused): header
        # values and URL secrets masked, control characters escaped.
        sys.stderr.write(f"cryostorm: {scrubbed(message)}\n")
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass  # no usable stderr (closed, or pythonw): nothing better to do


def _without(path_list: str, entry: str) -> str:
    return os.pathsep.join(p for p in path_list.split(os.pathsep) if p and os.path.abspath(p) != entry)


GROUPS = ("opentelemetry_distro", "opentelemetry_configurator", "opentelemetry_instrumentor")


def _named(eps: list[Any], name: str, group: str) -> Any:
    for ep in eps:
        if ep.name == name:
            return ep
    raise RuntimeError(f"entry point {group}:{name} not found; is cryostorm-run installed in this environment?")


class _LazyDistro:
    """Loads and configures the `cryostorm` distro when the first instrumentation needs it."""

    def __init__(self, ep: Any) -> None:
        self._ep = ep
        self._distro: Any = None

    def load_instrumentor(self, entry_point: Any, **kwargs: Any) -> None:
        if self._distro is None:
            self._distro = self._ep.load()()
            self._distro.configure()
        self._distro.load_instrumentor(entry_point, **kwargs)


def initialize() -> None:
    """Configure telemetry for this process once. Never raises."""
    global _DONE
    if _DONE:
        return
    _DONE = True
    started = time.perf_counter()
    hook_dir = os.environ.get(HOOK_DIR_VAR, "")
    pythonpath = os.environ.get("PYTHONPATH")
    # While initialising, children must not run the hook again (no recursion).
    if pythonpath is not None and hook_dir:
        os.environ["PYTHONPATH"] = _without(pythonpath, hook_dir)
    role, emits = helper_role(list(getattr(sys, "orig_argv", sys.argv)))
    try:
        if not emits:
            if os.environ.get(REPORT_VAR) == "verbose":
                warn(f"pid={os.getpid()} ppid={os.getppid()} process={role}: not instrumented (a helper "
                     "that runs none of the program's code)")
            return
        _initialize(started, role)
    except Exception as exc:
        warn(f"telemetry disabled in this process: {type(exc).__name__}: {exc}")
    finally:
        if pythonpath is not None and os.environ.get("_CRYOSTORM_CHILDREN", "all") == "all":
            os.environ["PYTHONPATH"] = pythonpath


def _initialize(started: float, role: str | None) -> None:
    from cryostorm_run.export.deferred import Deferred, check
    from cryostorm_run.hook import instrument as _instrument
    from cryostorm_run.hook.entrypoints import entry_points

    groups = entry_points(GROUPS)
    # By name, so cryostorm's win over any other installed distro or configurator.
    distro = _LazyDistro(_named(groups["opentelemetry_distro"], "cryostorm", "opentelemetry_distro"))
    configurator_cls = _named(groups["opentelemetry_configurator"], "cryostorm", "opentelemetry_configurator").load()
    configurator_cls().configure(deferred=True)
    providers = configurator_cls.providers
    check(providers.runtime)  # a name nothing knows: said now, telemetry off, as when built at start-up
    # Each signal is built at its first use (export/deferred.py): a process that never emits imports no
    # OpenTelemetry module at all. The exit hook that builds exporters is needed once one is built.
    deferred = Deferred(providers, warn, lambda: _after_first_build(providers), _instrument.in_import_callback)
    finder = _instrument.FINDER
    finder.install()
    finder.when_imported("logging", lambda module: _on_logging(providers))
    deferred.watch(finder.when_imported)
    _check_versions()
    _instrument.instrument(distro, groups["opentelemetry_instrumentor"], warn)
    _register_exit(providers)
    hook_dir = os.environ.get(HOOK_DIR_VAR, "")
    if hook_dir and os.environ.get("_CRYOSTORM_CHILDREN", "all") == "all":  # none: children meant without it
        from cryostorm_run.hook.children import watch

        watch(hook_dir, warn, finder.when_imported)
    # What the hook built lives as long as the process (the instrumentation machinery, these modules);
    # a full garbage collection need not walk it again each time, and every walk is a pause of the
    # program. Frozen objects are still freed when no longer referenced.
    import gc

    gc.freeze()
    _report(providers, (time.perf_counter() - started) * 1000, role)


def _on_logging(providers: Any) -> None:
    """`logging` imported (by the program, or by OpenTelemetry's first module): the SDK's own warnings
    to stderr, trace ids on every record, and the bridge that exports records (its provider is built at
    the first record it exports)."""
    try:
        from cryostorm_run.export.logbridge import attach, inject_trace_context
        from cryostorm_run.export.providers import rt_level
        from cryostorm_run.hook import sdk_warnings

        sdk_warnings.install()
        inject_trace_context(providers.runtime.service_name)
        if providers.runtime.logs.enabled and providers.log_handler is None:
            from cryostorm_run.export.deferred import BridgeProvider

            providers.log_handler = attach(BridgeProvider(providers.deferred), rt_level(providers.runtime))
    except Exception as exc:  # never break the program's import of logging
        warn(f"logs not bridged in this process: {type(exc).__name__}: {exc}")


def _check_versions() -> None:
    """api and sdk must be one release: a mismatch works until it does not, so say it now, with the
    command `doctor` gives for it (common/otel_line.py)."""
    from opentelemetry.sdk.version import __version__ as sdk
    from opentelemetry.version import __version__ as api

    if api != sdk:
        from cryostorm_run.common.otel_line import disagree_message

        warn(disagree_message(f"opentelemetry-api {api}, opentelemetry-sdk {sdk}"))


def _register_exit(providers: Any) -> None:
    from cryostorm_run.export.providers import shutdown

    flushed_pid: list[int] = []

    def flush_at_exit() -> None:
        from cryostorm_run.export.providers import loss_report

        if os.getpid() in flushed_pid:  # atexit and a multiprocessing finalizer may both call it
            return
        flushed_pid.append(os.getpid())
        if not providers.built() and providers.log_handler is None:
            return  # nothing was built in this process: nothing to send, nothing lost
        timeout = providers.runtime.shutdown_timeout_ms / 1000
        flushed = shutdown(providers)
        report = loss_report()
        for kind, counts in sorted(report.items()):
            if counts["dropped"]:
                warn(f"{counts['dropped']} {kind} dropped because the export queue was full or the collector was "
                     "not keeping up "
                     "(raise export_config.max_queue_size, or reduce volume)")
            if counts["failed"]:
                warn(f"{counts['failed']} {kind} not delivered: the exporter gave up on them (see the errors above)")
        otlp = sys.modules.get("cryostorm_run.export.otlp")  # not loaded: nothing was sent over OTLP
        for kind, count in sorted(getattr(otlp, "REJECTED", {}).items()):
            warn(f"the collector rejected {count} {kind} items in total (partial success; see above)")
        if not flushed:
            targets = ", ".join(f"{k}: {v}" for k, v in providers.exporters.items() if v.startswith("otlp"))
            lost = ", ".join(f"{c['queued'] + c['in_flight']} {kind}" for kind, c in sorted(report.items())
                             if c["queued"] + c["in_flight"]) or (
                f"the last {providers.stopping} export" if providers.stopping else "an export in flight")
            warn(f"telemetry not fully flushed within {timeout:g} s (shutdown_timeout_millis): {lost} not "
                 f"delivered; exporters still busy ({targets or 'none'}); exiting anyway")

    atexit.register(flush_at_exit)

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
    # A program killed by SIGTERM with the default action never runs atexit. When the program
    # has no handler of its own, flush first, then die by the same signal (exit status 128+15).
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL and _in_main_thread():
        def on_sigterm(signum: int, frame: Any) -> None:
            atexit.unregister(flush_at_exit)
            flush_at_exit()
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

        signal.signal(signal.SIGTERM, on_sigterm)
    _flush_before_a_reraised_signal(flush_at_exit)
    _flush_before_os_exit(flush_at_exit)


def _flush_before_os_exit(flush_at_exit: Any) -> None:
    """A process that leaves through `os._exit` (a forked child, a worker pool) runs no atexit: flush
    first when anything is still queued (bounded by shutdown_timeout_millis), and report what is left."""
    original = os._exit
    if getattr(original, "cryostorm", False):
        return

    def _exit(status: int, /) -> NoReturn:
        try:
            queues = getattr(sys.modules.get("cryostorm_run.export.batch"), "BATCH_QUEUES", [])  # none: nothing queued
            if any(batch.queue or batch.in_flight or batch.dropped or batch.failed for batch in list(queues)):
                flush_at_exit()
        except BaseException:  # never stand between the program and its exit
            pass
        original(status)

    _exit.cryostorm = True  # type: ignore[attr-defined]
    _exit.__wrapped__ = original  # type: ignore[attr-defined]
    os._exit = _exit  # type: ignore[assignment]  # positional-only status, as the original


def _flush_before_a_reraised_signal(flush_at_exit: Any) -> None:
    """Servers that shut down gracefully on SIGTERM and then re-raise it with the default action
    (uvicorn, also as gunicorn's UvicornWorker, whose worker resets every handler to SIG_DFL first)
    die by the signal: no atexit, no flush. `signal.raise_signal` is wrapped so that raising a
    terminating signal whose action is the default flushes first (bounded), then raises it as asked:
    the process still ends the way the server intends, with the same status."""
    fatal = {getattr(signal, name) for name in ("SIGTERM", "SIGHUP", "SIGQUIT") if hasattr(signal, name)}
    original = signal.raise_signal
    if getattr(original, "cryostorm", False):
        return

    def raise_signal(signum: int, /) -> None:
        try:
            if signum in fatal and signal.getsignal(signum) is signal.SIG_DFL:
                atexit.unregister(flush_at_exit)
                flush_at_exit()
        except Exception as exc:  # never stand between the program and its signal
            warn(f"flush before signal {signum}: {type(exc).__name__}: {exc}")
        original(signum)

    raise_signal.cryostorm = True  # type: ignore[attr-defined]
    raise_signal.__wrapped__ = original  # type: ignore[attr-defined]
    signal.raise_signal = raise_signal


def _after_first_build(providers: Any) -> None:
    """Once the first provider is about to be built: what only a process with telemetry needs."""
    _report_while_running(providers)
    _before_interpreter_shutdown(providers)


def _report_while_running(providers: Any) -> None:
    """Losses are told while the program runs (a server may never exit), and counted as metrics."""
    from cryostorm_run.export import batch

    batch.REPORTERS.append(warn)
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

        with contextlib.suppress(RuntimeError):  # the first provider built during interpreter shutdown
            register(lambda: build_exporters_before_exit(providers))


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _report(providers: Any, elapsed_ms: float, role: str | None = None) -> None:
    mode = os.environ.get(REPORT_VAR, "line")
    if mode == "quiet":
        return
    from cryostorm_run.common.shown import printable
    from cryostorm_run.hook.instrument import STATUS

    rt = providers.runtime
    exporters = " ".join(f"{k}={v}" for k, v in providers.exporters.items()) or "no signals"
    service, env = printable(rt.service_name, 100), printable(rt.environment or "-", 100)  # no terminal escapes
    line = (
        f"service={service} env={env} pid={os.getpid()} ppid={os.getppid()} {exporters} "
        f"sampler={rt.sampler} instrumented={len(STATUS.instrumented)} on-import={len(STATUS.watching)} "
        f"hook={elapsed_ms:.0f}ms"
    ) + (f" process={role}" if role else "")
    warn(line)
    if mode == "verbose":
        for name in STATUS.instrumented:
            warn(f"  instrumented: {name}")
        for name, module in STATUS.watching.items():
            if name not in STATUS.instrumented:
                warn(f"  on import of {module}: {name}")
        for name, reason in STATUS.skipped.items():
            warn(f"  skipped: {name} ({reason})")
        for name, reason in STATUS.failed.items():
            warn(f"  failed: {name} ({reason})")
        for name in STATUS.disabled:
            warn(f"  disabled: {name} (OTEL_PYTHON_DISABLED_INSTRUMENTATIONS)")
