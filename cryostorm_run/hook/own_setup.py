"""What upstream's bare warnings about a program's own OpenTelemetry set-up mean for that program, and how to keep
either set-up: its own provider refused because cryostorm's is global ("Overriding of current TracerProvider is
not allowed"), its own `instrument()` call after cryostorm-run's ("Attempting to instrument while already
instrumented"). Used by `sdk_warnings` on the records it shapes; imported only when such a record comes."""

from __future__ import annotations

# The API's warning when a provider is already global (its text on every supported line, 1.40 to 1.45), and
# what the program's own provider of that kind has attached to it, and the setting that leaves it to the program.
_REFUSED = {
    "Overriding of current TracerProvider is not allowed": ("TracerProvider", "spans", "span processors", "TRACING",
                                                            "traces"),
    "Overriding of current MeterProvider is not allowed": ("MeterProvider", "measurements", "metric readers",
                                                           "METRICS", "metrics"),
    "Overriding of current LoggerProvider is not allowed": ("LoggerProvider", "log records", "log record processors",
                                                            "LOGGING", "logs"),
}


def told(message: str) -> str | None:
    """The line for upstream's warning `message` about the program's own set-up (None: another message)."""
    if message == "Attempting to instrument while already instrumented":
        return _already_instrumented()
    refused = _REFUSED.get(message)
    if refused is None:
        return None
    kind, items, attached, section, signal = refused
    where = _caller()
    set_at = f" (set at {where})" if where else ""
    return (f"the program's own {kind}{set_at} was not installed: cryostorm's stays OpenTelemetry's global one, "
            f"so {items} made through the global API are exported by cryostorm, and the {attached} and exporters "
            f"attached to the program's provider receive none of them; fix: remove the program's own set-up of "
            f"{signal}, or set CRYOSTORM_{section}__ENABLED=false to leave {signal} to the program")


def _already_instrumented() -> str | None:
    """The program's own `XInstrumentor().instrument(...)` after cryostorm's hook had activated it (the
    instrumentor, a singleton, did nothing: the program's options are not applied), or the hook's activation
    after the program's own (the program's is kept). None: not found on the stack."""
    import inspect

    frame, instrumentor, hooked = inspect.currentframe(), None, False
    while frame is not None:
        code = frame.f_code
        if instrumentor is None and code.co_name == "instrument":
            instrumentor = frame.f_locals.get("self")
        elif instrumentor is not None and code.co_name == "load_instrumentor":  # the hook's activation (bootstrap)
            hooked = hooked or code.co_filename.replace("\\", "/").endswith("cryostorm_run/hook/bootstrap.py")
        frame = frame.f_back
    if instrumentor is None:
        return None
    kind = type(instrumentor)
    name = _entry_point_name(kind) or kind.__name__
    if hooked:
        return (f"the program instrumented {name} itself ({kind.__name__}().instrument()) before cryostorm-run "
                "activated it: the program's own instrumentation and its options are kept")
    where = _caller()
    called_at = f" at {where}" if where else ""
    return (f"the program's own {kind.__name__}().instrument(){called_at} did nothing: cryostorm-run had already "
            f"instrumented {name} with its defaults, so the options of the program's call (hooks, excluded URLs, "
            f"...) are not applied; fix: remove the call, or set OTEL_PYTHON_DISABLED_INSTRUMENTATIONS={name} to "
            "leave it to the program")


def _entry_point_name(kind: type) -> str | None:
    """The instrumentor's entry point name (what OTEL_PYTHON_DISABLED_INSTRUMENTATIONS lists)."""
    from cryostorm_run.hook.entrypoints import entry_points

    value = f"{kind.__module__}:{kind.__qualname__}"
    for entry_point in entry_points(("opentelemetry_instrumentor",))["opentelemetry_instrumentor"]:
        if entry_point.value.replace(" ", "") == value:
            return str(entry_point.name)
    return None


def _caller() -> str:
    """`file:line` of the program's call that reached the API (the first frame outside OpenTelemetry,
    cryostorm and logging), or ""."""
    import inspect
    import os

    frame = inspect.currentframe()
    while frame is not None:
        path = frame.f_code.co_filename
        parts = path.replace("\\", "/").split("/")
        if not ({"opentelemetry", "cryostorm_run", "logging"} & set(parts)) and not path.startswith("<frozen"):
            return f"{os.path.basename(path)}:{frame.f_lineno}"
        frame = frame.f_back
    return ""
