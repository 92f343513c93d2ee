"""The deployments tests/test_differential.py compares: standard OTEL_* variables, generated.

Valid for cryostorm except about one in eight, which carries one input cryostorm refuses on purpose
(a probe), so that refusals are exercised and checked against the documented ones.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping

from hypothesis import strategies as st

SIGNALS = ("TRACES", "METRICS", "LOGS")


def _pairs(keys: list[str], values: list[str]) -> st.SearchStrategy[str | None]:
    pair = st.tuples(st.sampled_from(keys), st.sampled_from(values))
    encoded = st.lists(pair, min_size=1, max_size=3, unique_by=lambda kv: kv[0]).map(
        lambda kvs: ",".join(f"{urllib.parse.quote(k, safe='')}={urllib.parse.quote(v, safe='')}" for k, v in kvs))
    return st.none() | encoded


def _optional(*values: str) -> st.SearchStrategy[str | None]:
    # "": set but empty, as compose files write `X=${X:-}`; the specification reads it as unset
    return st.none() | st.sampled_from(values) | st.just("")


def _signal_vars(draw: st.DrawFn, env: dict[str, str | None], certs: Mapping[str, str], s: str,
                 headers: list[str], header_values: list[str]) -> None:
    lower = s.lower()
    env[f"OTEL_{s}_EXPORTER"] = draw(st.sampled_from(  # unset: one in eight
        [None, "otlp", "otlp", "otlp_proto_grpc", "otlp_proto_http", "console", "none", "otlp"]))
    var = f"OTEL_EXPORTER_OTLP_{s}_"
    env[var + "PROTOCOL"] = draw(_optional("grpc", "http/protobuf"))
    # As the exporters take it for either protocol (gRPC uses host:port only).
    env[var + "ENDPOINT"] = draw(_optional(f"http://{lower}-gw:4317/v1/{lower}",
                                           f"https://{lower}.example:4318/v1/{lower}",
                                           f"http://{lower}-gw:4318/v1/{lower}"))
    env[var + "HEADERS"] = draw(_pairs(headers, header_values))
    env[var + "TIMEOUT"] = draw(_optional("0.5", "5", "12"))
    env[var + "COMPRESSION"] = draw(_optional("gzip", "gzip", "none"))
    env[var + "INSECURE"] = draw(_optional("true", "false"))
    if draw(st.integers(0, 3)) == 3:  # one in four; shrinks to none
        env[var + "CERTIFICATE"] = certs[f"ca-{lower}"]
        if draw(st.booleans()):
            env[var + "CLIENT_CERTIFICATE"], env[var + "CLIENT_KEY"] = certs[f"cert-{lower}"], certs[f"key-{lower}"]




@st.composite
def deployments(draw: st.DrawFn, certs: Mapping[str, str]) -> dict[str, str]:
    """Valid for cryostorm except, in about one deployment in eight, one input it refuses (a probe)."""
    probe = draw(st.sampled_from([None] * 40 + ["endpoint path", "batch", "environment", "deflate", "exporters",
                                                "invalid"]))
    env: dict[str, str | None] = {}
    bases = ["http://collector:4317", "https://collector.example:4318", "http://10.1.2.3:4318/",
             "https://vendor.example", "http://collector:4318/otlp"]
    env["OTEL_EXPORTER_OTLP_PROTOCOL"] = draw(_optional("grpc", "http/protobuf"))
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = draw(_optional(*bases))
    headers = ["authorization", "x-tenant", "api-key", "X-Mixed-Case"]
    # ASCII only: a value gRPC metadata cannot carry is refused before the program starts (test_settings.py)
    header_values = ["Bearer abc", "t1", "a=b,c", "50%/x", "x y"]
    env["OTEL_EXPORTER_OTLP_HEADERS"] = draw(_pairs(headers, header_values))
    env["OTEL_EXPORTER_OTLP_TIMEOUT"] = draw(_optional("1", "2.5", "10", "30"))
    env["OTEL_EXPORTER_OTLP_COMPRESSION"] = draw(_optional("gzip", "gzip", "none"))
    env["OTEL_EXPORTER_OTLP_INSECURE"] = draw(_optional("true", "false"))
    if draw(st.booleans()):
        env["OTEL_EXPORTER_OTLP_CERTIFICATE"] = certs["ca"]
        if draw(st.booleans()):
            env["OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"] = certs["cert"]
            env["OTEL_EXPORTER_OTLP_CLIENT_KEY"] = certs["key"]
    for s in SIGNALS:
        _signal_vars(draw, env, certs, s, headers, header_values)
    env["OTEL_TRACES_SAMPLER"] = draw(_optional("always_on", "always_off", "traceidratio", "parentbased_always_on",
                                                "parentbased_always_off", "parentbased_traceidratio"))
    env["OTEL_TRACES_SAMPLER_ARG"] = draw(_optional("0", "0.25", "1"))
    env["OTEL_PROPAGATORS"] = draw(st.none() | st.just("none") | st.lists(
        st.sampled_from(["tracecontext", "baggage", "b3", "b3multi"]), min_size=1, max_size=3, unique=True,
    ).map(",".join))
    env["OTEL_SERVICE_NAME"] = draw(_optional("svc-a", "checkout"))
    env["OTEL_RESOURCE_ATTRIBUTES"] = draw(_pairs(
        ["service.name", "service.version", "team", "k,x", "k%2Cy"], ["from-attrs", "2.0", "core", "v=y"]))
    environment = draw(_optional("production", "staging", "development"))
    if environment or probe == "environment":
        env["OTEL_RESOURCE_ATTRIBUTES"] = ",".join(filter(None, [
            env["OTEL_RESOURCE_ATTRIBUTES"], f"deployment.environment={environment or 'qa'}"]))
    for name in ("OTEL_ATTRIBUTE_COUNT_LIMIT", "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "OTEL_SPAN_EVENT_COUNT_LIMIT",
                 "OTEL_SPAN_LINK_COUNT_LIMIT", "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
                 "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT"):
        env[name] = draw(_optional("1", "64", "1000"))
    for prefix in ("OTEL_BSP", "OTEL_BLRP"):
        env[f"{prefix}_SCHEDULE_DELAY"] = draw(_optional("100", "5000"))
        env[f"{prefix}_EXPORT_TIMEOUT"] = draw(_optional("1000", "30000"))
        env[f"{prefix}_MAX_QUEUE_SIZE"] = draw(_optional("2048", "4096"))
        env[f"{prefix}_MAX_EXPORT_BATCH_SIZE"] = draw(_optional("64", "256", "512"))
    env["OTEL_METRIC_EXPORT_INTERVAL"] = draw(_optional("1000", "15000"))
    env["OTEL_METRIC_EXPORT_TIMEOUT"] = draw(_optional("500", "5000"))
    env["OTEL_METRICS_EXEMPLAR_FILTER"] = draw(_optional("always_on", "always_off", "trace_based"))
    env["OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"] = draw(_optional("cumulative", "delta", "lowmemory"))
    _apply_probe(env, probe, draw(st.sampled_from(SIGNALS)))
    return {k: v for k, v in env.items() if v is not None}


INVALID = [("OTEL_TRACES_SAMPLER_ARG", "1.5"), ("OTEL_EXPORTER_OTLP_{signal}_PROTOCOL", "http/json"),
           ("OTEL_EXPORTER_OTLP_{signal}_HEADERS", "novalue"), ("OTEL_EXPORTER_OTLP_TIMEOUT", "ten"),
           ("OTEL_BSP_SCHEDULE_DELAY", "5s")]


def _apply_probe(env: dict[str, str | None], probe: str | None, signal: str) -> None:
    if probe == "endpoint path":  # the HTTP exporter would post to this URL as it is
        env["OTEL_EXPORTER_OTLP_PROTOCOL"], env[f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL"] = "http/protobuf", None
        env[f"OTEL_{signal}_EXPORTER"] = "otlp"
        env[f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT"] = "http://gateway:4318/otlp"
    elif probe == "batch":
        env["OTEL_BSP_MAX_QUEUE_SIZE"], env["OTEL_BSP_MAX_EXPORT_BATCH_SIZE"] = "256", "512"
    elif probe == "deflate":
        env[f"OTEL_EXPORTER_OTLP_{signal}_COMPRESSION"] = "deflate"
    elif probe == "exporters":  # several for one signal, in either order, the protocol in the name or not
        env[f"OTEL_{signal}_EXPORTER"] = ("otlp,console", "console,otlp_proto_http")[len(signal) % 2]
    elif probe == "invalid":  # one of: out of range, a protocol the Python exporters lack, malformed
        name, value = INVALID[sum(map(ord, signal)) % len(INVALID)]
        env[name.format(signal=signal)] = value
