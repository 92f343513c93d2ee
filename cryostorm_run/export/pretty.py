"""A console span exporter for people: one indented tree per trace, with durations, status and the
attributes worth reading, instead of a JSON blob per span.

Runs inside the program (exporter name ``pretty``), so it is plain Python: no rich. Spans are
held per trace until the trace's local root ends (or until a flush), then the tree is written to
stderr in one piece. Colour only when stderr is a terminal and ``NO_COLOR`` is unset::

    trace 4bf92f3577b34da6a3ce929d0e0e4736  checkout
    GET /items/{id}  12.3 ms  OK  server  http.request.method=GET http.route=/items/{id}
    ├─ SELECT items  2.1 ms  OK  client  db.system=sqlite
    └─ fetch price  5.0 ms  ERROR: timeout
       ! TimeoutError: upstream took too long
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence
from typing import Any, TextIO

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

__all__ = ["PrettySpanExporter", "render_trace"]

# Shown first, in this order, when present: what a developer looks for in each kind of span.
KEY_ATTRIBUTES = (
    "http.request.method", "http.method", "http.route", "url.path", "http.target", "url.full", "http.url",
    "http.response.status_code", "http.status_code", "rpc.system", "rpc.service", "rpc.method",
    "rpc.grpc.status_code", "db.system", "db.system.name", "db.operation.name", "db.query.text", "db.statement",
    "messaging.system", "messaging.destination.name", "messaging.operation", "server.address", "error.type",
)
MAX_OTHER_ATTRIBUTES = 4
MAX_VALUE = 60
_SENSITIVE = ("authorization", "cookie", "token", "secret", "password", "api-key", "api_key", "apikey")

_RESET, _BOLD, _DIM, _GREEN, _RED = "\x1b[0m", "\x1b[1m", "\x1b[2m", "\x1b[32m", "\x1b[31m"


def _duration(span: ReadableSpan) -> str:
    if span.start_time is None or span.end_time is None:
        return "?"
    ms = (span.end_time - span.start_time) / 1e6
    if ms < 1:
        return f"{ms:.2f} ms"
    if ms < 1000:
        return f"{ms:.1f} ms"
    return f"{ms / 1000:.2f} s"


def _value(key: str, value: Any) -> str:
    if any(word in key.lower() for word in _SENSITIVE):
        return "****"
    text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    text = " ".join(text.split())  # one line per span, whatever the value holds
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"


def _attributes(span: ReadableSpan) -> str:
    attrs = dict(span.attributes or {})
    shown = [k for k in KEY_ATTRIBUTES if k in attrs]
    if not shown:
        shown = sorted(attrs)[:MAX_OTHER_ATTRIBUTES]
    parts = [f"{k}={_value(k, attrs[k])}" for k in shown]
    hidden = len(attrs) - len(shown)
    if hidden > 0:
        parts.append(f"(+{hidden} more)")
    return " ".join(parts)


class _Style:
    def __init__(self, color: bool, unicode: bool) -> None:
        self.color = color
        self.branch, self.last, self.pipe = ("├─ ", "└─ ", "│  ") if unicode else ("|- ", "`- ", "|  ")

    def paint(self, text: str, code: str) -> str:
        return f"{code}{text}{_RESET}" if self.color else text


def _line(span: ReadableSpan, style: _Style) -> str:
    status = span.status.status_code.name if span.status is not None else "UNSET"
    if status == "ERROR":
        label = style.paint("ERROR" + (f": {span.status.description}" if span.status.description else ""), _RED)
    else:
        label = style.paint("OK", _GREEN)
    parts = [style.paint(span.name, _BOLD), style.paint(_duration(span), _DIM), label]
    kind = span.kind.name.lower()
    if kind != "internal":
        parts.append(kind)
    attributes = _attributes(span)
    if attributes:
        parts.append(attributes)
    return "  ".join(parts)


def _events(span: ReadableSpan) -> list[str]:
    lines = []
    for event in span.events:
        attrs = event.attributes or {}
        if event.name == "exception":
            message = _value("", attrs.get("exception.message", ""))
            lines.append(f"! {attrs.get('exception.type', 'exception')}: {message}")
        else:
            lines.append(f"* {event.name}")
    return lines


def render_trace(spans: Sequence[ReadableSpan], *, color: bool = False, unicode: bool = True) -> str:
    """The spans of one trace as an indented tree, children in start order, one line per span."""
    style = _Style(color, unicode)
    by_id = {s.context.span_id: s for s in spans if s.context is not None}
    children: dict[int, list[ReadableSpan]] = {}
    roots = []
    for span in spans:
        parent = span.parent.span_id if span.parent is not None and not span.parent.is_remote else None
        if parent is not None and parent in by_id:
            children.setdefault(parent, []).append(span)
        else:
            roots.append(span)
    first = roots[0] if roots else spans[0]
    header = f"trace {first.context.trace_id:032x}" if first.context is not None else "trace"
    service = first.resource.attributes.get("service.name") if first.resource is not None else None
    if service:
        header += f"  {service}"
    lines = [style.paint(header, _DIM)]

    def walk(span: ReadableSpan, prefix: str, connector: str) -> None:
        lines.append(prefix + connector + _line(span, style))
        below = prefix + {style.branch: style.pipe, style.last: "   "}.get(connector, "")
        kids = sorted(children.get(span.context.span_id if span.context else 0, []), key=lambda s: s.start_time or 0)
        lines.extend(below + (style.pipe if kids else "  ") + event for event in _events(span))
        for index, kid in enumerate(kids):
            walk(kid, below, style.last if index == len(kids) - 1 else style.branch)

    for root in sorted(roots, key=lambda s: s.start_time or 0):
        walk(root, "", "")
    return "\n".join(lines) + "\n"


class PrettySpanExporter(SpanExporter):
    """Writes one tree per trace to `out` (default: `sys.stderr`, looked up at write time).

    `color`: None decides per write (a terminal, and NO_COLOR unset). At most `max_buffered`
    spans wait for their root; beyond that the oldest trace is written as it is.
    """

    def __init__(self, out: TextIO | None = None, *, color: bool | None = None, max_buffered: int = 10_000) -> None:
        self._out = out
        self._color = color
        self._max = max_buffered
        self._pending: dict[int, list[ReadableSpan]] = {}
        self._count = 0
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        ready = []
        with self._lock:
            for span in spans:
                trace_id = span.context.trace_id if span.context is not None else 0
                self._pending.setdefault(trace_id, []).append(span)
                self._count += 1
                if span.parent is None or span.parent.is_remote:  # the local root ended: the trace is done
                    ready.append(self._take(trace_id))
            while self._count > self._max and self._pending:
                ready.append(self._take(next(iter(self._pending))))
        for group in ready:
            self._write(group)
        return SpanExportResult.SUCCESS

    def _take(self, trace_id: int) -> list[ReadableSpan]:
        group = self._pending.pop(trace_id)
        self._count -= len(group)
        return group

    def _write(self, spans: list[ReadableSpan]) -> None:
        out = self._out if self._out is not None else sys.stderr
        color = self._color
        if color is None:
            isatty = getattr(out, "isatty", None)
            color = bool(isatty and isatty()) and "NO_COLOR" not in os.environ
        encoding = (getattr(out, "encoding", None) or "utf-8").lower().replace("-", "")
        try:
            out.write(render_trace(spans, color=color, unicode=encoding.startswith("utf")))
            out.flush()
        except (OSError, ValueError):
            pass  # stderr closed: nowhere to write, and telemetry never breaks the program

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        with self._lock:
            groups = [self._take(trace_id) for trace_id in list(self._pending)]
        for group in groups:
            self._write(group)
        return True

    def shutdown(self) -> None:
        self.force_flush()
