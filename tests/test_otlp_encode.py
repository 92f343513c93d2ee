"""cryostorm's direct OTLP span encoder against the exporters' own: the same request, field for field.

Spans are generated (hypothesis) with every kind of value the upstream encoder accepts, events,
links, remote and local parents, trace state, statuses and several resources and scopes; the bytes
cryostorm writes must parse to a message equal to upstream's `encode_spans`, also when some spans
were pre-encoded in the queue and others not.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as upstream
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from cryostorm_run.export import otlp_encode as _otlp_encode

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
scalars = st.one_of(st.none(), st.booleans(), text, st.integers(-(2**63), 2**63 - 1),
                    st.floats(allow_nan=False), st.binary(max_size=8))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                        st.dictionaries(text, inner, max_size=3)), max_leaves=6)
attributes = st.dictionaries(text, values, max_size=6)
ids = st.integers(1, 2**64 - 1)
trace_ids = st.integers(1, 2**128 - 1)
key = st.text(alphabet="abcdefghij", min_size=1, max_size=5)
states = st.lists(st.tuples(key, st.text(alphabet="xyz0123", min_size=1, max_size=4)), max_size=2,
                  unique_by=lambda kv: kv[0])
contexts = st.builds(lambda t, s, remote, state: SpanContext(t, s, remote, TraceFlags(1), TraceState(state)),
                     trace_ids, ids, st.booleans(), states)
times = st.one_of(st.none(), st.integers(1, 2**63))
events = st.builds(Event, text, st.one_of(st.none(), attributes), st.integers(1, 2**63))
links = st.builds(Link, contexts, st.one_of(st.none(), attributes))
statuses = st.one_of(st.just(Status(StatusCode.UNSET)), st.just(Status(StatusCode.OK)),
                     st.builds(lambda d: Status(StatusCode.ERROR, d), st.one_of(st.none(), text)))
RESOURCES = [Resource.create({"service.name": "a"}),
             Resource({"service.name": "b", "n": 3}, schema_url="https://opentelemetry.io/schemas/1.21.0")]
SCOPES = [None, InstrumentationScope("lib"), InstrumentationScope("lib2", "1.0", "https://s", {"k": "v"})]


@st.composite
def spans(draw: Any) -> ReadableSpan:
    return ReadableSpan(
        name=draw(text), context=draw(contexts), parent=draw(st.one_of(st.none(), contexts)),
        resource=draw(st.sampled_from(RESOURCES)), attributes=draw(st.one_of(st.none(), attributes)),
        events=draw(st.lists(events, max_size=2)), links=draw(st.lists(links, max_size=2)),
        kind=draw(st.sampled_from(list(SpanKind))), status=draw(statuses), start_time=draw(times),
        end_time=draw(times), instrumentation_scope=draw(st.sampled_from(SCOPES)),
    )


def ours(batch: list[Any]) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest.FromString(_otlp_encode.encode_spans(batch))


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(spans(), max_size=6), st.lists(st.booleans(), min_size=6, max_size=6))
def test_the_same_request_as_upstream(batch: list[ReadableSpan], queued_encoded: list[bool]) -> None:
    expected = upstream(batch)
    assert ours(batch) == expected
    mixed = [_otlp_encode.preencode(s) if pre else s for s, pre in zip(batch, queued_encoded, strict=False)]
    assert ours(mixed) == expected


def test_an_attribute_upstream_cannot_encode_is_skipped_like_upstream(caplog: pytest.LogCaptureFixture) -> None:
    span = ReadableSpan("s", SpanContext(1, 2, False), attributes={"ok": 1, "huge": 2**64, "odd": object()})
    assert ours([span]) == upstream([span])
    assert list(ours([span]).resource_spans[0].scope_spans[0].spans[0].attributes) == \
        list(upstream([span]).resource_spans[0].scope_spans[0].spans[0].attributes)
    assert "Failed to encode key huge" in caplog.text


def test_none_values_follow_the_installed_upstream(caplog: pytest.LogCaptureFixture) -> None:
    # Upstream 1.40 refuses None for span attributes (the attribute is skipped and logged); later
    # upstream encodes it as an empty AnyValue. cryostorm asks the installed upstream which it is.
    attributes = {"top": None, "in_list": [1, None], "in_map": {"k": None}, "ok": 1}
    span = ReadableSpan("s", SpanContext(1, 2, False), attributes=attributes)
    expected = upstream([span])
    upstream_logged = caplog.text
    caplog.clear()
    assert ours([span]) == expected
    kept = [kv.key for kv in expected.resource_spans[0].scope_spans[0].spans[0].attributes]
    assert kept in (["top", "in_list", "in_map", "ok"], ["ok"])
    dropped = kept == ["ok"]
    assert ("Failed to encode key top" in upstream_logged) is dropped
    assert ("Failed to encode key top" in caplog.text) is dropped  # ours logs as upstream does


def test_repeated_string_attributes_come_from_a_bounded_cache() -> None:
    for i in range(_otlp_encode._KV_CACHE_MAX + 10):
        span = ReadableSpan("s", SpanContext(1, 2, False), attributes={"url.path": f"/items/{i}"})
        assert ours([span]) == upstream([span])
    assert len(_otlp_encode._KV_CACHE) <= _otlp_encode._KV_CACHE_MAX
    _otlp_encode._KV_CACHE.clear()
    statement = ReadableSpan("s", SpanContext(1, 2, False), attributes={"db.statement": "SELECT 1 -- " + "x" * 500})
    assert ours([statement]) == upstream([statement])
    # long values are not kept: the cache stays small in bytes too
    assert not [k for k in _otlp_encode._KV_CACHE if k[1] == "db.statement"]


def test_a_span_it_cannot_encode_is_left_out_and_the_others_are_sent(caplog: pytest.LogCaptureFixture) -> None:
    class Odd(ReadableSpan):
        @property
        def kind(self) -> Any:  # not a SpanKind: the direct encoder fails (upstream's map does too)
            raise RuntimeError("odd kind")

    normal = ReadableSpan("s", SpanContext(1, 2, False))
    queued = [_otlp_encode.preencode(normal), Odd("odd", SpanContext(1, 3, False)), normal]
    with caplog.at_level("ERROR", "opentelemetry.cryostorm.export"):
        data = _otlp_encode.request_bytes(queued)
    assert ExportTraceServiceRequest.FromString(data) == upstream([normal, normal])
    assert "odd kind" in caplog.text


def test_dropped_counts_integer_bounds_and_trace_state_byte_for_byte(caplog: pytest.LogCaptureFixture) -> None:
    # Beyond an equal message: the very bytes upstream serializes (no stray empty field, nothing unknown).
    from opentelemetry.attributes import BoundedAttributes
    from opentelemetry.trace import TraceState

    def bounded() -> BoundedAttributes:
        return BoundedAttributes(maxlen=1, attributes={"a": 1, "b": 2})  # one attribute dropped

    remote = SpanContext(3, 4, True, trace_state=TraceState([("k", "v")]))
    spans = [
        ReadableSpan("events and links", SpanContext(1, 2, False), start_time=1, end_time=2,
                     events=[Event("e", bounded(), 5)],
                     links=[Link(remote, bounded()), Link(SpanContext(5, 6, False))]),
        ReadableSpan("integers", SpanContext(1, 3, False, trace_state=TraceState()), start_time=1, end_time=2,
                     attributes={"min": -(2**63), "max": 2**63 - 1, "below": -(2**63) - 1, "above": 2**63}),
    ]
    for span in spans:
        assert _otlp_encode.encode_spans([span]) == upstream([span]).SerializeToString()
    assert "Failed to encode key below" in caplog.text and "Failed to encode key above" in caplog.text


def test_a_queued_object_without_a_name_is_logged_as_such(caplog: pytest.LogCaptureFixture) -> None:
    normal = ReadableSpan("s", SpanContext(1, 2, False))
    with caplog.at_level("ERROR", "opentelemetry.cryostorm.export"):
        data = _otlp_encode.request_bytes([normal, object()])
    assert ExportTraceServiceRequest.FromString(data) == upstream([normal])
    [record] = [r for r in caplog.records if r.name == "opentelemetry.cryostorm.export"]
    assert record.getMessage() == "Failed to encode span '?': 'object' object has no attribute 'resource'"


def test_varint_edges_byte_for_byte() -> None:
    # lengths and integers around each 7-bit step: one byte up to 127, two from 128, ...
    ints = {f"i{n}": n for n in (0, 1, 127, 128, 16255, 16256, 16383, 16384, 2**63 - 1, -1)}
    for size in (127, 128, 129, 16384):
        span = ReadableSpan("x" * size, SpanContext(1, 2, False), start_time=1, end_time=2, attributes=ints)
        assert _otlp_encode.encode_spans([span]) == upstream([span]).SerializeToString()


def test_an_attribute_it_cannot_encode_is_logged_with_upstreams_words(caplog: pytest.LogCaptureFixture) -> None:
    odd = object()
    span = ReadableSpan("s", SpanContext(1, 2, False), attributes={"above": 2**63, "odd": odd})
    with caplog.at_level("ERROR"):
        upstream([span])
    theirs = sorted(r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level("ERROR"):
        ours([span])
    assert sorted(r.getMessage() for r in caplog.records) == theirs
    assert len(theirs) == 2


def test_short_string_attributes_are_encoded_once_and_then_taken_from_the_cache() -> None:
    _otlp_encode._KV_CACHE.clear()
    limit = _otlp_encode._KV_CACHE_VALUE_MAX
    span = ReadableSpan("s", SpanContext(1, 2, False), attributes={"k": "v", "edge": "e" * limit,
                                                                  "long": "l" * (limit + 1)})
    first = _otlp_encode.encode_spans([span])
    cached = {(key, value) for _, key, value in _otlp_encode._KV_CACHE if key in ("k", "edge", "long")}
    assert cached == {("k", "v"), ("edge", "e" * limit)}
    # what the cache holds is what is sent: a planted entry shows it is read, not encoded again
    [tag] = {tag for tag, key, _ in _otlp_encode._KV_CACHE if key == "k"}
    _otlp_encode._KV_CACHE[(tag, "k", "v")] = _otlp_encode._KV_CACHE[(tag, "k", "v")].replace(b"v", b"w")
    second = _otlp_encode.encode_spans([span])
    _otlp_encode._KV_CACHE.clear()
    assert second != first and second == first.replace(b"\x01v", b"\x01w")


def test_a_text_attribute_it_cannot_encode_is_skipped_and_logged_like_upstream(
        caplog: pytest.LogCaptureFixture) -> None:
    span = ReadableSpan("s", SpanContext(1, 2, False), attributes={"bad": "\ud800", "ok": "1"})  # a lone surrogate
    with caplog.at_level("ERROR"):
        expected = upstream([span])
    theirs = [r.getMessage() for r in caplog.records]
    caplog.clear()
    with caplog.at_level("ERROR"):
        assert ours([span]) == expected
    assert [r.getMessage() for r in caplog.records] == theirs
    assert [kv.key for kv in expected.resource_spans[0].scope_spans[0].spans[0].attributes] == ["ok"]


def test_the_attribute_cache_never_holds_more_than_its_bound() -> None:
    _otlp_encode._KV_CACHE.clear()
    bound = _otlp_encode._KV_CACHE_MAX
    _otlp_encode._KV_CACHE.update({(b"", f"filler{i}", "v"): b"" for i in range(bound - 1)})
    ours([ReadableSpan("s", SpanContext(1, 2, False), resource=Resource({}), attributes={"a": "1", "b": "2"})])
    assert len(_otlp_encode._KV_CACHE) <= bound
    _otlp_encode._KV_CACHE.clear()


def test_dropped_attributes_events_and_links_of_a_span_byte_for_byte() -> None:
    from opentelemetry.attributes import BoundedAttributes
    from opentelemetry.sdk.util import BoundedList

    events, links = BoundedList(1), BoundedList(1)
    events.extend([Event("e1", None, 5), Event("e2", None, 6)])
    links.extend([Link(SpanContext(3, 4, False)), Link(SpanContext(3, 5, False))])
    span = ReadableSpan("s", SpanContext(1, 2, False), parent=SpanContext(1, 9, True), start_time=1, end_time=2,
                        attributes=BoundedAttributes(maxlen=1, attributes={"a": 1, "b": 2}), events=events,
                        links=links, status=Status(StatusCode.OK))
    assert (span.dropped_attributes, span.dropped_events, span.dropped_links) == (1, 1, 1)
    assert _otlp_encode.encode_spans([span]) == upstream([span]).SerializeToString()


def test_a_resource_and_a_scope_are_encoded_once_and_then_taken_from_the_cache() -> None:
    resource, scope = Resource({"r": "1"}), InstrumentationScope("lib", "2.0")
    span = ReadableSpan("s", SpanContext(1, 2, False), resource=resource, instrumentation_scope=scope)
    first = _otlp_encode.encode_spans([span])
    assert first == upstream([span]).SerializeToString()
    # planted encodings show the caches are read (the same objects are not encoded again)
    _otlp_encode._RESOURCES[id(resource)] = (resource, _otlp_encode._RESOURCES[id(resource)][1].replace(b"1", b"7"))
    _otlp_encode._SCOPES[id(scope)] = (scope, _otlp_encode._SCOPES[id(scope)][1].replace(b"2.0", b"3.0"))
    second = _otlp_encode.encode_spans([span])
    assert second == first.replace(b"\x011", b"\x017").replace(b"2.0", b"3.0")


def test_a_span_it_cannot_encode_is_logged_by_name(caplog: pytest.LogCaptureFixture) -> None:
    class Odd(ReadableSpan):
        @property
        def kind(self) -> Any:
            raise RuntimeError("odd kind")

    with caplog.at_level("ERROR", "opentelemetry.cryostorm.export"):
        _otlp_encode.request_bytes([Odd("odd", SpanContext(1, 3, False))])
    assert [r.getMessage() for r in caplog.records if r.name == "opentelemetry.cryostorm.export"] == [
        "Failed to encode span 'odd': odd kind"]


def test_equal_ints_bools_and_floats_never_share_a_cached_encoding() -> None:
    # True == 1 == 1.0 with one hash: only exact small ints (and short strings) are cached, so a bool or
    # float with the same key and an equal value is encoded as itself, before and after the int
    _otlp_encode._KV_CACHE.clear()
    values = [1, True, 1.0, "1", 0, False, 0.0, 200, 65535, 65536, -1]
    batch = [ReadableSpan("s", SpanContext(1, 2, False), attributes={"k": value}) for value in values * 2]
    assert ours(batch) == upstream(batch)
    assert {value for _, key, value in _otlp_encode._KV_CACHE if key == "k"} == {1, "1", 0, 200, 65535}
    assert {type(value) for _, key, value in _otlp_encode._KV_CACHE if key == "k"} == {int, str}


def test_a_real_sdk_span_byte_for_byte() -> None:
    # the SDK's own Span (its attributes a BoundedAttributes behind a read-only view), as the processor gets it
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("t", "1")
    span = tracer.start_span("GET", kind=SpanKind.SERVER, attributes={"http.request.method": "GET",
                                                                     "server.port": 8000, "ok": True})
    span.set_attributes({"http.response.status_code": 200, "http.route": "/hello", "ratio": 0.5})
    span.end()
    for _ in range(2):  # the second time from the cache
        assert ours([span]) == upstream([span])
        assert ours([_otlp_encode.preencode(span)]) == upstream([span])
