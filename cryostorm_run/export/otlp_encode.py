"""OTLP span encoding straight to protobuf wire bytes.

The exporters' own encoder builds a protobuf message object per span, attribute and value before
serialising them; in a burst that is the exporter thread's main cost, and it holds the GIL the
program needs. This writes the same `ExportTraceServiceRequest` bytes directly (resources and
scopes encoded once and cached, common string attributes cached), and is checked field for field
against the upstream encoder by tests/test_otlp_encode.py. Anything it does not know how to encode
falls back to upstream's rules (and upstream's error: that attribute is skipped and logged).
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Mapping, Sequence
from typing import Any

_logger = logging.getLogger("opentelemetry.cryostorm.export")

_fixed64 = struct.Struct("<Q").pack
_double = struct.Struct("<d").pack
_fixed32 = struct.Struct("<I").pack
_SMALL = [bytes([n]) for n in range(128)]
_UINT64 = (1 << 64) - 1


def _varint(n: int) -> bytes:
    if n < 128:
        return _SMALL[n]
    out = bytearray()
    while n > 127:
        out.append((n & 127) | 128)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field (tag is the one-byte key)."""
    n = len(payload)
    return tag + (_SMALL[n] if n < 128 else _varint(n)) + payload


def _str(tag: bytes, text: str) -> bytes:
    return _field(tag, text.encode("utf-8"))


# -- attributes ------------------------------------------------------------------------------------

_NONE_IS_EMPTY: list[bool] = []  # the installed upstream encoder's answer, asked once


def _none_value() -> bytes:
    """None as a value (top level, in a list or a map), as the installed upstream encoder has it.

    Newer upstream encodes it as an empty AnyValue; 1.40 (`_encode_value(..., allow_null=False)` for
    spans) raises, so the whole attribute is skipped and logged. Asked of upstream's private
    `_encode_value` on the first None (rare: the SDK drops None attribute values); without it, the
    newer rule. One of the places listed in the README ("Private attributes").
    """
    if not _NONE_IS_EMPTY:
        try:
            from opentelemetry.exporter.otlp.proto.common._internal import _encode_value

            empty = _encode_value(None) is not None
        except ImportError:
            empty = True
        except Exception:  # upstream refuses None
            empty = False
        _NONE_IS_EMPTY.append(empty)
    if _NONE_IS_EMPTY[0]:
        return b""
    raise Exception(f"Invalid type {type(None)} of value None")  # upstream's message


def _any_value(value: Any) -> bytes:  # noqa: PLR0911 (one return per AnyValue kind)
    """AnyValue, with the type checks in upstream's order (bool before int, str before Sequence)."""
    if value is None:
        return _none_value()
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _str(b"\x0a", value)
    if isinstance(value, int):
        if not -(1 << 63) <= value < (1 << 63):
            raise ValueError(f"Value out of range: {value}")
        return b"\x18" + _varint(value & _UINT64)
    if isinstance(value, float):
        return b"\x21" + _double(value)
    if isinstance(value, bytes):
        return _field(b"\x3a", value)
    if isinstance(value, Sequence):
        return _field(b"\x2a", b"".join(_field(b"\x0a", _any_value(v)) for v in value))
    if isinstance(value, Mapping):
        return _field(b"\x32", b"".join(_field(b"\x0a", _key_value(str(k), v)) for k, v in value.items()))
    raise Exception(f"Invalid type {type(value)} of value {value}")  # upstream's message


def _key_value(key: str, value: Any) -> bytes:
    return _str(b"\x0a", key) + _field(b"\x12", _any_value(value))


_KV_CACHE: dict[tuple[bytes, str, Any], bytes] = {}
_KV_CACHE_MAX = 4096  # string and small int attributes repeat (method, route, port, status): bounded, cleared when full
_KV_CACHE_VALUE_MAX = 128  # longer values (SQL, URLs with ids) rarely repeat: not cached, so <= ~2 MB


def _items(attributes: Mapping[str, Any]) -> Any:
    # A span's attributes are a read-only view of the SDK's BoundedAttributes: iterating the view runs the
    # Mapping ABC in Python per item; its public `copy()` (the view's copy is the mapping's) is a plain dict.
    try:
        copied = attributes.copy()  # type: ignore[attr-defined]
    except AttributeError:
        return attributes.items()
    return copied.items() if type(copied) is dict else attributes.items()


def _attributes(tag: bytes, attributes: Mapping[str, Any] | None) -> list[bytes]:
    """Each attribute as a repeated KeyValue field `tag`; one that cannot be encoded is skipped."""
    if not attributes:
        return []
    out = []
    cache = _KV_CACHE
    for key, value in _items(attributes):
        kind = type(value)
        # only exact str and int values are cached: a bool or float equal to a cached int (True == 1 ==
        # 1.0, same hash) never looks one up, and a str never equals an int
        if (kind is str and len(value) <= _KV_CACHE_VALUE_MAX) or (kind is int and -1 < value < 65536):
            encoded = cache.get((tag, key, value))
            if encoded is None:
                try:
                    encoded = _field(tag, _key_value(key, value))
                except Exception as error:
                    _logger.exception("Failed to encode key %s: %s", key, error)
                    continue
                if len(cache) >= _KV_CACHE_MAX:
                    cache.clear()
                cache[(tag, key, value)] = encoded
            out.append(encoded)
            continue
        try:
            out.append(_field(tag, _key_value(key, value)))
        except Exception as error:
            _logger.exception("Failed to encode key %s: %s", key, error)
    return out


# -- resource and scope (cached: a handful per process) ------------------------------------------

_RESOURCES: dict[int, tuple[Any, bytes]] = {}
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_RESOURCES.clear)  # a worker's resource carries its own pid
_SCOPES: dict[int, tuple[Any, bytes]] = {}


def _resource(resource: Any) -> bytes:
    cached = _RESOURCES.get(id(resource))
    if cached is not None and cached[0] is resource:
        return cached[1]
    encoded = b"".join(_attributes(b"\x0a", resource.attributes))
    if len(_RESOURCES) > 64:
        _RESOURCES.clear()
    _RESOURCES[id(resource)] = (resource, encoded)  # holds the resource: the id stays its own
    return encoded


def _scope(scope: Any) -> bytes:
    if scope is None:
        return b""
    cached = _SCOPES.get(id(scope))
    if cached is not None and cached[0] is scope:
        return cached[1]
    parts = []
    if scope.name:
        parts.append(_str(b"\x0a", scope.name))
    if scope.version:
        parts.append(_str(b"\x12", scope.version))
    parts.extend(_attributes(b"\x1a", scope.attributes))
    encoded = b"".join(parts)
    if len(_SCOPES) > 1024:
        _SCOPES.clear()
    _SCOPES[id(scope)] = (scope, encoded)
    return encoded


# -- spans -------------------------------------------------------------------------------------------


def _flags(parent: Any) -> bytes:
    # SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK, plus SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK for a remote parent.
    return _fixed32(0x300 if parent is not None and parent.is_remote else 0x100)


def _trace_state(tag: bytes, trace_state: Any) -> bytes:
    if trace_state is None:
        return b""
    text = ",".join(f"{key}={value}" for key, value in trace_state.items())
    return _str(tag, text) if text else b""


def _event(event: Any) -> bytes:
    parts = []
    if event.timestamp:
        parts.append(b"\x09" + _fixed64(event.timestamp))
    if event.name:
        parts.append(_str(b"\x12", event.name))
    parts.extend(_attributes(b"\x1a", event.attributes))
    if event.dropped_attributes:
        parts.append(b"\x20" + _varint(event.dropped_attributes))
    return _field(b"\x5a", b"".join(parts))


def _link(link: Any) -> bytes:
    context = link.context
    parts = [b"\x0a\x10", context.trace_id.to_bytes(16, "big"), b"\x12\x08", context.span_id.to_bytes(8, "big")]
    parts.extend(_attributes(b"\x22", link.attributes))
    if link.dropped_attributes:
        parts.append(b"\x28" + _varint(link.dropped_attributes))
    parts.append(b"\x35" + _flags(context))
    return _field(b"\x6a", b"".join(parts))


def _span(span: Any) -> bytes:
    context = span.context
    parent = span.parent
    parts = [b"\x0a\x10", context.trace_id.to_bytes(16, "big"), b"\x12\x08", context.span_id.to_bytes(8, "big")]
    if context.trace_state:
        parts.append(_trace_state(b"\x1a", context.trace_state))
    if parent is not None:
        parts.append(b"\x22\x08" + parent.span_id.to_bytes(8, "big"))
    if span.name:
        parts.append(_str(b"\x2a", span.name))
    parts.append(b"\x30" + _SMALL[span.kind.value + 1])
    if span.start_time:
        parts.append(b"\x39" + _fixed64(span.start_time))
    if span.end_time:
        parts.append(b"\x41" + _fixed64(span.end_time))
    parts.extend(_attributes(b"\x4a", span.attributes))
    if span.dropped_attributes:
        parts.append(b"\x50" + _varint(span.dropped_attributes))
    events = span.events
    if events:
        parts.extend(_event(event) for event in events)
    if span.dropped_events:
        parts.append(b"\x60" + _varint(span.dropped_events))
    links = span.links
    if links:
        parts.extend(_link(link) for link in links)
    if span.dropped_links:
        parts.append(b"\x70" + _varint(span.dropped_links))
    status = span.status
    if status is not None:
        body = (_str(b"\x12", status.description) if status.description else b"") + (
            b"\x18" + _SMALL[status.status_code.value] if status.status_code.value else b"")
        parts.append(_field(b"\x7a", body))
    parts.append(b"\x85\x01" + _flags(parent))
    return _field(b"\x12", b"".join(parts))


def preencode(span: Any) -> Any:
    """A finished span as `(resource, scope, bytes)`: what the batch queue holds for an OTLP exporter.

    One small tuple and a bytes object instead of ~11 objects the garbage collector walks on every
    full collection while the span waits in the queue (a 16k-span queue: ~180k objects).
    """
    return (span.resource, span.instrumentation_scope or None, _span(span))


def encode_spans(spans: Sequence[Any]) -> bytes:
    """The serialised `ExportTraceServiceRequest` for `spans` (ReadableSpans or `preencode`d),
    grouped by resource, then scope."""
    groups: dict[Any, dict[Any, list[bytes]]] = {}
    last_resource = last_scope = object()
    bucket: list[bytes] = []
    for span in spans:
        if type(span) is tuple:
            resource, scope, data = span
        else:
            resource, scope, data = span.resource, span.instrumentation_scope or None, None
        if resource is not last_resource or scope is not last_scope:
            bucket = groups.setdefault(resource, {}).setdefault(scope, [])
            last_resource, last_scope = resource, scope
        bucket.append(_span(span) if data is None else data)
    out = []
    for resource, scopes in groups.items():
        parts = [_field(b"\x0a", _resource(resource))]
        for scope, encoded in scopes.items():
            scope_parts = [_field(b"\x0a", _scope(scope)), *encoded]
            if scope is not None and scope.schema_url:
                scope_parts.append(_str(b"\x1a", scope.schema_url))
            parts.append(_field(b"\x12", b"".join(scope_parts)))
        if resource.schema_url:
            parts.append(_str(b"\x1a", resource.schema_url))
        out.append(_field(b"\x0a", b"".join(parts)))
    return b"".join(out)


# -- what cryostorm's span transport sends (export/otlp_send.py) -------------------------------------


def request_bytes(spans: Sequence[Any]) -> bytes:
    """The request for `spans`; a span that cannot be encoded (only one queued as a ReadableSpan,
    because encoding it when it ended failed already) is left out and logged, the others are sent."""
    try:
        return encode_spans(spans)
    except Exception:
        kept = []
        for span in spans:
            if type(span) is tuple:
                kept.append(span)
                continue
            try:
                kept.append(preencode(span))
            except Exception as error:
                _logger.exception("Failed to encode span %r: %s", getattr(span, "name", "?"), error)
        return encode_spans(kept)
