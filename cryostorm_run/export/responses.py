"""What the OTLP exporters' requests ended with: whether to retry (transient) and whether the collector is
failing now (the SDK's exporters retry inside one export), and OTLP partial success, which the SDK's
exporters never read. Wrappers of the gRPC stub (private attributes, feature-detected: README) and a
`requests` session of cryostorm's own (public: the exporters take a session)."""

from __future__ import annotations

import logging
import os
from typing import Any

from cryostorm_run.common.words import counted
from cryostorm_run.export.errors import note_transport_error
from cryostorm_run.export.forkgate import grpc_call
from cryostorm_run.export.otlp_send import TRANSIENT_CODES, TRANSIENT_HTTP


class ExportState:
    """What the last request of one OTLP exporter ended with (set by the stub/session wrappers)."""

    transient = False  # failed in a way worth retrying: unreachable, UNAVAILABLE, 429/502/503/504
    failing = False  # the last request failed (the exporter may be retrying it)


# -- partial success ------------------------------------------------------------------------------
# A collector may accept a request yet reject part of it (OTLP partial success). The SDK exporters
# never read the response, so cryostorm does: each rejection is reported on stderr (rate-limited)
# and counted for the exit report.

REJECTED: dict[str, int] = {}
_REJECTED_FIELD = {"traces": "rejected_spans", "metrics": "rejected_data_points", "logs": "rejected_log_records"}
REJECTED_ITEMS = {sig: field.removeprefix("rejected_").replace("_", " ") for sig, field in _REJECTED_FIELD.items()}
_RESPONSES = {
    "traces": ("opentelemetry.proto.collector.trace.v1.trace_service_pb2", "ExportTraceServiceResponse"),
    "metrics": ("opentelemetry.proto.collector.metrics.v1.metrics_service_pb2", "ExportMetricsServiceResponse"),
    "logs": ("opentelemetry.proto.collector.logs.v1.logs_service_pb2", "ExportLogsServiceResponse"),
}


def report_partial_success(signal: str, response: Any) -> None:
    partial = getattr(response, "partial_success", None)
    if partial is None:
        return
    rejected = int(getattr(partial, _REJECTED_FIELD[signal], 0))
    if rejected or partial.error_message:
        REJECTED[signal] = REJECTED.get(signal, 0) + rejected
        logging.getLogger("opentelemetry.cryostorm.export").warning(
            "the collector rejected %s of a batch (partial success): %s", counted(rejected, REJECTED_ITEMS[signal]),
            partial.error_message or "no reason given",
        )



class _CheckedStub:
    def __init__(self, stub: Any, signal: str, state: ExportState) -> None:
        self._stub = stub
        self._signal = signal
        self._state = state

    def Export(self, *args: Any, **kwargs: Any) -> Any:
        try:
            with grpc_call():  # never in flight when the process forks (export/forkgate.py)
                response = self._stub.Export(*args, **kwargs)
        except Exception as error:  # grpc.RpcError: the exporter decides; we note whether to retry later
            code_of = getattr(error, "code", None)
            code = code_of() if callable(code_of) else None
            from cryostorm_run.common.faults import too_large  # here: faults imports re, kept out of every start

            details = getattr(error, "details", None)  # SDK 1.40 logs the code only: keep what it leaves out
            self._state.transient = (getattr(code, "name", "") in TRANSIENT_CODES  # OTLP's retryable codes, but
                                     and not too_large(str(details() if callable(details) else "")))  # never a size
            self._state.failing = True
            name = getattr(code, "name", "")
            note_transport_error(f"gRPC {name}: {details() if callable(details) else ''}",
                                 check_connection=name == "DEADLINE_EXCEEDED")
            raise
        self._state.transient = self._state.failing = False
        report_partial_success(self._signal, response)
        return response


def check_grpc_responses(exporter: Any, signal: str, state: ExportState) -> None:
    # The exporter rebuilds its stub after UNAVAILABLE, from `_stub`: wrap both (private, guarded).
    stub_factory = getattr(exporter, "_stub", None)
    if os.environ.get("_CRYOSTORM_PLAIN_EXPORTERS") == "1":  # the tested fallback: no response checks
        return
    if stub_factory is None or getattr(exporter, "_client", None) is None:
        return
    exporter._stub = lambda channel: _CheckedStub(stub_factory(channel), signal, state)
    exporter._client = _CheckedStub(exporter._client, signal, state)


def checked_session(signal: str, state: ExportState) -> Any:
    import importlib

    import requests

    class Session(requests.Session):
        def request(self, *args: Any, **kwargs: Any) -> Any:
            try:
                response = super().request(*args, **kwargs)
            except requests.RequestException as error:  # refused, reset, timed out: worth retrying later
                state.transient = state.failing = True
                note_transport_error(f"{type(error).__name__}: {error}")  # the exporter may log only "timeout"
                raise
            state.transient = response.status_code in TRANSIENT_HTTP
            state.failing = not 200 <= response.status_code < 300
            return response

    module, name = _RESPONSES[signal]
    response_cls = getattr(importlib.import_module(module), name)

    def on_response(response: Any, *args: Any, **kwargs: Any) -> None:
        if 200 <= response.status_code < 300 and response.content:
            parsed = response_cls()
            try:
                parsed.ParseFromString(response.content)
            except Exception:  # not protobuf (a proxy's page): nothing to report
                return
            report_partial_success(signal, parsed)

    session = Session()
    session.hooks["response"].append(on_response)
    return session


