"""FastAPI requests through FastAPI's own OpenTelemetry support, with cryostorm's defaults.

FastAPI releases with native telemetry (`FastAPI(telemetry={...})`) trace each request themselves
once global providers exist: a SERVER span with the stable HTTP semantic conventions, the
`http.server.request.duration` histogram and exception log records. They step aside when the
contrib ASGI middleware is in the stack. Native costs about a third less per request than the
contrib middleware (measured with bench/run.py), so it is cryostorm's default; FastAPI's
operation spans (dependencies, endpoint, serialization: three more spans per request) are off
unless `fastapi_telemetry = native_operations`. An app's own `telemetry=` values always win.

The hook imports this module at start-up only to read the mode (stdlib only, nothing of FastAPI);
everything else runs when `fastapi` is imported.
"""

from __future__ import annotations

import functools
import os
import sys

TYPE_CHECKING = False  # not typing's: the hook keeps typing out of every process
if TYPE_CHECKING:
    from collections.abc import Callable, MutableMapping
    from typing import Any

MODE_VAR = "_CRYOSTORM_FASTAPI"
NATIVE_MODES = ("native", "native_operations")


def mode() -> str:
    return (os.environ.get(MODE_VAR) or "native").strip().lower()


def native_supported() -> bool:
    """Has the imported FastAPI its own telemetry? (Call once `fastapi` is imported.)"""
    telemetry = sys.modules.get("fastapi.telemetry")
    applications = sys.modules.get("fastapi.applications")
    return telemetry is not None and hasattr(telemetry, "TelemetryConfig") and hasattr(applications, "FastAPI")


def excluded_urls() -> str:
    """What opentelemetry-instrumentation-fastapi would exclude: its own variable, else the shared one."""
    return os.environ.get("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS") or os.environ.get("OTEL_PYTHON_EXCLUDED_URLS", "")


def exclude_function(urls: str) -> Callable[[MutableMapping[str, Any]], bool] | None:
    """A `telemetry["exclude"]` callable with contrib's semantics: a regex search of the request URL."""
    import re

    patterns = [u.strip() for u in urls.split(",") if u.strip()]
    if not patterns:
        return None
    regex = re.compile("|".join(patterns))

    def exclude(scope: MutableMapping[str, Any]) -> bool:
        host = ""
        for name, value in scope.get("headers") or ():
            if name == b"host":
                host = value.decode("latin-1")
                break
        path = scope.get("root_path", "") + scope.get("path", "")
        return regex.search(f"{scope.get('scheme', 'http')}://{host}{path}") is not None

    return exclude


def configure(operations: bool, urls: str) -> None:
    """Give every `FastAPI(...)` cryostorm's defaults for what the app does not set itself."""
    from fastapi import applications

    cls = applications.FastAPI
    if getattr(cls.__init__, "_cryostorm_native", False):
        return
    original = cls.__init__
    exclude = exclude_function(urls)

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, telemetry: Any = None, **kwargs: Any) -> None:
        config = dict(telemetry) if telemetry is not None else {}
        config.setdefault("operation_spans", operations)
        if exclude is not None and config.get("exclude") is None:
            config["exclude"] = exclude
        original(self, *args, telemetry=config, **kwargs)  # type: ignore[arg-type,unused-ignore]

    __init__._cryostorm_native = True  # type: ignore[attr-defined,unused-ignore]
    cls.__init__ = __init__  # type: ignore[method-assign]
