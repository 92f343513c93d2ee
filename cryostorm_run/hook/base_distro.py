"""The `BaseDistro` subclass (imports opentelemetry.instrumentation: loaded on first use)."""

from __future__ import annotations

from typing import Any

from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]


class CryostormDistro(BaseDistro):  # type: ignore[misc]
    """Sets no defaults of its own under cryostorm's hook (`cryostorm=True`): the launcher wrote the complete
    environment already. Loaded by another launcher (`opentelemetry-instrument`), the distro it would have
    taken without cryostorm sets its defaults instead (hook/distro.py)."""

    def _configure(self, **kwargs: Any) -> None:
        if kwargs.pop("cryostorm", False):
            return
        from cryostorm_run.hook.entrypoints import step_aside

        step_aside("opentelemetry_distro", lambda found: found().configure(**kwargs))
