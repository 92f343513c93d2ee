"""The `BaseDistro` subclass (imports opentelemetry.instrumentation: loaded on first use)."""

from __future__ import annotations

from typing import Any

from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]


class CryostormDistro(BaseDistro):  # type: ignore[misc]
    """Sets no defaults of its own: the launcher wrote the complete environment already."""

    def _configure(self, **kwargs: Any) -> None:
        return None
