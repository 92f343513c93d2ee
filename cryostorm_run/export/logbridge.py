"""Bridge from the standard `logging` module to OpenTelemetry logs, without changing what the app sees.

Attaching a handler to the root logger, as other launchers do, changes the program: `logging.lastResort`
stops printing its warnings, `logging.basicConfig()` becomes a no-op, `dictConfig` or celery silently
remove the handler, and libraries that look for a handler before adding their own (werkzeug's request
lines) print nothing. So the bridge is on no logger: `Logger.callHandlers` hands it each record that
reaches the root logger, after the program's own handlers (or lastResort) had it. The program's
handlers are exactly its own. A record that one of OpenTelemetry's own logging handlers of the program's
had on its way (the SDK's `LoggingHandler` on the root logger, as OpenTelemetry's docs show) was exported
by it: the bridge steps aside for it, and says so once.
"""

from __future__ import annotations

import functools
import logging
import sys
import time
from contextvars import ContextVar
from typing import Any

_EMITTING: ContextVar[bool] = ContextVar("cryostorm_log_emitting", default=False)
# LogRecord attributes that are not user data ("extra=").
_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
_SEVERITY_TEXT = {"WARNING": "WARN", "CRITICAL": "FATAL"}
# Added by `inject_trace_context`; exported as the record's context, not as attributes.
_CONTEXT_FIELDS = frozenset({"otelTraceID", "otelSpanID", "otelTraceSampled", "otelServiceName", "trace_id", "span_id"})


def _severity(levelno: int) -> Any:
    from opentelemetry._logs import SeverityNumber

    if levelno >= logging.CRITICAL:
        return SeverityNumber.FATAL
    if levelno >= logging.ERROR:
        return SeverityNumber.ERROR
    if levelno >= logging.WARNING:
        return SeverityNumber.WARN
    if levelno >= logging.INFO:
        return SeverityNumber.INFO
    return SeverityNumber.DEBUG


class OtelLogHandler(logging.Handler):
    """Sends each record to the OTel logger provider, with the active trace context."""

    def __init__(self, logger_provider: Any, level: int = logging.NOTSET) -> None:
        # The handler itself stays at NOTSET so it sees every record that reaches the root and
        # can stand in for lastResort; `level` only decides what is exported.
        super().__init__(logging.NOTSET)
        self._provider = logger_provider
        self.export_level = level

    def emit(self, record: logging.LogRecord) -> None:
        if _EMITTING.get():  # the SDK logging about itself while we emit: never recurse
            return
        token = _EMITTING.set(True)
        try:
            self._emit(record)
        except Exception as exc:  # never a "--- Logging error ---" traceback of ours: one line, rate-limited
            _say("not exported", f"a log record of logger {record.name!r} ({_where(record)}) was not exported: "
                         f"{type(exc).__name__}: {_text(exc)}")
        finally:
            _EMITTING.reset(token)

    def _emit(self, record: logging.LogRecord) -> None:
        # The logger first: in the hook, the first one builds the logs SDK, and with it imports the API
        # below, while a fork waits (export/deferred.py); the imports here are then done already.
        logger = self._provider.get_logger(record.name)
        from opentelemetry._logs import LogRecord
        from opentelemetry.context import get_current

        body = _body(record)
        if body is None:
            return
        attributes = {
            k: v if isinstance(v, (str, bool, int, float)) else _text(v, repr)
            for k, v in vars(record).items()
            if k not in _RESERVED and k not in _CONTEXT_FIELDS and not k.startswith("_")
        }
        attributes["code.function.name"] = record.funcName
        attributes["code.line.number"] = record.lineno
        attributes["code.file.path"] = record.pathname
        if record.exc_info and record.exc_info[0] is not None:
            import traceback

            attributes["exception.type"] = record.exc_info[0].__name__
            attributes["exception.message"] = _text(record.exc_info[1])
            attributes["exception.stacktrace"] = "".join(traceback.format_exception(*record.exc_info))
        logger.emit(
            LogRecord(
                timestamp=int(record.created * 1e9),
                observed_timestamp=time.time_ns(),
                context=get_current(),
                severity_text=_SEVERITY_TEXT.get(record.levelname, record.levelname),
                severity_number=_severity(record.levelno),
                body=body,
                attributes=attributes,
            )
        )

    def handle(self, record: logging.LogRecord) -> bool:
        # The SDK's own diagnostics (an unreachable collector...) are printed, never exported:
        # exporting them through the failing exporter would feed the failure with its own errors.
        exported = record.levelno >= self.export_level and not record.name.startswith("opentelemetry.")
        return bool(super().handle(record)) if exported else False


def _body(record: logging.LogRecord) -> str | None:
    """The record's message; one that cannot be formatted (`log.info("%d", "x")`, a `__str__` that raises) is
    exported with its message unformatted, or not at all when that is no string, and told (the program's own
    handlers print Python's "--- Logging error ---" for it, as without cryostorm, when they format it)."""
    try:
        return record.getMessage()
    except Exception as exc:
        kept = record.msg if isinstance(record.msg, str) else None
        _say("unformatted", f"a log record of logger {record.name!r} ({_where(record)}) has a message that cannot be "
                     f"formatted ({type(exc).__name__}: {_text(exc)}): "
                     + ("exported with its message unformatted" if kept is not None else "not exported"))
        return kept


def _text(value: object, show: Any = str) -> str:
    try:
        return str(show(value))
    except Exception:
        return f"<{type(value).__name__} object>"


def _where(record: logging.LogRecord) -> str:
    return f"{record.filename}:{record.lineno}"


_WINDOW: list[Any] = []  # the bridge's own lines: each kind at most once per window, the rest counted (sdk_warnings)


def _say(kind: str, line: str) -> None:
    """A `cryostorm:` line on stderr, never an exception into the program's logging call."""
    try:
        from cryostorm_run.hook.say import warn, whose
        from cryostorm_run.hook.sdk_warnings import WINDOW_S, _Window

        if not _WINDOW:
            _WINDOW.append(_Window(WINDOW_S))
        suffix = _WINDOW[0].admit(("log bridge", kind))
        if suffix is not None:
            warn(f"{line}{suffix}{whose()}")
    except Exception:  # nothing better to do: stderr is where it would have gone
        pass


_ATTACHED: list[OtelLogHandler] = []  # bridges attached and not yet detached
_ORIGINAL_CALL_HANDLERS = logging.Logger.callHandlers


# Handler classes seen on the way of a record that are not OpenTelemetry's own logging handlers (the SDK's
# `LoggingHandler`, or opentelemetry-instrumentation-logging's): a program that attached one of those
# exports the records that reach it itself.
_PLAIN: set[type] = set()
_TOLD: list[str] = []  # the program's own OpenTelemetry handler was found (said once per process)


def _exported_by(logger: logging.Logger, handler: logging.Handler) -> bool:
    """Whether `handler` (on `logger`, of a class not known as plain yet) is OpenTelemetry's own."""
    cls = type(handler)
    if not any(str(getattr(c, "__module__", "")).startswith("opentelemetry.") for c in cls.__mro__):
        _PLAIN.add(cls)
        return False
    _step_aside(logger, handler)
    return True


def _bridged(logger: logging.Logger, record: logging.LogRecord) -> bool:
    """Whether the bridge exports a record logged on `logger`: it propagates up to the root logger (where
    a handler on the root would have seen it) and no OpenTelemetry logging handler of the program's on its
    way exported it already (`logging.getLogger().addHandler(LoggingHandler())`, as OpenTelemetry's docs
    show) at its level. A cheap check per record: most loggers on the way have no handler, the others a known
    class."""
    current = logger
    while True:
        for handler in current.handlers:
            if type(handler) not in _PLAIN and record.levelno >= handler.level and _exported_by(current, handler):
                return False
        if current.parent is None:
            return True
        if not current.propagate:
            return False
        current = current.parent


def _step_aside(logger: logging.Logger, handler: logging.Handler) -> None:
    if _TOLD:
        return
    _TOLD.append(logger.name)
    cls = type(handler)
    where = "the root logger" if logger.parent is None else f"logger {logger.name!r}"
    from cryostorm_run.hook.say import warn  # here: only a program with its own handler needs it

    warn(f"the program attached its own OpenTelemetry logging handler ({cls.__module__}.{cls.__qualname__}) to "
         f"{where}: it exports the records it gets, so cryostorm's log bridge steps aside for them (each "
         "record is exported once)")


def _call_handlers(self: logging.Logger, record: logging.LogRecord) -> None:
    _ORIGINAL_CALL_HANDLERS(self, record)  # the program's handlers, or lastResort, exactly as without us
    if _ATTACHED and _bridged(self, record):
        for handler in list(_ATTACHED):
            handler.handle(record)


functools.update_wrapper(_call_handlers, _ORIGINAL_CALL_HANDLERS)


def attach(logger_provider: Any, level: int) -> OtelLogHandler:
    """Export every record that reaches the root logger, leaving the program's handlers as they are."""
    handler = OtelLogHandler(logger_provider, level)
    _ATTACHED.append(handler)
    logging.Logger.callHandlers = _call_handlers  # type: ignore[method-assign]
    return handler


def detach(handler: logging.Handler) -> None:
    if handler in _ATTACHED:
        _ATTACHED.remove(handler)
    if not _ATTACHED:
        logging.Logger.callHandlers = _ORIGINAL_CALL_HANDLERS  # type: ignore[method-assign]


def inject_trace_context(service_name: str) -> None:
    """Give every LogRecord the active trace ids, under opentelemetry-instrumentation-logging's
    attribute names (otelTraceID, otelSpanID, otelTraceSampled, otelServiceName) so existing
    formats keep working, plus `trace_id`/`span_id`.

    The trace API is looked up, not imported: no span can be active before the program (or an
    instrumentation) imported it, and importing it here would cost every process that logs ~15 ms."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_cryostorm", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        current = getattr(sys.modules.get("opentelemetry.trace"), "get_current_span", None)
        try:
            ctx = current().get_span_context() if current is not None else None
        except Exception:  # the trace API half imported in this thread: no span is active yet
            ctx = None
        if ctx is None or not ctx.is_valid:
            record.otelTraceID = record.trace_id = "0"
            record.otelSpanID = record.span_id = "0"
            record.otelTraceSampled = False
        else:
            record.otelTraceID = record.trace_id = format(ctx.trace_id, "032x")
            record.otelSpanID = record.span_id = format(ctx.span_id, "016x")
            record.otelTraceSampled = ctx.trace_flags.sampled
        record.otelServiceName = service_name
        return record

    factory._cryostorm = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
    _let_extra_win()


_INJECTED = frozenset({"otelTraceID", "otelSpanID", "otelTraceSampled", "otelServiceName", "trace_id", "span_id"})


def _let_extra_win() -> None:
    """`logger.info(..., extra={"trace_id": ...})`: the program's own value is kept, as without cryostorm.
    `Logger.makeRecord` refuses an `extra` key the record already has (KeyError: "Attempt to overwrite"), and
    the factory above gave every record these: so they are set after the record is made, over ours. Only a
    call whose `extra` names one of them pays anything (a set disjointness test otherwise)."""
    original = logging.Logger.makeRecord
    if getattr(original, "_cryostorm", False):
        return

    def make_record(self: logging.Logger, name: str, level: int, fn: str, lno: int, msg: object, args: Any,
                    exc_info: Any, func: str | None = None, extra: Any = None, sinfo: str | None = None,
                    ) -> logging.LogRecord:
        if not extra or _INJECTED.isdisjoint(extra):
            return original(self, name, level, fn, lno, msg, args, exc_info, func, extra, sinfo)
        theirs = {key: extra[key] for key in _INJECTED.intersection(extra)}
        record = original(self, name, level, fn, lno, msg, args, exc_info, func,
                          {k: v for k, v in extra.items() if k not in theirs}, sinfo)
        record.__dict__.update(theirs)
        return record

    make_record._cryostorm = True  # type: ignore[attr-defined]
    logging.Logger.makeRecord = make_record  # type: ignore[method-assign]
