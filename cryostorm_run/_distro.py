"""cryostorm's OpenTelemetry distro and configurator, registered under the standard entry points.

The hook loads both by the name ``cryostorm`` so they win over any other installed distro
(opentelemetry-distro's own, a vendor's). They only delegate to functions.
"""

from __future__ import annotations

import os
from typing import Any

from opentelemetry.instrumentation.distro import BaseDistro
from opentelemetry.sdk._configuration import _BaseConfigurator


class CryostormDistro(BaseDistro):  # type: ignore[misc]
    """Sets no defaults of its own: the launcher wrote the complete environment already."""

    def _configure(self, **kwargs: Any) -> None:
        return None


class CryostormConfigurator(_BaseConfigurator):  # type: ignore[misc]
    """Builds and installs providers from the environment the launcher prepared."""

    providers: Any = None

    def _configure(self, **kwargs: Any) -> None:
        from cryostorm_run._runtime import runtime_from_env
        from cryostorm_run._sdk import build_providers, install

        providers = build_providers(runtime_from_env(os.environ))
        install(providers)
        CryostormConfigurator.providers = providers
