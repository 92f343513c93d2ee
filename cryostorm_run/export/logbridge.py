"""Bridge from the standard `logging` module to OpenTelemetry logs, without changing what the app sees.

Attaching a handler to the root logger has two side effects other launchers suffer from:
`logging.lastResort` stops printing the app's warnings (a handler now exists), and
`logging.basicConfig()` becomes a no-op (the root already has a handler). This bridge undoes
both: it prints through `lastResort` exactly when Python would have, and it steps aside while
`basicConfig` runs.
"""

from __future__ import annotations

import functools
import logging
import time
import weakref
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
        except Exception:
            self.handleError(record)
        finally:
            _EMITTING.reset(token)

    def _emit(self, record: logging.LogRecord) -> None:
        from opentelemetry._logs import LogRecord
        from opentelemetry.context import get_current

        attributes = {
            k: v if isinstance(v, (str, bool, int, float)) else repr(v)
            for k, v in vars(record).items()
            if k not in _RESERVED and k not in _CONTEXT_FIELDS and not k.startswith("_")
        }
        attributes["code.function.name"] = record.funcName
        attributes["code.line.number"] = record.lineno
        attributes["code.file.path"] = record.pathname
        if record.exc_info and record.exc_info[0] is not None:
            import traceback

            attributes["exception.type"] = record.exc_info[0].__name__
            attributes["exception.message"] = str(record.exc_info[1])
            attributes["exception.stacktrace"] = "".join(traceback.format_exception(*record.exc_info))
        self._provider.get_logger(record.name).emit(
            LogRecord(
                timestamp=int(record.created * 1e9),
                observed_timestamp=time.time_ns(),
                context=get_current(),
                severity_text=_SEVERITY_TEXT.get(record.levelname, record.levelname),
                severity_number=_severity(record.levelno),
                body=record.getMessage(),
                attributes=attributes,
            )
        )

    def handle(self, record: logging.LogRecord) -> bool:
        # The SDK's own diagnostics (an unreachable collector...) are printed, never exported:
        # exporting them through the failing exporter would feed the failure with its own errors.
        exported = record.levelno >= self.export_level and not record.name.startswith("opentelemetry.")
        handled = super().handle(record) if exported else False
        _last_resort(record, self)
        return bool(handled)


def _last_resort(record: logging.LogRecord, ours: logging.Handler) -> None:
    """Print via `logging.lastResort` if no handler but ours exists on the record's path."""
    last = logging.lastResort
    if last is None or record.levelno < last.level:
        return
    logger: logging.Logger | None = logging.getLogger(record.name) if record.name != "root" else logging.root
    while logger is not None:
        if any(h is not ours for h in logger.handlers):
            return
        if not logger.propagate:
            return
        logger = logger.parent
    last.handle(record)


_ORIGINAL_BASIC_CONFIG = logging.basicConfig
_ATTACHED: weakref.WeakSet[logging.Handler] = weakref.WeakSet()  # bridges attached and not yet detached


def _basic_config_without_us(**kwargs: Any) -> None:
    ours = [h for h in logging.root.handlers if isinstance(h, OtelLogHandler)]
    for handler in ours:
        logging.root.removeHandler(handler)
    try:
        _ORIGINAL_BASIC_CONFIG(**kwargs)
    finally:
        for handler in ours:
            if handler not in logging.root.handlers:
                logging.root.addHandler(handler)


functools.update_wrapper(_basic_config_without_us, _ORIGINAL_BASIC_CONFIG)


def attach(logger_provider: Any, level: int) -> OtelLogHandler:
    """Attach the bridge to the root logger (and keep `basicConfig` working for the app)."""
    handler = OtelLogHandler(logger_provider, level)
    _ATTACHED.add(handler)
    logging.root.addHandler(handler)
    logging.basicConfig = _basic_config_without_us
    from cryostorm_run.hook.instrument import FINDER

    FINDER.install()
    FINDER.when_imported("celery.signals", functools.partial(_reattach_after_celery_logging, handler))
    FINDER.when_imported("logging.config", functools.partial(_reattach_after_logging_config, handler))
    return handler


def _reattach_after_logging_config(handler: OtelLogHandler, config: Any) -> None:
    """`dictConfig` and `fileConfig` replace the root logger's handlers: the program's records would
    silently stop being exported. The bridge goes back on the root logger after each, next to the
    program's own handlers (which print; the bridge prints nothing while they exist)."""

    def wrap(original: Any) -> Any:
        if getattr(original, "_cryostorm", False):
            return original

        @functools.wraps(original)
        def configure(*args: Any, **kwargs: Any) -> Any:
            try:
                return original(*args, **kwargs)
            finally:
                if handler in _ATTACHED and handler not in logging.root.handlers:
                    logging.root.addHandler(handler)

        configure._cryostorm = True  # type: ignore[attr-defined]
        return configure

    config.dictConfig = wrap(config.dictConfig)
    config.fileConfig = wrap(config.fileConfig)


def _reattach_after_celery_logging(handler: OtelLogHandler, signals: Any) -> None:
    """A celery worker empties the root logger's handlers when it sets up its logging
    (`worker_hijack_root_logger`, on by default), which would silently end log export in the worker
    and in every pool child forked from it. Its `after_setup_logger` signal comes right after that:
    the bridge goes back on the root logger then, next to celery's own handler."""

    def reattach(sender: Any = None, **kwargs: Any) -> None:
        if handler in _ATTACHED and handler not in logging.root.handlers:
            logging.root.addHandler(handler)

    signals.after_setup_logger.connect(reattach, weak=False)


def detach(handler: logging.Handler) -> None:
    _ATTACHED.discard(handler)
    logging.root.removeHandler(handler)
    if not any(isinstance(h, OtelLogHandler) for h in logging.root.handlers):
        logging.basicConfig = _ORIGINAL_BASIC_CONFIG


def inject_trace_context(service_name: str) -> None:
    """Give every LogRecord the active trace ids, under opentelemetry-instrumentation-logging's
    attribute names (otelTraceID, otelSpanID, otelTraceSampled, otelServiceName) so existing
    formats keep working, plus `trace_id`/`span_id`."""
    from opentelemetry.trace import INVALID_SPAN_CONTEXT, get_current_span

    previous = logging.getLogRecordFactory()
    if getattr(previous, "_cryostorm", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        ctx = get_current_span().get_span_context()
        if ctx is INVALID_SPAN_CONTEXT or not ctx.is_valid:
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
