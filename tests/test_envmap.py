"""Settings → OTEL_* environment: every field lands in its variable with the SDK's units,
and the child's parser reads back exactly what the launcher meant."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import tls_files
from hypothesis import given, settings
from hypothesis import strategies as st

from cryostorm_run import TelemetrySettings, load_settings
from cryostorm_run.common.runtime import runtime_from_env
from cryostorm_run.launch.envmap import (
    effective_headers,
    encode_pairs,
    env_rows,
    program_defaults,
    settings_env,
    signal_endpoint,
)


def env_for(environ: dict[str, str]) -> dict[str, str]:
    return settings_env(load_settings(environ).settings)


def test_defaults() -> None:
    env = settings_env(TelemetrySettings())
    assert env["OTEL_SERVICE_NAME"] == "unknown-service"
    assert env["OTEL_TRACES_EXPORTER"] == env["OTEL_METRICS_EXPORTER"] == env["OTEL_LOGS_EXPORTER"] == "console"
    assert env["OTEL_TRACES_SAMPLER"] == "parentbased_always_on"
    assert "OTEL_TRACES_SAMPLER_ARG" not in env
    assert env["OTEL_PROPAGATORS"] == "tracecontext,baggage"
    assert "OTEL_PYTHON_EXCLUDED_URLS" not in env  # read by client instrumentations too: not cryostorm's to set
    assert env["OTEL_PYTHON_FLASK_EXCLUDED_URLS"] == env["OTEL_PYTHON_FASTAPI_EXCLUDED_URLS"] == (
        r"^\w+://[^/]*/health(/|\x3f|$),^\w+://[^/]*/metrics(/|\x3f|$),^\w+://[^/]*/favicon\.ico(/|\x3f|$)")
    assert not any(k.startswith("OTEL_EXPORTER_OTLP") for k in env)


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
@pytest.mark.parametrize("given", [
    {}, {"OTEL_EXPORTER_OTLP_COMPRESSION": "none"},
    {"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip", "CRYOSTORM_TRACING__COMPRESSION": "none"},
], ids=["default", "none-given", "none-for-traces"])
def test_the_environment_written_builds_upstreams_own_exporters(monkeypatch: pytest.MonkeyPatch, protocol: str,
                                                                given: dict[str, str]) -> None:
    # The program's environment held OTEL_EXPORTER_OTLP_*_COMPRESSION=none, which the SDK's OTLP/gRPC exporters
    # refuse (InvalidCompressionValueException): a program building its own exporter from the environment, or
    # opentelemetry-instrument run by cryostorm-run, failed. "none" is now left unset, which means the same.
    env = env_for({"CRYOSTORM_EXPORTER_TYPE": "otlp", "CRYOSTORM_COLLECTOR": "http://c:4317",
                   "CRYOSTORM_OTLP__PROTOCOL": protocol, **given})
    assert not any(k.endswith("_COMPRESSION") and v == "none" for k, v in env.items())
    if "CRYOSTORM_TRACING__COMPRESSION" in given:
        assert env["OTEL_EXPORTER_OTLP_METRICS_COMPRESSION"] == "gzip" and "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION" \
            not in env
    for name in [k for k in __import__("os").environ if k.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter  # type: ignore[assignment]
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # type: ignore[assignment]
    OTLPSpanExporter().shutdown()  # upstream reads the environment itself: no exception
    OTLPMetricExporter().shutdown()


def test_resource_attributes_are_encoded() -> None:
    env = env_for({"CRYOSTORM_SERVICE__VERSION": "1.2", "CRYOSTORM_SERVICE__ENVIRONMENT": "production",
                   "CRYOSTORM_SERVICE__ADDITIONAL_ATTRIBUTES": '{"team": "a,b=c", "shard": 3}'})
    attrs = runtime_from_env(env).resource_attributes
    assert attrs["service.version"] == "1.2"
    assert attrs["deployment.environment.name"] == attrs["deployment.environment"] == "production"
    assert attrs["team"] == "a,b=c"
    assert attrs["shard"] == 3  # a number set as one stays one (OTEL_RESOURCE_ATTRIBUTES holds its text)
    assert "shard=3" in env["OTEL_RESOURCE_ATTRIBUTES"] and env["_CRYOSTORM_RESOURCE_TYPED"] == '{"shard": 3}'
    changed = {**env, "OTEL_RESOURCE_ATTRIBUTES": env["OTEL_RESOURCE_ATTRIBUTES"].replace("shard=3", "shard=4")}
    assert runtime_from_env(changed).resource_attributes["shard"] == "4"  # the program's own change wins, as text


def test_grpc_endpoint_has_scheme_and_no_path() -> None:
    env = env_for({"CRYOSTORM_EXPORTER_TYPE": "otlp", "CRYOSTORM_COLLECTOR": "http://collector:4317"})
    for signal in ("TRACES", "METRICS", "LOGS"):
        assert env[f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT"] == "http://collector:4317"
        assert env[f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL"] == "grpc"


def test_http_endpoints_carry_the_signal_path_after_the_base_path() -> None:
    env = env_for({"CRYOSTORM_EXPORTER_TYPE": "otlp", "CRYOSTORM_OTLP__PROTOCOL": "http/protobuf",
                   "CRYOSTORM_COLLECTOR": "https://vendor.example/otlp"})
    assert env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] == "https://vendor.example:4318/otlp/v1/traces"
    assert env["OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"] == "https://vendor.example:4318/otlp/v1/metrics"
    assert env["OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"] == "https://vendor.example:4318/otlp/v1/logs"


def test_per_signal_overrides() -> None:
    env = env_for({
        "CRYOSTORM_EXPORTER_TYPE": "otlp",
        "CRYOSTORM_COLLECTOR": "http://agent:4317",
        "CRYOSTORM_METRICS__COLLECTOR": "http://metrics-gw:4318",
        "CRYOSTORM_METRICS__PROTOCOL": "http/protobuf",
        "CRYOSTORM_LOGGING__EXPORTER_TYPE": "console",
        "CRYOSTORM_TRACING__ENABLED": "false",
    })
    assert env["OTEL_TRACES_EXPORTER"] == "none"
    assert "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" not in env
    assert env["OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"] == "http://metrics-gw:4318/v1/metrics"
    assert env["OTEL_LOGS_EXPORTER"] == "console"


def test_timeouts_are_seconds_and_batch_values_milliseconds() -> None:
    env = env_for({"CRYOSTORM_EXPORTER_TYPE": "otlp", "CRYOSTORM_OTLP__TIMEOUT_MILLIS": "2500",
                   "CRYOSTORM_TRACING__EXPORT_CONFIG__SCHEDULE_DELAY_MILLIS": "200",
                   "CRYOSTORM_TRACING__EXPORT_CONFIG__TIMEOUT_MILLIS": "7000",
                   "CRYOSTORM_TRACING__EXPORT_CONFIG__BATCH_SIZE": "256",
                   "CRYOSTORM_TRACING__EXPORT_CONFIG__MAX_QUEUE_SIZE": "1024",
                   "CRYOSTORM_METRICS__EXPORT_INTERVAL_MILLIS": "1500",
                   "CRYOSTORM_METRICS__EXPORT_TIMEOUT_MILLIS": "900"})
    assert env["OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"] == "2.5"
    assert (env["OTEL_BSP_SCHEDULE_DELAY"], env["OTEL_BSP_EXPORT_TIMEOUT"]) == ("200", "7000")
    assert (env["OTEL_BSP_MAX_EXPORT_BATCH_SIZE"], env["OTEL_BSP_MAX_QUEUE_SIZE"]) == ("256", "1024")
    assert (env["OTEL_METRIC_EXPORT_INTERVAL"], env["OTEL_METRIC_EXPORT_TIMEOUT"]) == ("1500", "900")
    rt = runtime_from_env(env)
    assert rt.traces.timeout_s == 2.5
    assert (rt.traces.batch.schedule_delay_ms, rt.traces.batch.max_queue_size) == (200, 1024)


def test_logging_overrides_win_over_its_export_config() -> None:
    env = env_for({"CRYOSTORM_LOGGING__EXPORT_CONFIG__BATCH_SIZE": "100",
                   "CRYOSTORM_LOGGING__MAX_EXPORT_BATCH_SIZE": "50",
                   "CRYOSTORM_LOGGING__SCHEDULE_DELAY_MILLIS": "300",
                   "CRYOSTORM_LOGGING__MAX_QUEUE_SIZE": "4000",
                   "CRYOSTORM_LOGGING__EXPORT_TIMEOUT_MILLIS": "800"})
    assert env["OTEL_BLRP_MAX_EXPORT_BATCH_SIZE"] == "50"
    assert env["OTEL_BLRP_SCHEDULE_DELAY"] == "300"
    assert env["OTEL_BLRP_MAX_QUEUE_SIZE"] == "4000"
    assert env["OTEL_BLRP_EXPORT_TIMEOUT"] == "800"


def test_sampler_argument_only_for_ratio_samplers() -> None:
    env = env_for({"CRYOSTORM_TRACING__SAMPLING_STRATEGY": "parentbased_traceidratio",
                   "CRYOSTORM_TRACING__SAMPLE_RATE": "0.125"})
    assert (env["OTEL_TRACES_SAMPLER"], env["OTEL_TRACES_SAMPLER_ARG"]) == ("parentbased_traceidratio", "0.125")
    assert runtime_from_env(env).sampler_arg == 0.125


def test_headers_tls_and_compression(tmp_path: Path) -> None:
    ca, cert, key = tls_files(tmp_path, ["ca", "client-cert", "client-key"]).values()
    rows = env_rows(load_settings({
        "CRYOSTORM_EXPORTER_TYPE": "otlp",
        "CRYOSTORM_OTLP__HEADERS": "authorization=Bearer abc,x-tenant=t 1",
        "CRYOSTORM_OTLP__COMPRESSION": "gzip",
        "CRYOSTORM_OTLP__INSECURE": "true",
        "CRYOSTORM_OTLP__CERTIFICATE_FILE": str(ca),
        "CRYOSTORM_OTLP__CLIENT_CERTIFICATE_FILE": str(cert),
        "CRYOSTORM_OTLP__CLIENT_KEY_FILE": str(key),
    }).settings)
    by_name = {r.name: r for r in rows}
    header = by_name["OTEL_EXPORTER_OTLP_TRACES_HEADERS"]
    assert header.secret and header.value == "authorization=Bearer%20abc,x-tenant=t%201"
    secret_rows = [r.name for r in rows if r.secret]
    assert secret_rows == [f"OTEL_EXPORTER_OTLP_{s}_HEADERS" for s in ("TRACES", "METRICS", "LOGS")]
    assert by_name["OTEL_EXPORTER_OTLP_LOGS_COMPRESSION"].value == "gzip"
    assert by_name["OTEL_EXPORTER_OTLP_TRACES_INSECURE"].value == "true"
    assert by_name["OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE"].value == str(ca)
    rt = runtime_from_env({r.name: r.value for r in rows})
    assert dict(rt.traces.headers) == {"authorization": "Bearer abc", "x-tenant": "t 1"}
    assert (rt.metrics.compression, rt.logs.insecure, rt.traces.client_key) == ("gzip", True, str(key))


def test_cryostorm_only_values_travel_in_private_variables() -> None:
    env = env_for({"CRYOSTORM_TRACING__PROCESSOR_TYPE": "simple", "CRYOSTORM_SHUTDOWN_TIMEOUT_MILLIS": "1500",
                   "CRYOSTORM_LOGGING__LEVEL": "warning", "CRYOSTORM_SCHEMA_URL": "https://opentelemetry.io/schemas/1.26.0",
                   "CRYOSTORM_TRACING__ADDITIONAL_EXPORTER_ARGS": '{"timeout": 3}',
                   "CRYOSTORM_CHILD_PROCESSES": "none"})
    rt = runtime_from_env(env)
    assert (rt.traces.processor, rt.shutdown_timeout_ms, rt.log_level) == ("simple", 1500, "WARNING")
    assert rt.schema_url == "https://opentelemetry.io/schemas/1.26.0"
    assert dict(rt.traces.exporter_args) == {"timeout": 3}
    assert json.loads(env["_CRYOSTORM_TRACES_EXPORTER_ARGS"]) == {"timeout": 3}
    assert rt.children == "none"


def test_prometheus_metrics_exporter() -> None:
    env = env_for({"CRYOSTORM_METRICS__EXPORTER_TYPE": "prometheus", "CRYOSTORM_METRICS__PROMETHEUS_PORT": "9500"})
    assert env["OTEL_METRICS_EXPORTER"] == "prometheus"
    assert env["OTEL_EXPORTER_PROMETHEUS_PORT"] == "9500"


@pytest.mark.parametrize("field", ["tracing", "metrics", "logging"])
def test_every_signal_round_trips_through_the_child_parser(field: str) -> None:
    env = env_for({"CRYOSTORM_EXPORTER_TYPE": "otlp", f"CRYOSTORM_{field.upper()}__PROTOCOL": "http/protobuf"})
    signal = {"tracing": "traces", "metrics": "metrics", "logging": "logs"}[field]
    sig = runtime_from_env(env).signal(signal)
    assert (sig.exporter, sig.protocol) == ("otlp", "http/protobuf")
    assert sig.endpoint == f"http://localhost:4318/v1/{signal}"


def test_mapping_covers_every_setting() -> None:
    """Each leaf setting is named by at least one row (or is documented as launcher-only)."""
    from cli_helpers import leaf_settings

    everything = {
        "CRYOSTORM_EXPORTER_TYPE": "otlp", "CRYOSTORM_OTLP__HEADERS": "a=b", "CRYOSTORM_OTLP__INSECURE": "true",
        "CRYOSTORM_OTLP__COMPRESSION": "gzip", "CRYOSTORM_OTLP__TIMEOUT_MILLIS": "2500",
        "CRYOSTORM_SCHEMA_URL": "x", "CRYOSTORM_LOGGING__SCHEDULE_DELAY_MILLIS": "1",
        "CRYOSTORM_LOGGING__MAX_EXPORT_BATCH_SIZE": "1", "CRYOSTORM_LOGGING__EXPORT_TIMEOUT_MILLIS": "1",
        "CRYOSTORM_LOGGING__MAX_QUEUE_SIZE": "1",
        "CRYOSTORM_TRACING__ADDITIONAL_EXPORTER_ARGS": "a=1", "CRYOSTORM_TRACING__ADDITIONAL_PROCESSOR_ARGS": "a=1",
        "CRYOSTORM_METRICS__ADDITIONAL_EXPORTER_ARGS": "a=1", "CRYOSTORM_LOGGING__ADDITIONAL_EXPORTER_ARGS": "a=1",
        "CRYOSTORM_LOGGING__ADDITIONAL_PROCESSOR_ARGS": "a=1", "CRYOSTORM_TRACING__SAMPLING_STRATEGY": "traceidratio",
        "CRYOSTORM_LOGGING__CONSOLE_ECHO": "true",
    }
    per_signal = {f"CRYOSTORM_{s}__{k}": v for s in ("TRACING", "METRICS", "LOGGING") for k, v in (
        ("HEADERS", "a=c"), ("COMPRESSION", "gzip"), ("TIMEOUT_MILLIS", "1000"), ("INSECURE", "true"))}
    rows = env_rows(load_settings(everything).settings)
    rows += env_rows(load_settings({**everything, "CRYOSTORM_METRICS__EXPORTER_TYPE": "prometheus"}).settings)
    rows += env_rows(load_settings({**everything, **per_signal, "CRYOSTORM_OTLP__HEADERS": "",
                                    "CRYOSTORM_COLLECTOR": "http://u:p@c:4317"}).settings)
    named = {name for r in rows for name in r.setting.split(", ")}
    # `enabled` is consumed by the launcher itself (false: plain exec); TLS files are only set when given.
    launcher_only = {"enabled"} | {f"{block}.{f}" for block in ("otlp", "tracing", "metrics", "logging")
                                   for f in ("certificate_file", "client_certificate_file", "client_key_file")}
    missing = [
        leaf for leaf in leaf_settings()
        if leaf not in launcher_only
        and not any(".".join(leaf.split(".")[:n]) in named for n in range(1, leaf.count(".") + 2))
    ]
    assert missing == []


# -- the seams mutation testing found (tox -e mutation) ---------------------------------------------


def test_encode_pairs_percent_encodes_separators_and_keeps_resource_keys_literal() -> None:
    assert encode_pairs({"a,b=c/d": "x y/z,=é"}) == "a%2Cb%3Dc%2Fd=x%20y%2Fz%2C%3D%C3%A9"
    # OTEL_RESOURCE_ATTRIBUTES keys are not decoded by the SDK: only `,` and `=` are escaped
    assert encode_pairs({"a,b=c/d": "v/1", "k": "2"}, literal_keys=True) == "a%2Cb%3Dc/d=v%2F1,k=2"


def test_credentials_in_the_collector_url_become_basic_auth_named_by_their_setting() -> None:
    general = load_settings({"CRYOSTORM_EXPORTER_TYPE": "otlp", "CRYOSTORM_COLLECTOR": "http://user:pw@h:4317",
                             "CRYOSTORM_OTLP__PROTOCOL": "grpc"}).settings
    assert effective_headers(general, "tracing") == (
        {"authorization": "Basic dXNlcjpwdw=="}, "otlp.headers, collector.username, collector.password")
    own = load_settings({"CRYOSTORM_EXPORTER_TYPE": "otlp", "CRYOSTORM_TRACING__COLLECTOR": "http://user@h:4317/a/b/c",
                         "CRYOSTORM_OTLP__PROTOCOL": "grpc"}).settings
    assert effective_headers(own, "tracing") == (  # no password: "user:"
        {"authorization": "Basic dXNlcjo="}, "otlp.headers, tracing.collector.username, tracing.collector.password")
    assert effective_headers(own, "metrics") == ({}, "otlp.headers")
    # gRPC takes scheme://host:port only, whatever path the URL has
    assert signal_endpoint(own, "tracing") == "http://h:4317"


def test_boolean_resource_attributes_and_disabled_propagation_as_the_sdk_reads_them() -> None:
    env = env_for({"CRYOSTORM_SERVICE__ADDITIONAL_ATTRIBUTES": '{"flag": true, "n": 1}',
                   "CRYOSTORM_PROPAGATION__ENABLED": "false"})
    assert env["OTEL_RESOURCE_ATTRIBUTES"].endswith(",flag=true,n=1")
    assert env["OTEL_PROPAGATORS"] == "none"


def test_program_defaults_say_why_and_yield_to_the_programs_own_values() -> None:
    semconv = ("http", "default: stable HTTP semantic conventions")
    quiet = ("NONE", "default: no gRPC C-core log lines (cryostorm names export errors)")
    assert program_defaults({}) == {"OTEL_SEMCONV_STABILITY_OPT_IN": semconv, "GRPC_VERBOSITY": quiet}
    assert program_defaults({"GRPC_TRACE": "tcp"}) == {"OTEL_SEMCONV_STABILITY_OPT_IN": semconv}
    assert program_defaults({"GRPC_TRACE": ""}) == {"OTEL_SEMCONV_STABILITY_OPT_IN": semconv, "GRPC_VERBOSITY": quiet}
    assert program_defaults({"OTEL_SEMCONV_STABILITY_OPT_IN": "", "GRPC_VERBOSITY": "DEBUG"}) == {}


# -- excluded_paths: URL paths served, for the server instrumentations only (upstream's matcher the oracle) -----

_SEGMENT = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.~%?#,", min_size=1, max_size=8)


@settings(max_examples=300, deadline=None)
@given(path=st.lists(_SEGMENT, min_size=1, max_size=3), extra=st.sampled_from(["", "/", "/live", "?x=1", "?", "care",
                                                                                "x/y", ".json"]),
       prefix=st.sampled_from(["", "/api", "/v2/api"]), host=st.sampled_from(["h", "h:8000", "10.0.0.1:80"]))
def test_excluded_paths_match_a_path_and_below_it_as_upstreams_matcher_reads_them(
        path: list[str], extra: str, prefix: str, host: str) -> None:
    from opentelemetry.util.http import parse_excluded_urls

    from cryostorm_run.launch.envmap import excluded_url_patterns

    written = "/" + "/".join(path)
    matcher = parse_excluded_urls(excluded_url_patterns([written]))  # what each server instrumentation builds
    url = f"http://{host}{prefix}{written}{extra}"
    expected = prefix == "" and (extra == "" or extra[0] in "/?")  # that path, or below it; nothing else
    assert matcher.url_disabled(url) is expected, (written, url)


def test_excluded_paths_go_to_the_server_instrumentations_and_the_programs_own_variables_win() -> None:
    from cryostorm_run.launch.envmap import SERVERS
    from cryostorm_run.launch.plan import plan_launch

    settings = load_settings({}, config_dir=None).settings
    servers = {f"OTEL_PYTHON_{s}_EXCLUDED_URLS" for s in SERVERS}
    env = plan_launch(settings, ["true"], {"PATH": "/usr/bin:/bin"}).env
    assert servers <= env.keys() and "OTEL_PYTHON_EXCLUDED_URLS" not in env  # the clients' variable: untouched
    # upstream's shared variable set by the deployment: its choice, with upstream's meaning, replaces the default
    env = plan_launch(settings, ["true"], {"PATH": "/usr/bin:/bin", "OTEL_PYTHON_EXCLUDED_URLS": "ping"}).env
    assert env["OTEL_PYTHON_EXCLUDED_URLS"] == "ping" and not servers & env.keys()
    # one server's own variable: kept as written, the others get excluded_paths
    env = plan_launch(settings, ["true"], {"PATH": "/usr/bin:/bin", "OTEL_PYTHON_FLASK_EXCLUDED_URLS": "ping"}).env
    assert env["OTEL_PYTHON_FLASK_EXCLUDED_URLS"] == "ping" and servers <= env.keys()
    assert env["OTEL_PYTHON_DJANGO_EXCLUDED_URLS"].startswith(r"^\w+://[^/]*/health(")
    # excluded_paths set explicitly, beside the shared variable: written for the servers, the shared one kept
    chosen = load_settings({"CRYOSTORM_EXCLUDED_PATHS": "/ready"}, config_dir=None).settings
    env = plan_launch(chosen, ["true"], {"PATH": "/usr/bin:/bin", "OTEL_PYTHON_EXCLUDED_URLS": "ping"}).env
    assert env["OTEL_PYTHON_EXCLUDED_URLS"] == "ping"
    assert env["OTEL_PYTHON_FASTAPI_EXCLUDED_URLS"] == r"^\w+://[^/]*/ready(/|\x3f|$)"


def test_the_default_otlp_timeout_is_not_written_for_the_program() -> None:
    # Every SDK defaults to 10 s; written, the value is in the Python SDK's seconds ("10"), which the other
    # SDKs read as milliseconds: a Node, Go or Java child of the program exported with a 10 ms timeout.
    env = env_for({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "otlp", "OTEL_LOGS_EXPORTER": "otlp"})
    assert not [name for name in env if name.endswith("_TIMEOUT") and name.startswith("OTEL_EXPORTER_OTLP")]
    assert runtime_from_env(env).traces.timeout_s == 10  # the Python SDK's own default, as before
    env = env_for({"OTEL_TRACES_EXPORTER": "otlp", "CRYOSTORM_OTLP__TIMEOUT_MILLIS": "2500"})
    assert env["OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"] == "2.5"  # set: in the Python SDK's unit (README, Known limits)
