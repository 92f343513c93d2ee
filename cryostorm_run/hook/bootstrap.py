"""What the hook does inside the program's process: configure the SDK, instrument, report.

Imported by ``sitecustomize`` only. It must never break the program: every failure becomes
one clear line on stderr and the program runs on.
"""

from __future__ import annotations

import os
import sys
import time

from cryostorm_run.hook.say import STDERR_VAR, stderr_identity, warn, whose

TYPE_CHECKING = False  # not typing's: the hook keeps typing out of every process
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

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


def _without(path_list: str, entry: str) -> str | None:
    """PYTHONPATH as the program had it before the launcher put `entry` first (launch/plan.py `_pythonpath`),
    exactly, its empty entries (the current directory) too; None: it had none."""
    if path_list == entry:
        return None
    if path_list.startswith(entry + os.pathsep):
        return path_list[len(entry) + 1:]
    return os.pathsep.join(p for p in path_list.split(os.pathsep) if not p or os.path.abspath(p) != entry)


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
            self._distro.configure(cryostorm=True)
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
        programs = _without(pythonpath, hook_dir)
        if programs is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = programs
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
    from cryostorm_run.hook import exiting
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
    deferred = Deferred(providers, lambda message: warn(message + whose()),
                        lambda: exiting.after_first_build(providers),
                        _instrument.in_import_callback)
    finder = _instrument.FINDER
    finder.install()
    # concurrent.futures imports logging while its own package is half-loaded (asyncio's import does
    # it, so every uvicorn program): followed, so the fork gate it needs can wait for it (_on_logging).
    finder.follow("concurrent.futures")
    finder.when_imported("logging", lambda module: _on_logging(providers, finder.when_imported))
    deferred.watch(finder.when_imported)
    _check_versions()
    _instrument.instrument(distro, groups["opentelemetry_instrumentor"], warn)
    exiting.register_exit(providers)
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


def _on_logging(providers: Any, when_imported: Callable[[str, Callable[[Any], None]], None]) -> None:
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
    # The fork gate (export/forkgate.py) is loaded now, in the thread that imports logging, rather than by
    # the first build: a fork while another thread was importing it left its module lock held in the child,
    # whose first build then waited for it for good. It imports concurrent.futures.thread (its fork handler
    # must stand after that module's): when concurrent.futures itself is what imports logging, its package
    # is still half-loaded (no `Executor` yet) and that import would fail, so the gate waits until the
    # package is loaded. No build can start before then: nothing is emitted while it loads.
    futures = sys.modules.get("concurrent.futures")
    if futures is not None and not hasattr(futures, "Executor"):
        when_imported("concurrent.futures", lambda module: _load_fork_gate())
    else:
        _load_fork_gate()


def _load_fork_gate() -> None:
    try:
        from cryostorm_run.export import forkgate  # noqa: F401
    except Exception as exc:  # never break the program's import
        warn(f"fork protection not loaded in this process: {type(exc).__name__}: {exc}")


def _check_versions() -> None:
    """api and sdk must be one release: a mismatch works until it does not, so say it now, with the
    command `doctor` gives for it (common/otel_line.py)."""
    from opentelemetry.sdk.version import __version__ as sdk
    from opentelemetry.version import __version__ as api

    from cryostorm_run.common.sdkrange import SDK_RANGE, outside_range

    if api != sdk:
        from cryostorm_run.common.otel_line import disagree_message

        warn(disagree_message(f"opentelemetry-api {api}, opentelemetry-sdk {sdk}"))
    elif outside_range(sdk):  # cryostorm-run installed with --no-deps beside an older or newer line
        from cryostorm_run.common.otel_line import disagree_message

        low, high = ".".join(map(str, SDK_RANGE[0])), SDK_RANGE[1][0]  # as pyproject says it: >=1.40,<2
        warn(disagree_message(f"opentelemetry-sdk {sdk} is not one cryostorm-run supports (>={low},<{high}), so "
                              "what fails in it is unpredictable"))


def _stderr_is_read_by_the_parent() -> bool:
    """A child of the program whose stderr is not the one cryostorm-run was started with: its parent reads it
    (`capture_output=True`, `stderr=STDOUT`, a file, a pty) and may parse it, so a start-up line there would
    become part of what the parent reads (a JSON answer no longer parsed). Warnings and loss lines are still
    said there: telemetry trouble is never silent."""
    if os.environ.get("_CRYOSTORM_LAUNCHER_PID") in (None, str(os.getpid())):
        return False
    launcher = os.environ.get(STDERR_VAR)
    return launcher is not None and launcher != stderr_identity()


def _report(providers: Any, elapsed_ms: float, role: str | None = None) -> None:
    mode = os.environ.get(REPORT_VAR, "line")
    if mode == "quiet" or _stderr_is_read_by_the_parent():
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
