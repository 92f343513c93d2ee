"""cryostorm's processors on the SDK's public interfaces, each feeding one `BatchQueue`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from cryostorm_run.export.batch import BatchQueue

__all__ = ["log_batch_processor", "span_batch_processor"]


def span_batch_processor(batch: BatchQueue, preencode: Callable[[Any], Any] | None) -> Any:
    """A `SpanProcessor` queueing ended, sampled spans (pre-encoded when `preencode` is given)."""
    from opentelemetry.sdk.trace import SpanProcessor

    class CryostormSpanProcessor(SpanProcessor):
        queue = batch

        def on_end(self, span: Any) -> None:
            context = span.context
            if context is None or not context.trace_flags.sampled:
                return
            if preencode is not None and getattr(batch.exporter, "direct", False):
                try:  # noqa: SIM105  (not contextlib.suppress: an object per span on the program's thread)
                    span = preencode(span)
                except Exception:  # queued as is: the exporter's own encoder takes it
                    pass
            batch.put(span)

        def shutdown(self) -> None:
            batch.shutdown()

        def force_flush(self, timeout_millis: int = 30_000) -> bool:
            return batch.force_flush(timeout_millis)

    return CryostormSpanProcessor()


def log_batch_processor(batch: BatchQueue) -> Any:
    """A log-record processor queueing records as the exporters take them.

    The SDK's `SimpleLogRecordProcessor` turns what the logger emits into what an exporter takes
    (the types changed across releases); here its "exporter" is the queue, so the conversion is
    always the installed SDK's own, and the real exporter is called by the queue's worker.
    """
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

    class _Feed:
        def export(self, records: Sequence[Any]) -> Any:
            for record in records:
                batch.put(record)
            return None

        def shutdown(self) -> None:
            batch.shutdown()

        def force_flush(self, timeout_millis: int = 30_000) -> bool:
            return batch.force_flush(timeout_millis)

    class CryostormLogRecordProcessor(SimpleLogRecordProcessor):
        queue = batch

        def shutdown(self) -> None:
            batch.shutdown()

        def force_flush(self, timeout_millis: int = 30_000) -> bool:
            return batch.force_flush(timeout_millis)

    return CryostormLogRecordProcessor(_Feed())  # type: ignore[arg-type]
