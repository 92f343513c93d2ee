"""Auto-instrumentation that costs nothing until a library is imported.

`opentelemetry-instrument` imports every installed instrumentation (and so every instrumented
library) at start-up. Here each `opentelemetry_instrumentor` entry point is activated when the
library it instruments is first imported (a post-import hook on `sys.meta_path`), or at once if
it is already imported. Dependency checks are those of opentelemetry-instrumentation. A program that
imports an instrumentation module itself (`import opentelemetry.instrumentation.requests`), which then
imports its library, gets it activated once that module has finished importing, not half-initialised.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
import threading
from importlib.machinery import ModuleSpec
from types import ModuleType

TYPE_CHECKING = False  # not typing's: the hook keeps typing out of every process
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

# Entry-point names that differ from the module they instrument. None: activate at start-up.
MODULE_OF: dict[str, str | None] = {
    "aiohttp-client": "aiohttp",
    "aiohttp-server": "aiohttp",
    "aio-pika": "aio_pika",
    "grpc_client": "grpc",
    "grpc_server": "grpc",
    "grpc_aio_client": "grpc",
    "grpc_aio_server": "grpc",
    "mysqlclient": "MySQLdb",
    "mysql": "mysql.connector",
    "tortoiseorm": "tortoise",
    "urllib": "urllib.request",
    "boto3sqs": "boto3",
    "system_metrics": None,
    "openai": "openai",
    "httpx2": "httpx2",
}

# Defaults that differ from upstream, chosen for users (documented in the README): one SERVER span
# per request instead of three (no per-message ASGI `receive`/`send` internal spans).
INSTRUMENT_KWARGS: dict[str, dict[str, Any]] = {
    "fastapi": {"exclude_spans": ["receive", "send"]},
    "starlette": {"exclude_spans": ["receive", "send"]},
}

# Handled by cryostorm itself: the log bridge exports records (the program's handlers, lastResort and
# basicConfig untouched) and a record factory adds otelTraceID/otelSpanID, as opentelemetry-instrumentation-logging
# would, without importing it at start-up (`logging` is always imported already).
BUILT_IN = {"logging": "handled by cryostorm's log bridge"}


class Status:
    """What happened to each instrumentation in this process (read by the startup report).

    A plain class: `dataclasses` (with `inspect`) would cost every process ~6 ms to import."""

    def __init__(self) -> None:
        self.watching: dict[str, str] = {}  # entry point → module awaited
        self.instrumented: list[str] = []
        self.skipped: dict[str, str] = {}  # entry point → reason
        self.failed: dict[str, str] = {}
        self.disabled: list[str] = []


STATUS = Status()
_LOCK = threading.RLock()
_STATE = threading.local()  # .depth: activations in progress; .pending: imports seen meanwhile


class _NotifyingLoader:
    """Runs the real loader, then the callbacks; the module keeps its real loader."""

    def __init__(self, loader: Any, on_loaded: Callable[[ModuleType], None], loading: set[str]) -> None:
        self._loader = loader
        self._on_loaded = on_loaded
        self._loading = loading

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        module: ModuleType | None = self._loader.create_module(spec)
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        self._loading.add(module.__name__)
        try:
            self._loader.exec_module(module)
        finally:
            self._loading.discard(module.__name__)
        self._on_loaded(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class PostImportFinder:
    """A meta-path finder that calls back once a watched module has finished executing.

    Not an `importlib.abc.MetaPathFinder` subclass: `sys.meta_path` only needs `find_spec`, and
    importlib.abc pulls in importlib.resources, tempfile, shutil and pathlib (~15 ms at every start)."""

    def invalidate_caches(self) -> None:
        """Nothing cached (`importlib.invalidate_caches` calls it on every meta-path finder)."""

    def __init__(self) -> None:
        self.callbacks: dict[str, list[Callable[[ModuleType], None]]] = {}
        self.loading: set[str] = set()  # watched modules whose code is running now (in any thread)
        self._busy: set[str] = set()

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> Any:
        if fullname not in self.callbacks or fullname in self._busy:
            return None
        self._busy.add(fullname)
        try:
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
            else:
                return None
        finally:
            self._busy.discard(fullname)
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _NotifyingLoader(spec.loader, self._fire, self.loading)  # type: ignore[assignment]
        return spec

    def _fire(self, module: ModuleType) -> None:
        _STATE.firing = getattr(_STATE, "firing", 0) + 1
        try:
            for callback in self.callbacks.pop(module.__name__, []):
                callback(module)
        finally:
            _STATE.firing -= 1

    def install(self) -> None:
        if self not in sys.meta_path:
            sys.meta_path.insert(0, self)

    def when_imported(self, name: str, callback: Callable[[ModuleType], None]) -> None:
        module = sys.modules.get(name)
        if module is not None and getattr(module, "__spec__", None) is not None and name not in self.callbacks:
            callback(module)
            return
        self.callbacks.setdefault(name, []).append(callback)

    def follow(self, name: str) -> None:
        """Track `name`'s import (`loading`), so that a callback can still be added while its code runs."""
        if name and name not in sys.modules:
            self.callbacks.setdefault(name, [])


FINDER = PostImportFinder()


def in_import_callback() -> bool:
    """Whether this thread is running a post-import callback: the program is importing a library."""
    return bool(getattr(_STATE, "firing", 0))


def _installed(module: str) -> bool:
    if module in sys.modules:
        return True
    top = module.split(".", 1)[0]
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False


def _conflict(ep: Any) -> str | None:
    from opentelemetry.instrumentation.dependencies import get_dist_dependency_conflicts

    conflict = get_dist_dependency_conflicts(ep.dist) if ep.dist is not None else None
    if conflict is None:
        return None
    found = getattr(conflict, "found", None)
    if found:  # the library is installed, in a version this instrumentation does not support: say so
        dist = getattr(ep.dist, "name", None) or f"the {ep.name} instrumentation"
        version = getattr(ep.dist, "version", "")
        required = getattr(conflict, "required", None) or str(conflict)
        VERSION_CONFLICTS[ep.name] = (f"{found} is NOT instrumented: {dist} {version} supports {required}; install "
                                      f"a supported version of it, or see `cryostorm-run doctor` for the fix")
    return str(conflict)


# instrumentation → one line on a library whose installed version its instrumentation refuses
VERSION_CONFLICTS: dict[str, str] = {}


def _activate(distro: Any, ep: Any, warn: Callable[[str], None]) -> None:
    """Instrument `ep` now, or right after the instrumentation being loaded on this thread.

    Loading one instrumentation imports libraries that may trigger another; activating that
    one in the middle would see a half-initialised module, so it waits for the outer one.
    """
    depth = getattr(_STATE, "depth", 0)
    if depth:
        _STATE.pending.append(ep)
        return
    _STATE.depth, _STATE.pending = 1, [ep]
    try:
        while _STATE.pending:
            _activate_now(distro, _STATE.pending.pop(0), warn)
    finally:
        _STATE.depth = 0


def _entry_module(ep: Any) -> str:
    """The module an entry point loads its instrumentor from (`opentelemetry.instrumentation.requests`)."""
    return str(getattr(ep, "value", "")).partition(":")[0].strip()


def _activate_now(distro: Any, ep: Any, warn: Callable[[str], None]) -> None:
    with _LOCK:
        if ep.name in STATUS.instrumented or ep.name in STATUS.failed or ep.name in STATUS.skipped:
            return
        entry_module = _entry_module(ep)
        if entry_module in FINDER.loading:
            # The program imports the instrumentation module itself and that is what imported the library:
            # the module is half-initialised (its instrumentor not defined yet). Activated once it is done.
            FINDER.when_imported(entry_module, functools.partial(_on_import, distro, ep, warn))
            return
        try:
            conflict = _conflict(ep)
            if conflict is not None:
                STATUS.skipped[ep.name] = conflict
                if ep.name in VERSION_CONFLICTS:  # imported by the program, yet not instrumented: never silent
                    warn(VERSION_CONFLICTS[ep.name])
                return
            distro.load_instrumentor(ep, skip_dep_check=True, **INSTRUMENT_KWARGS.get(ep.name, {}))
            STATUS.instrumented.append(ep.name)
            if os.environ.get("_CRYOSTORM_REPORT") == "verbose":
                warn(f"pid={os.getpid()} instrumented {ep.name}")
        except ImportError as exc:  # its library is not importable here: nothing to instrument
            STATUS.skipped[ep.name] = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # a broken instrumentation must never break the program
            STATUS.failed[ep.name] = f"{type(exc).__name__}: {exc}"
            warn(f"instrumentation {ep.name!r} failed: {type(exc).__name__}: {exc}")


def _on_import(distro: Any, ep: Any, warn: Callable[[str], None], module: ModuleType) -> None:
    _activate(distro, ep, warn)


def _on_django(distro: Any, ep: Any, warn: Callable[[str], None], module: ModuleType) -> None:
    """django imported: activate its instrumentation once `django.setup()` has run.

    The Django instrumentor reads `settings.MIDDLEWARE` when it is activated. At `import django`
    the project may not have named its settings yet (the wsgi.py/asgi.py `django-admin
    startproject` writes imports django first and sets DJANGO_SETTINGS_MODULE after): the
    instrumentor would then configure empty settings in their place and every request would fail.
    `django.setup()` (get_wsgi_application, get_asgi_application, manage.py) runs once the settings
    are known and before any request handler reads the middleware list.
    """
    apps = sys.modules.get("django.apps")
    if apps is not None and getattr(getattr(apps, "apps", None), "ready", False):  # already set up
        _activate(distro, ep, warn)
        return
    original = getattr(module, "setup", None)
    if not callable(original):
        STATUS.skipped[ep.name] = "this django has no setup()"
        return

    @functools.wraps(original)
    def setup(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        _activate(distro, ep, warn)
        return result

    module.setup = setup  # type: ignore[attr-defined]


def _on_fastapi(distro: Any, ep: Any | None, warn: Callable[[str], None], module: ModuleType) -> None:
    """FastAPI imported: its own telemetry when it has one, else the contrib instrumentation."""
    from cryostorm_run.hook import fastapi_native as _fastapi

    # Traces off and context propagated: FastAPI's own telemetry extracts the caller's context only when it
    # traces, so the service would cut its callers' traces (its outgoing calls carry no traceparent, no baggage);
    # the contrib middleware passes it on through a non-recording span.
    untraced = (os.environ.get("OTEL_TRACES_EXPORTER", "").strip() == "none"
                and os.environ.get("OTEL_PROPAGATORS", "").strip() not in ("", "none"))
    if not _fastapi.native_supported() or (untraced and ep is not None):
        if ep is not None:
            _activate(distro, ep, warn)
        else:
            STATUS.skipped["fastapi"] = ("this FastAPI has no native telemetry and "
                                         "opentelemetry-instrumentation-fastapi is not installed")
        return
    if untraced:
        warn("traces are off: FastAPI's own telemetry then does not pass a caller's trace context (traceparent, "
             "baggage) on to this service's outgoing calls, which cuts its callers' traces; install "
             "opentelemetry-instrumentation-fastapi (used instead when traces are off), or keep traces on")
    try:
        operations = _fastapi.mode() == "native_operations"
        _fastapi.configure(operations, _fastapi.excluded_urls())
    except Exception as exc:  # never break the program's import of fastapi
        STATUS.failed["fastapi"] = f"{type(exc).__name__}: {exc}"
        warn(f"FastAPI native telemetry could not be configured: {type(exc).__name__}: {exc}")
        return
    STATUS.instrumented.append("fastapi")
    if os.environ.get("_CRYOSTORM_REPORT") == "verbose":
        spans = "with operation spans" if operations else "one SERVER span per request"
        warn(f"pid={os.getpid()} instrumented fastapi (FastAPI's native telemetry, {spans})")


def _misspelt_disabled(disabled: set[str], installed: set[str], warn: Callable[[str], None]) -> None:
    """A name in OTEL_PYTHON_DISABLED_INSTRUMENTATIONS close to an installed instrumentation's but not one (the
    instrumentation stays on): said, with the name it was probably meant to be. Others (not installed here:
    a variable shared by several services) are not."""
    unknown = sorted(disabled - installed)
    if not unknown:
        return
    import difflib

    for name in unknown:
        close = difflib.get_close_matches(name, sorted(installed), n=1, cutoff=0.75)
        if close:
            warn(f"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS names {name!r}, which is no installed instrumentation, "
                 f"so {close[0]!r} stays instrumented: did you mean {close[0]!r}?")


def _disabled(entry_points: Sequence[Any], warn: Callable[[str], None]) -> set[str]:
    """The names OTEL_PYTHON_DISABLED_INSTRUMENTATIONS lists (comma-separated, stripped). `*` is every one,
    FastAPI's native telemetry too, as in opentelemetry-instrument (its SKIPPED_INSTRUMENTATIONS_WILDCARD)."""
    names = {n.strip() for n in os.environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "").split(",") if n.strip()}
    installed = {ep.name for ep in entry_points}
    if "*" in names:
        return installed | {"fastapi"}
    _misspelt_disabled(names, installed, warn)
    return names


def instrument(distro: Any, entry_points: Sequence[Any], warn: Callable[[str], None]) -> None:
    """Activate each instrumentor now or when its library is imported."""
    from cryostorm_run.hook.fastapi_native import NATIVE_MODES, mode

    disabled = _disabled(entry_points, warn)
    FINDER.install()
    native = mode() in NATIVE_MODES and "fastapi" not in disabled
    if native and _installed("fastapi"):
        # Decided when fastapi is imported (its version says whether it has native telemetry).
        fastapi_ep = next((ep for ep in entry_points if ep.name == "fastapi"), None)
        FINDER.follow(_entry_module(fastapi_ep))  # "" (nothing to follow) when it is not installed
        STATUS.watching["fastapi"] = "fastapi"
        FINDER.when_imported("fastapi", functools.partial(_on_fastapi, distro, fastapi_ep, warn))
    for ep in entry_points:
        if ep.name in disabled:
            STATUS.disabled.append(ep.name)
            continue
        if native and ep.name == "fastapi":
            continue
        if ep.name in BUILT_IN:
            STATUS.skipped[ep.name] = BUILT_IN[ep.name]
            continue
        module = MODULE_OF.get(ep.name, ep.name.replace("-", "_"))
        if module is None:
            _activate(distro, ep, warn)
        elif _installed(module):
            STATUS.watching[ep.name] = module
            FINDER.follow(_entry_module(ep))  # the program may import it first (then it imports the library)
            on_import = _on_django if ep.name == "django" else _on_import
            FINDER.when_imported(module, functools.partial(on_import, distro, ep, warn))
        elif ep.name in MODULE_OF:
            STATUS.skipped[ep.name] = f"library {module!r} is not installed"
        else:
            # No module of that name: either the library is absent (the dependency check says
            # so, cheaply, from metadata) or it has another module name: load it the classic way.
            conflict = _conflict(ep)
            if conflict is not None:
                STATUS.skipped[ep.name] = conflict
                if ep.name in VERSION_CONFLICTS:
                    warn(VERSION_CONFLICTS[ep.name])
            else:
                _activate(distro, ep, warn)
