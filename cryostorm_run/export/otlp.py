"""Lazy OTLP exporters: built on first export, retried within a budget, partial success reported."""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from cryostorm_run.common.runtime import SignalRuntime
from cryostorm_run.common.words import counted
from cryostorm_run.export.batch import RETRY_LATER
from cryostorm_run.export.errors import LAST_FAULT, TelemetrySetupError, exporting, fault_target
from cryostorm_run.export.forkgate import BUILD_BROKEN, exporter_build
from cryostorm_run.export.outage import note_outage  # here, not at first use: a fork then leaves a child the
from cryostorm_run.export.reach import reachable  # import lock of a thread it does not have (test_grpc_fork)
from cryostorm_run.export.responses import (  # noqa: F401  (REJECTED, REJECTED_ITEMS: read by the exit report)
    REJECTED,
    REJECTED_ITEMS,
    ExportState,
    check_grpc_responses,
    checked_session,
    report_partial_success,
)

# -- lazy OTLP exporters ------------------------------------------------------------------------
# The OTLP exporters import grpc/protobuf (~100 ms). They are built on the first export, in the
# processor's worker thread, so a process that exports nothing never pays for them, and a fork
# child builds its own channel instead of sharing the parent's (gRPC channels do not survive fork).

_LAZY: weakref.WeakSet[_Lazy] = weakref.WeakSet()
BUILD_LOCK = [threading.Lock()]  # held while an exporter (and so grpc or requests) is being built


class _Lazy:
    in_flight = 0  # items handed to export() and not yet answered (for the exit report)
    export_started = 0.0  # monotonic time the current export began (valid while in_flight)
    failed = 0  # items whose export failed for good (the exporter gave up retrying)
    handled = 0  # items handed to export() so far (for exact drop accounting)
    last_ok = True  # the last export succeeded ...
    last_duration_s = 0.0  # ... and took this long: together, "is the collector keeping up?"
    building = False  # the first export is building the real exporter (no collector contact yet)
    _answering = True
    _failing_since: float | None = None
    answered_once = False  # an export has succeeded since this process started (or forked)
    gave_up_at_exit = False  # its collector is in a long outage: exports fail at once (export/outage.py)
    _real_shut = False  # the real exporter's shutdown was called (it warns at a second call)
    FAILURE: Any = False  # what a failed export returns (cryostorm's batch queue counts False as failed)
    direct = False  # cryostorm's own span transport: spans are queued pre-encoded
    refused_in_flight = 0  # of in_flight: items whose last attempt failed, waiting to be retried (never "may arrive")

    def __init__(self, factory: Callable[[], Any], retry_budget_s: float = 0.0) -> None:
        self._factory = factory
        self._real: Any = None
        self._lock = threading.Lock()
        self._refused_lock = threading.Lock()
        # export_config.timeout_millis: how long one batch may keep being retried while the
        # collector is unreachable or overloaded (the SDK exporter itself gives up after ~7 s).
        self.retry_budget_s = retry_budget_s
        self.endpoint: str | None = getattr(factory, "endpoint", None)
        self.fault_target = getattr(factory, "fault_target", (None, None))  # (signal, Target): errors explained
        self._stop = threading.Event()
        _LAZY.add(self)

    @property
    def answering(self) -> bool:
        """The collector answered the last request successfully (slow or not). The SDK's exporters retry
        inside one `export` call: a request of theirs that failed counts from then on, not at its end."""
        state = getattr(getattr(self, "_real", None), "cryostorm_state", None)
        return self._answering and not getattr(state, "failing", False)

    @answering.setter
    def answering(self, value: bool) -> None:
        self._answering = value

    @property
    def failing_since(self) -> float | None:
        """Monotonic time the first failed export since the last success began: an export under way whose
        requests fail (the SDK's exporter retrying them) counts from its start."""
        if self._failing_since is None and self.in_flight and not self.answering:
            return self.export_started
        return self._failing_since

    def _get(self) -> Any:
        with self._lock:
            if self._real is None:
                # One exporter is built at a time in the process: each signal's worker builds its own on
                # its first export, and two threads importing grpc at once can see it half-initialised
                # ("cannot import name 'ChannelCredentials' from partially initialized module 'grpc'").
                with BUILD_LOCK[0], exporter_build():  # never half-loaded at a fork (export/forkgate.py)
                    if BUILD_BROKEN[0]:
                        raise TelemetrySetupError("forked while the parent was loading an exporter: none can load")
                    self._real = self._factory()
            return self._real

    def _reset_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._real = None  # the parent's channel is not ours: drop it without closing it
        self._real_shut = False
        self._stop = threading.Event()
        self.handled = self.failed = self.in_flight = 0
        self.building, self.answering = False, True
        self._failing_since, self.answered_once, self.gave_up_at_exit = None, False, False
        LAST_FAULT.pop(str(self.fault_target[0]), None)  # the parent's

    def note_outcome(self, ok: bool, started: float) -> None:
        """An export (or one request of it) that began at `started` succeeded or failed."""
        if ok:
            if self._failing_since is not None or not self.answered_once:
                note_outage(self.endpoint, None)  # the program's other processes: it is back
            self._failing_since, self.answered_once = None, True
            LAST_FAULT.pop(str(self.fault_target[0]), None)
        elif self._failing_since is None:
            self._failing_since = started
            note_outage(self.endpoint, started)

    def give_up(self) -> None:
        """The collector is in a long outage at exit (export/outage.py): stop retrying, fail what comes.
        The SDK's exporter retries inside an export, sleeping seconds between requests: its shutdown (public;
        it sets an event that sleep waits on and closes the channel or session, without waiting) ends that."""
        self.gave_up_at_exit = True
        self._stop.set()
        real = self._real
        if real is not None and not self.direct and not self._real_shut:
            self._real_shut = True
            _quietly(real.shutdown)

    def shutdown(self, *args: Any, **kwargs: Any) -> None:
        self._stop.set()  # a batch being retried stops waiting
        if self._real is not None and not self._real_shut:
            self._real_shut = True
            self._real.shutdown(*args, **kwargs)

    def force_flush(self, timeout_millis: float = 30_000) -> bool:
        return bool(self._real.force_flush(timeout_millis)) if self._real is not None else True

    def _timed(self, batch: Sequence[Any]) -> Any:
        with exporting(*self.fault_target):
            return self._timed_export(batch)

    def _timed_export(self, batch: Sequence[Any]) -> Any:
        self.in_flight = len(batch)
        self.handled += len(batch)
        if self.gave_up_at_exit:
            self.failed += len(batch)
            self.last_ok, self.in_flight = False, 0
            return self.FAILURE
        if self._real is None:
            # The first call builds it (imports grpc): not the collector's time. Under a busy
            # producer that import alone can take seconds; the collector counts as keeping up.
            self.building = True
            try:
                exporter = self._get()
            finally:
                self.building = False
        else:
            exporter = self._real
        started = self.export_started = time.monotonic()
        result = None
        try:
            result = exporter.export(batch)
            delay = 0.5
            # A transient failure (collector unreachable, 503/429, UNAVAILABLE) is retried within
            # the budget: a short outage loses nothing. Meanwhile the collector is "not keeping up",
            # so the queue stays capped and the program never waits.
            while (getattr(result, "name", "") != "SUCCESS" and _transient(exporter)
                   and time.monotonic() - started + delay < self.retry_budget_s):
                if self._stop.wait(delay):
                    break
                delay = min(delay * 2, 1.0)  # back within about a second of the collector
                # While it refuses connections, do not call the exporter: its own retries would sleep
                # for seconds (1, 2, 4 s) and hold the batch past the collector's return.
                if not reachable(self.endpoint, delay):
                    continue
                result = exporter.export(batch)
            return result
        finally:
            self.last_duration_s = time.monotonic() - started
            self.last_ok = self.answering = getattr(result, "name", "") == "SUCCESS"
            self.note_outcome(self.last_ok, started)
            if not self.last_ok:
                self.failed += len(batch)
            self.in_flight = 0


def _quietly(call: Callable[[], Any]) -> None:
    try:
        call()
    except Exception:  # the exporter's own trouble while giving up: what is lost is reported anyway
        logging.getLogger("opentelemetry.cryostorm.export").debug("shutdown while giving up", exc_info=True)


def _transient(exporter: Any) -> bool:
    state = getattr(exporter, "cryostorm_state", None)
    return bool(getattr(state, "transient", False))


def _reset_lazy_after_fork() -> None:
    BUILD_LOCK[0] = threading.Lock()  # a parent thread may have held it at fork
    for lazy in list(_LAZY):
        lazy._reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_lazy_after_fork)


class LazySpanExporter(_Lazy, SpanExporter):
    """Spans over cryostorm's own transport (`otlp_send`): the bytes encoded when each span ended,
    several requests in flight at once. `_CRYOSTORM_PLAIN_EXPORTERS=1`, or exporter arguments the
    transport does not know: the SDK's exporter, one export at a time (the tested fallback)."""

    answer_timeout_s = 10.0  # an export unanswered for longer: the collector is not keeping up
    FAILURE = SpanExportResult.FAILURE

    def __init__(self, sig: SignalRuntime, retry_budget_s: float, pool_size: int = 1) -> None:
        from cryostorm_run.export import otlp_send

        known = otlp_send.GRPC_KWARGS if sig.protocol == "grpc" else otlp_send.HTTP_KWARGS
        # Queued as `preencode`d bytes only for cryostorm's transport; the SDK's exporter encodes itself.
        self.direct = os.environ.get("_CRYOSTORM_PLAIN_EXPORTERS") != "1" and set(sig.exporter_args) <= known
        self.answer_timeout_s = float(sig.exporter_args.get("timeout") or sig.timeout_s)
        self._signal_runtime = sig
        self._serial = threading.Lock()
        factory = self._sender if self.direct else otlp_factory("traces", sig)
        super().__init__(factory, retry_budget_s)
        self.fault_target = ("traces", fault_target(sig))
        self.endpoint = sig.endpoint
        self.pool_size = pool_size

    def _sender(self) -> Any:
        from cryostorm_run.export import otlp_send

        sig = self._signal_runtime
        if sig.protocol not in ("grpc", "http/protobuf"):
            raise TelemetrySetupError(f"unknown OTLP protocol {sig.protocol!r}; allowed: grpc, http/protobuf")
        kwargs = _grpc_kwargs(sig) if sig.protocol == "grpc" else _http_kwargs(sig)
        return otlp_send.span_sender(sig.protocol, kwargs, self.pool_size)

    def _reset_after_fork(self) -> None:
        super()._reset_after_fork()
        self._serial = threading.Lock()

    def shutdown(self, *args: Any, **kwargs: Any) -> None:
        self._stop.set()
        real = self._real
        if real is not None and not self._real_shut:
            self._real_shut = True
            (real.close if self.direct else real.shutdown)()

    def force_flush(self, timeout_millis: float = 30_000) -> bool:
        return True if self.direct else super().force_flush(timeout_millis)

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        if not self.direct:
            with self._serial:  # the SDK's exporter: one export at a time (its state is shared)
                return self._timed(spans)  # type: ignore[no-any-return]
        if self.gave_up_at_exit:
            return SpanExportResult.FAILURE
        from cryostorm_run.export import otlp_encode, otlp_send

        if self._real is None:
            self.building = True  # importing grpc/requests: not the collector's time
            try:
                sender = self._get()
            finally:
                self.building = False
        else:
            sender = self._real
        data = otlp_encode.request_bytes(spans)
        refused = [0]  # this export's items counted in refused_in_flight

        def answered(ok: bool, seconds: float) -> None:
            self._answered(ok, seconds)
            with self._refused_lock:
                now = 0 if ok else len(spans)
                self.refused_in_flight += now - refused[0]
                refused[0] = now

        try:
            with exporting(*self.fault_target):
                attempt = otlp_send.deliver(sender, data, budget_s=self.retry_budget_s, stop=self._stop,
                                            on_answer=answered, what=counted(len(spans), "spans"), kept=True)
        finally:
            with self._refused_lock:
                self.refused_in_flight -= refused[0]
        if attempt.ok:
            report_partial_success("traces", attempt.response)
            return SpanExportResult.SUCCESS
        if attempt.transient and not self._stop.is_set():
            return RETRY_LATER  # type: ignore[return-value]  # the queue keeps the batch (see batch.py)
        return SpanExportResult.FAILURE

    def _answered(self, ok: bool, seconds: float) -> None:
        self.answering, self.answer_s = ok, seconds  # the request alone (not building the transport)
        self.note_outcome(ok, time.monotonic() - seconds)


def _headers(sig: SignalRuntime) -> dict[str, str] | None:
    # As the exporters parse OTEL_EXPORTER_OTLP_*HEADERS: names lower-cased (gRPC metadata must be).
    return {name.lower(): value for name, value in sig.headers.items()} or None


RECONNECT_OPTIONS = (("grpc.initial_reconnect_backoff_ms", 250), ("grpc.min_reconnect_backoff_ms", 250),
                     ("grpc.max_reconnect_backoff_ms", 1000))


def _grpc_kwargs(sig: SignalRuntime) -> dict[str, Any]:
    import grpc

    kwargs: dict[str, Any] = {
        "endpoint": sig.endpoint,
        "headers": _headers(sig),
        "timeout": sig.timeout_s,
        "compression": grpc.Compression.Gzip if sig.compression == "gzip" else grpc.Compression.NoCompression,
        "insecure": sig.insecure,
        # A collector that comes back is reached within about a second: gRPC's own reconnect backoff
        # otherwise grows to 120 s after a long outage (the exporter's public `channel_options`).
        "channel_options": RECONNECT_OPTIONS,
    }
    if sig.certificate or sig.client_certificate:
        def read(path: str | None) -> bytes | None:
            if path is None:
                return None
            with open(path, "rb") as fh:
                return fh.read()

        kwargs["credentials"] = grpc.ssl_channel_credentials(
            read(sig.certificate), read(sig.client_key), read(sig.client_certificate)
        )
    return {**kwargs, **sig.exporter_args}


def _http_kwargs(sig: SignalRuntime) -> dict[str, Any]:
    from opentelemetry.exporter.otlp.proto.http import Compression

    kwargs: dict[str, Any] = {
        "endpoint": sig.endpoint,
        "headers": _headers(sig),
        "timeout": sig.timeout_s,
        "compression": Compression.Gzip if sig.compression == "gzip" else Compression.NoCompression,
        "certificate_file": sig.certificate,
        "client_certificate_file": sig.client_certificate,
        "client_key_file": sig.client_key,
    }
    return {**kwargs, **sig.exporter_args}


def otlp_factory(signal: str, sig: SignalRuntime) -> Callable[[], Any]:
    """A function building the real OTLP exporter of `signal` for the configured transport."""
    modules = {
        ("traces", "grpc"): ("opentelemetry.exporter.otlp.proto.grpc.trace_exporter", "OTLPSpanExporter"),
        ("metrics", "grpc"): ("opentelemetry.exporter.otlp.proto.grpc.metric_exporter", "OTLPMetricExporter"),
        ("logs", "grpc"): ("opentelemetry.exporter.otlp.proto.grpc._log_exporter", "OTLPLogExporter"),
        ("traces", "http/protobuf"): ("opentelemetry.exporter.otlp.proto.http.trace_exporter", "OTLPSpanExporter"),
        ("metrics", "http/protobuf"): ("opentelemetry.exporter.otlp.proto.http.metric_exporter", "OTLPMetricExporter"),
        ("logs", "http/protobuf"): ("opentelemetry.exporter.otlp.proto.http._log_exporter", "OTLPLogExporter"),
    }
    key = (signal, sig.protocol)
    # The exporter modules import opentelemetry.sdk._logs, which starts a thread pool (Resource.create); an
    # exporter may be built at exit, when Python 3.12 refuses new threads: import it now (as logs do anyway).
    import opentelemetry.sdk._logs  # noqa: F401

    if key not in modules:
        raise TelemetrySetupError(f"unknown OTLP protocol {sig.protocol!r}; allowed: grpc, http/protobuf")

    def make() -> Any:
        import importlib

        module, attr = modules[key]
        state = ExportState()
        if sig.protocol == "grpc":
            exporter = getattr(importlib.import_module(module), attr)(**_grpc_kwargs(sig))
            check_grpc_responses(exporter, signal, state)
        else:
            exporter = getattr(importlib.import_module(module), attr)(session=checked_session(signal, state),
                                                                      **_http_kwargs(sig))
        exporter.cryostorm_state = state
        return exporter

    make.endpoint = sig.endpoint  # type: ignore[attr-defined]  # for the readiness check of the retry loop
    make.fault_target = (signal, fault_target(sig))  # type: ignore[attr-defined]
    return make
