"""The `Telemetry` facade: manual spans, metrics, logs and context propagation in a few calls.

It shares everything with the launcher's hook: settings become ``OTEL_*`` variables
(`settings_env`), those become a `Runtime` (`runtime_from_env`), and `build_providers` makes
the SDK providers. Under ``cryostorm-run`` the hook has already done all that, and the facade
simply uses the providers the hook installed: no second setup, no duplicate exports.

Example:
    >>> from cryostorm_run import Telemetry, TelemetrySettings
    >>> telemetry = Telemetry.from_settings(TelemetrySettings(exporter_type="none"))
    >>> with telemetry.start_as_current_span("checkout") as span:
    ...     telemetry.create_counter("orders").add(1)
    >>> telemetry.shutdown()
    True
    >>> Telemetry.reset()

Global state: OpenTelemetry lets its global providers be set once per process. The facade
therefore keeps all of its own state in one place (the `Telemetry` class: the instance and its
lock; each instance: one immutable `_State`) and hands out tracers and meters from *its*
providers, never through the globals. `Telemetry.reset()` shuts those providers down and forgets
the instance; the globals keep pointing at the old, shut-down providers. Tests that configure
the facade repeatedly also reset the globals with `cryostorm_run.testing.reset_telemetry()`.
"""

from __future__ import annotations

import atexit
import sys
import threading
from typing import TYPE_CHECKING, Any, ClassVar, ParamSpec, TypeVar

from cryostorm_run.common.runtime import runtime_from_env
from cryostorm_run.export.providers import Providers, build_providers, flush, install
from cryostorm_run.facade.api import TelemetryApi
from cryostorm_run.facade.state import (
    _PRIVATE,
    _launcher_providers,
    _State,
    _state_for,
)

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.id_generator import IdGenerator

    from cryostorm_run.config.model import TelemetryModel

__all__ = ["Telemetry"]

P = ParamSpec("P")
R = TypeVar("R")



class Telemetry(TelemetryApi):
    """One process-wide entry point to tracing, metrics, logs and context propagation.

    Create it once with `from_settings`; reach it anywhere with `get_instance`. Methods never
    raise because telemetry is off: a disabled signal gives OpenTelemetry's no-op tracer or meter,
    and before initialisation every method is a no-op (`initialized` is False).

    Example:
        >>> from cryostorm_run import Telemetry, TelemetrySettings
        >>> telemetry = Telemetry.from_settings(TelemetrySettings(exporter_type="none"))
        >>> telemetry is Telemetry.get_instance()
        True
        >>> Telemetry.reset()
    """

    _lock: ClassVar[threading.RLock] = threading.RLock()
    _instance: ClassVar[Telemetry | None] = None

    def __init__(self, *, _token: object = None) -> None:
        if _token is not _PRIVATE:
            raise TypeError("use Telemetry.from_settings(settings) or Telemetry.get_instance()")
        self._state = _State()

    def __repr__(self) -> str:
        state = self._state
        if not state.initialized:
            return "<Telemetry not initialized>"
        service = state.providers.runtime.service_name if state.providers else "disabled"
        return f"<Telemetry service={service!r} from_launcher={self.from_launcher}>"

    # -- life cycle ------------------------------------------------------------------------------

    @classmethod
    def from_settings(cls, settings: TelemetryModel, *, id_generator: IdGenerator | None = None) -> Telemetry:
        """Configure telemetry for this process once and return the process-wide instance.

        Under ``cryostorm-run`` the providers the hook installed are reused and `settings` are not
        applied (a ``cryostorm:`` line names those that differ from the environment's); otherwise the
        SDK is configured from `settings` the same way the hook does it. Later calls return the same
        instance and ignore their arguments (use `reset` to start over in tests). Safe to call from
        many threads at once: one instance, one setup.

        `id_generator` replaces the random trace and span ids (see `cryostorm_run.testing`);
        it is ignored when the hook's providers are reused.

        Raises `TelemetrySetupError` when the settings cannot be honoured, for example a
        propagator whose package is not installed; the instance then stays uninitialised.

        Example:
            >>> from cryostorm_run import Telemetry, TelemetrySettings
            >>> settings = TelemetrySettings(service={"name": "checkout"}, exporter_type="none")
            >>> Telemetry.from_settings(settings).initialized
            True
            >>> Telemetry.reset()
        """
        instance = cls._instance
        if instance is not None and instance._state.initialized:
            return instance
        with cls._lock:
            instance = cls._instance or cls(_token=_PRIVATE)
            if not instance._state.initialized:
                instance._state = cls._configure(settings, id_generator)
                if instance._state.owned:
                    atexit.register(instance._shutdown_at_exit)
            cls._instance = instance
            return instance

    @staticmethod
    def _configure(settings: TelemetryModel, id_generator: IdGenerator | None) -> _State:
        hooked = _launcher_providers()
        if hooked is not None:
            _tell_settings_not_applied(settings)
            return _state_for(hooked, owned=False)
        if not settings.enabled:
            return _State(initialized=True)
        # The one way from settings to providers, shared with the hook (see the module docstring).
        from cryostorm_run.launch.envmap import settings_env  # the caller's settings: pydantic is loaded

        providers = build_providers(runtime_from_env(settings_env(settings)), id_generator=id_generator)
        install(providers)
        from cryostorm_run.hook.sdk_warnings import install_own

        install_own()
        _tell_globals_kept(providers)
        return _state_for(providers, owned=True)

    @classmethod
    def get_instance(cls) -> Telemetry:
        """The process-wide instance; never raises.

        Before `from_settings` this is an uninitialised instance whose methods are no-ops, unless
        the process runs under ``cryostorm-run``, in which case it already uses the hook's
        providers. A later `from_settings` configures this same object, so a module may keep
        ``telemetry = Telemetry.get_instance()`` at import time; its `traced` functions and
        spans start recording once telemetry is set up (instruments created before stay no-ops).

        Example:
            >>> from cryostorm_run import Telemetry
            >>> Telemetry.get_instance().initialized
            False
        """
        instance = cls._instance
        if instance is not None:
            return instance
        with cls._lock:
            if cls._instance is None:
                instance = cls(_token=_PRIVATE)
                hooked = _launcher_providers()
                if hooked is not None:
                    instance._state = _state_for(hooked, owned=False)
                cls._instance = instance
            return cls._instance

    def shutdown(self) -> bool:
        """Export everything still buffered, within ``shutdown_timeout_millis``, and stop.

        Providers the facade built are shut down; the hook's are only flushed (the hook shuts
        them down at exit). Afterwards the instance is uninitialised, its methods are no-ops and
        its logger has its level from before.
        Returns False when the timeout passed first. Calling it again does nothing.

        Example:
            >>> from cryostorm_run import Telemetry, TelemetrySettings
            >>> telemetry = Telemetry.from_settings(TelemetrySettings(exporter_type="none"))
            >>> telemetry.shutdown(), telemetry.initialized
            (True, False)
            >>> Telemetry.reset()
        """
        with self._lock:
            state = self._state
            self._state = _State(logger=state.logger)
            atexit.unregister(self._shutdown_at_exit)
        if state.logger_level is not None:
            state.logger.setLevel(state.logger_level)
        providers = state.providers
        if not state.initialized or providers is None:
            return True
        if state.owned:  # what is lost or left said as under cryostorm-run: counts, the last failure, its fix
            from cryostorm_run.hook.exiting import flush_and_report

            return flush_and_report(providers, by_the_program=not self._exiting)
        return flush(providers, providers.runtime.shutdown_timeout_ms / 1000)

    _exiting = False  # shutdown() called from the exit hook, not by the program

    def _shutdown_at_exit(self) -> None:
        state = self._state
        self._exiting = True
        if state.providers is not None and not self.shutdown() and not state.owned:
            timeout = state.providers.runtime.shutdown_timeout_ms / 1000
            print(  # the hook's providers, only flushed here: the hook tells the rest at its own exit
                f"cryostorm: telemetry not fully flushed within {timeout:g} s (shutdown_timeout_millis); "
                "exiting anyway",
                file=sys.stderr,
            )

    @classmethod
    def reset(cls) -> None:
        """Shut the instance down and forget it, for tests: the next call builds a new one.

        The facade's own state is fully reset (including the level it gave its logger).
        OpenTelemetry's global providers are not: they are set-once by design, and keep pointing
        at the shut-down providers, which export nothing more. Tests that configure the facade
        more than once call `cryostorm_run.testing.reset_telemetry()`, which resets both.
        """
        with cls._lock:
            instance, cls._instance = cls._instance, None
        if instance is None:
            return
        instance.shutdown()
        instance._state = _State()


def _tell_settings_not_applied(settings: TelemetryModel) -> None:
    """Under cryostorm-run the launcher's set-up is the process's: settings passed in code that would set
    it up otherwise are not applied. Said once, naming what differs from the settings the environment
    gives (names only: values may be secrets)."""
    from cryostorm_run.settings import TelemetrySettings

    try:
        launcher = TelemetrySettings().model_dump(mode="json")
    except Exception:  # the launcher validated this environment; a program that changed it: say nothing odd
        return
    differ = _differences(settings.model_dump(mode="json"), launcher)
    if differ:
        print("cryostorm: warning: Telemetry.from_settings: under cryostorm-run the launcher's set-up is used and "
              f"the settings passed are not applied; they differ from it in {', '.join(differ)}. Set them where "
              "the launcher reads them (CRYOSTORM_* or OTEL_* variables, cryostorm.toml, [tool.cryostorm])",
              file=sys.stderr)


def _differences(passed: Any, launcher: Any, path: str = "") -> list[str]:
    leaf = path.endswith(("headers", "attributes", "collector"))  # told whole: no header or URL part named
    if isinstance(passed, dict) and isinstance(launcher, dict) and not leaf:
        return [d for key in sorted(passed.keys() | launcher.keys())
                for d in _differences(passed.get(key), launcher.get(key), f"{path}.{key}" if path else key)]
    return [path] if passed != launcher else []


def _tell_globals_kept(providers: Providers) -> None:
    """OpenTelemetry's global providers are set once: when the program (or an earlier `Telemetry`, since shut
    down) set one, this instance's own is not the global, and what libraries make goes elsewhere than what
    it makes (a trace split over two pipelines, or dropped by a provider shut down). Said once, not silent."""
    from opentelemetry import metrics, trace
    from opentelemetry._logs import get_logger_provider

    kept = [name for name, ours, current in (
        ("tracer", providers.tracer_provider, trace.get_tracer_provider),
        ("meter", providers.meter_provider, metrics.get_meter_provider),
        ("logger", providers.logger_provider, get_logger_provider),
    ) if ours is not None and current() is not ours]
    if kept:
        from cryostorm_run.common.shown import scrubbed

        print("cryostorm: " + scrubbed(
            f"warning: Telemetry.from_settings: OpenTelemetry's global {'/'.join(kept)} provider"
            f"{' was' if len(kept) == 1 else 's were'} already set (by the program, or by a Telemetry shut down "
            "before) and stays: what libraries and opentelemetry.trace/metrics/_logs make goes there, what this "
            "Telemetry makes goes to its own. "
            "Set OpenTelemetry up once: cryostorm-run alone, or from_settings before anything else sets it"),
            file=sys.stderr)

