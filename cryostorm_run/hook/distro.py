"""cryostorm's OpenTelemetry distro and configurator, registered under the standard entry points.

The hook loads both by the name ``cryostorm`` so they win over any other installed distro
(opentelemetry-distro's own, a vendor's). They only delegate to functions.

`CryostormConfigurator` follows the `opentelemetry.sdk._configuration._BaseConfigurator`
protocol (`configure(**kwargs)`) without inheriting from it: that module imports
`importlib.metadata` and every exporter base class (~20 ms in every instrumented process), and
entry-point loaders call `configure()` without a type check. The distro must be a real
`BaseDistro` (auto-instrumentation checks), so it lives in `_base_distro` and is imported only
when the first instrumentation is activated.

Installed in an application's environment, both are also found by every other loader of these entry points:
`opentelemetry-instrument` takes the first distro and the first configurator it finds (unless
OTEL_PYTHON_DISTRO / OTEL_PYTHON_CONFIGURATOR name one), which may be cryostorm's. Loaded that way (not by
cryostorm's hook) they step aside for the one that loader would have taken without cryostorm (the SDK's
configurator, opentelemetry-distro's defaults), so installing cryostorm-run changes nothing for a program
run by another launcher. Named explicitly (OTEL_PYTHON_CONFIGURATOR=cryostorm), the configurator builds
cryostorm's providers and flushes and reports them at exit.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # not typing's: the hook keeps typing out of every process
if TYPE_CHECKING:
    from typing import Any


class CryostormConfigurator:
    """Builds and installs providers from the environment the launcher prepared."""

    providers: Any = None  # the Providers installed in this process, for the facade to reuse

    def configure(self, **kwargs: Any) -> None:
        self._configure(**kwargs)

    def _configure(self, **kwargs: Any) -> None:
        """`deferred=True` (the hook's call): nothing is built yet; export/deferred.py builds each signal
        at its first use. `eager=True` (a caller that shuts them down itself: the tests): everything built and
        installed now. Otherwise another launcher loaded this configurator: named explicitly, everything is
        built and installed now, with the exit flush and report; else the next configurator runs instead."""
        from cryostorm_run.common.runtime import runtime_from_env

        named = os.environ.get("OTEL_PYTHON_CONFIGURATOR", "").strip() == "cryostorm"
        if not kwargs.get("deferred") and not kwargs.get("eager") and not named:
            from cryostorm_run.hook.entrypoints import step_aside

            step_aside("opentelemetry_configurator", lambda found: found().configure(**kwargs))
            return
        from cryostorm_run.export.providers import Providers, build_providers, install

        runtime = runtime_from_env(os.environ)
        if kwargs.get("deferred"):
            CryostormConfigurator.providers = Providers(runtime)
            return
        providers = build_providers(runtime, lazy_metrics=True)
        install(providers)
        CryostormConfigurator.providers = providers
        if kwargs.get("eager"):
            return
        import atexit

        from cryostorm_run.hook.exiting import flush_and_report

        atexit.register(flush_and_report, providers)  # no hook here: what was queued is sent or told


def __getattr__(name: str) -> Any:
    # `cryostorm_run.hook.distro:CryostormDistro` resolves here on first use (PEP 562).
    if name == "CryostormDistro":
        from cryostorm_run.hook.base_distro import CryostormDistro

        return CryostormDistro
    raise AttributeError(name)
