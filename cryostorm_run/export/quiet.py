"""The context an export worker runs in: instrumentations create nothing there (its exports are not the program's)."""

from __future__ import annotations

from typing import Any

__all__ = ["suppressed"]


def suppressed() -> Any:
    """The current context with instrumentation suppressed; as it is when cryostorm-run was installed with
    --no-deps and opentelemetry-instrumentation is missing (then no instrumentation runs to suppress)."""
    from opentelemetry import context

    try:
        from opentelemetry.instrumentation.utils import suppress_instrumentation
    except ImportError:
        return context.get_current()
    with suppress_instrumentation():
        return context.get_current()
