"""Standard OTEL_* variables a deployment already has mean what they mean to the OpenTelemetry Python
SDK and its OTLP exporters: per-signal over general, exporter names that fix the protocol, credentials
in an endpoint URL. Unit level: settings → the program's environment → the exporter's arguments."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from conftest import tls_files

from cryostorm_run import load_settings
from cryostorm_run.common.runtime import runtime_from_env
from cryostorm_run.config.loading import ConfigError
from cryostorm_run.export.otlp import _grpc_kwargs, _http_kwargs
from cryostorm_run.launch.envmap import env_rows, settings_env
from cryostorm_run.launch.plan import plan_launch

OTLP = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "otlp", "OTEL_LOGS_EXPORTER": "otlp",
        "OTEL_SERVICE_NAME": "svc"}


def env_for(environ: dict[str, str]) -> dict[str, str]:
    return settings_env(load_settings(environ, config_dir=None).settings)


def test_per_signal_headers_win_over_the_general_ones_for_their_signal_only() -> None:
    env = env_for({**OTLP, "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20other",
                   "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "authorization=Bearer good,x-tenant=t1"})
    runtime = runtime_from_env(env)
    assert dict(runtime.traces.headers) == {"authorization": "Bearer good", "x-tenant": "t1"}  # replaced, not merged
    assert dict(runtime.metrics.headers) == dict(runtime.logs.headers) == {"authorization": "Bearer other"}


def test_per_signal_timeout_compression_insecure_and_endpoint() -> None:
    env = env_for({**OTLP, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://general:4317",
                   "OTEL_EXPORTER_OTLP_TIMEOUT": "10", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "2.5",
                   "OTEL_EXPORTER_OTLP_COMPRESSION": "none", "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION": "gzip",
                   "OTEL_EXPORTER_OTLP_INSECURE": "true", "OTEL_EXPORTER_OTLP_LOGS_INSECURE": "false",
                   "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://logs-gw:4317"})
    runtime = runtime_from_env(env)
    assert (runtime.traces.timeout_s, runtime.metrics.timeout_s, runtime.logs.timeout_s) == (2.5, 10, 10)
    assert (runtime.traces.compression, runtime.metrics.compression, runtime.logs.compression) == (
        "none", "gzip", "none")
    assert (runtime.traces.insecure, runtime.metrics.insecure, runtime.logs.insecure) == (True, True, False)
    assert (runtime.traces.endpoint, runtime.logs.endpoint) == ("http://general:4317", "http://logs-gw:4317")
    kwargs = _grpc_kwargs(runtime.traces)
    assert kwargs["timeout"] == 2.5 and kwargs["insecure"] is True


def test_an_empty_per_signal_variable_means_unset_as_for_the_exporters() -> None:
    env = env_for({**OTLP, "OTEL_EXPORTER_OTLP_HEADERS": "k=general", "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "",
                   "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": " ", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://general:4317",
                   "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": ""})
    runtime = runtime_from_env(env)
    assert dict(runtime.traces.headers) == {"k": "general"} and runtime.traces.timeout_s == 10
    assert runtime.traces.endpoint == "http://general:4317"


def test_per_signal_certificates_follow_each_exporter(tmp_path: Path) -> None:
    files = tls_files(tmp_path, ("ca", "cert", "key", "tca", "tcert", "tkey"))
    general = {"OTEL_EXPORTER_OTLP_CERTIFICATE": str(files["ca"]),
               "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": str(files["cert"]),
               "OTEL_EXPORTER_OTLP_CLIENT_KEY": str(files["key"])}
    traces = {"OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE": str(files["tca"]),
              "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE": str(files["tcert"]),
              "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY": str(files["tkey"])}
    for protocol in ("grpc", "http/protobuf"):
        env = env_for({**OTLP, "OTEL_EXPORTER_OTLP_PROTOCOL": protocol, **general, **traces})
        runtime = runtime_from_env(env)
        assert (runtime.traces.certificate, runtime.traces.client_certificate, runtime.traces.client_key) == (
            str(files["tca"]), str(files["tcert"]), str(files["tkey"]))
        assert (runtime.logs.certificate, runtime.logs.client_certificate, runtime.logs.client_key) == (
            str(files["ca"]), str(files["cert"]), str(files["key"]))
    # OTLP/HTTP takes each file per-signal else general: the traces CA with the general client pair.
    env = env_for({**OTLP, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", **general,
                   "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE": str(files["tca"])})
    kwargs = _http_kwargs(runtime_from_env(env).traces)
    assert (kwargs["certificate_file"], kwargs["client_certificate_file"], kwargs["client_key_file"]) == (
        str(files["tca"]), str(files["cert"]), str(files["key"]))
    # OTLP/gRPC would drop the general client pair for a signal with its own CA: refused, not dropped.
    with pytest.raises(ConfigError) as info:
        load_settings({**OTLP, **general, "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE": str(files["tca"])},
                      config_dir=None)
    assert [p.name for p in info.value.problems] == ["OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"]


def test_tls_files_the_grpc_exporter_would_ignore_are_refused_for_the_signal_concerned(tmp_path: Path) -> None:
    files = tls_files(tmp_path, ("ca", "cert", "key", "mca"))
    # traces go over OTLP/HTTP (each file taken on its own: nothing to refuse), metrics over gRPC
    base = {**OTLP, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "grpc"}
    loaded = problem_tuples({**base, "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE": str(files["cert"]),
                             "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY": str(files["key"]),
                             "OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE": str(files["cert"]),
                             "OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY": str(files["key"])})
    assert loaded == [("OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE", None,
                       "ignored by the OTLP/gRPC exporter without a certificate for the same signal",
                       "also set the signal's certificate (OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE)")]
    loaded = problem_tuples({**base, "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": str(files["cert"]),
                             "OTEL_EXPORTER_OTLP_CLIENT_KEY": str(files["key"]),
                             "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE": str(files["ca"]),
                             "OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE": str(files["mca"])})
    assert loaded == [("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", None,
                       "ignored by the OTLP/gRPC exporter for metrics, which has its own certificate "
                       "(OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE) and no client certificate of its own",
                       "set OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE and _CLIENT_KEY too")]


def problem_tuples(environ: dict[str, str]) -> list[tuple[str, str | None, str, str]]:
    with pytest.raises(ConfigError) as info:
        load_settings(environ, config_dir=None)
    return [(p.name, p.value, p.message, p.hint) for p in info.value.problems]


def test_a_per_signal_http_url_without_the_signal_path_is_refused_with_the_fix() -> None:
    http = {"OTEL_TRACES_EXPORTER": "console", "OTEL_METRICS_EXPORTER": "otlp", "OTEL_LOGS_EXPORTER": "console",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
    assert problem_tuples({**http, "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": " http://gw:4318/custom/ "}) == [(
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", None,
        "the OTLP/HTTP exporter uses this URL as it is, but it does not end in /v1/metrics, "
        "which cryostorm adds to a collector URL",
        "write the full URL ending in /v1/metrics, or set the base URL in OTEL_EXPORTER_OTLP_ENDPOINT")]
    # a trailing slash or blanks around the full URL are no reason to refuse it
    env = env_for({**http, "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": " http://gw:4318/otlp/v1/metrics/ "})
    assert env["OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"] == "http://gw:4318/otlp/v1/metrics"


def test_grpc_header_names_are_lower_cased_as_the_exporters_parse_them() -> None:
    env = env_for({**OTLP, "OTEL_EXPORTER_OTLP_HEADERS": "Authorization=Bearer x"})
    assert _grpc_kwargs(runtime_from_env(env).traces)["headers"] == {"authorization": "Bearer x"}


def test_rows_name_the_per_signal_setting_they_come_from_and_stay_secret() -> None:
    loaded = load_settings({**OTLP, "OTEL_EXPORTER_OTLP_HEADERS": "a=1", "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "a=2"},
                           config_dir=None)
    rows = {r.name: r for r in env_rows(loaded.settings)}
    assert rows["OTEL_EXPORTER_OTLP_TRACES_HEADERS"].setting == "tracing.headers"
    assert rows["OTEL_EXPORTER_OTLP_METRICS_HEADERS"].setting == "otlp.headers"
    assert all(rows[f"OTEL_EXPORTER_OTLP_{s}_HEADERS"].secret for s in ("TRACES", "METRICS", "LOGS"))


@pytest.mark.parametrize(("name", "protocol"), [("otlp_proto_http", "http/protobuf"), ("otlp_proto_grpc", "grpc")])
def test_exporter_names_that_fix_the_protocol(name: str, protocol: str) -> None:
    other = "grpc" if protocol != "grpc" else "http/protobuf"
    env = env_for({**OTLP, "OTEL_TRACES_EXPORTER": name, "OTEL_METRICS_EXPORTER": name.upper(),
                   "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": other, "OTEL_EXPORTER_OTLP_PROTOCOL": other})
    assert env["OTEL_TRACES_EXPORTER"] == env["OTEL_METRICS_EXPORTER"] == "otlp"
    # As the SDK: the exporter's own transport wins over OTEL_EXPORTER_OTLP_*PROTOCOL.
    assert env["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] == env["OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"] == protocol
    assert env["OTEL_EXPORTER_OTLP_LOGS_PROTOCOL"] == other


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_url_credentials_become_a_basic_header_and_leave_the_url() -> None:
    env = env_for({**OTLP, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                   "OTEL_EXPORTER_OTLP_ENDPOINT": "http://us%40er:p%3Ass@collector:4318",
                   "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://logs:4318/v1/logs"})
    runtime = runtime_from_env(env)
    assert runtime.traces.endpoint == "http://collector:4318/v1/traces"
    assert dict(runtime.traces.headers) == dict(runtime.metrics.headers) == {"authorization": basic("us@er", "p:ss")}
    assert dict(runtime.logs.headers) == {}  # its own endpoint has no credentials
    assert not any("p:ss" in v or "p%3Ass" in v for v in env.values())


def test_url_credentials_and_an_authorization_header_are_refused() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({**OTLP, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://user:pw-1234@collector:4317",
                       "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "Authorization=Bearer t"}, config_dir=None)
    [problem] = info.value.problems
    assert problem.name == "OTEL_EXPORTER_OTLP_ENDPOINT"
    assert "OTEL_EXPORTER_OTLP_TRACES_HEADERS" in problem.message and "pw-1234" not in str(problem)


def test_a_signal_url_with_credentials_and_the_general_authorization_header_are_refused() -> None:
    # traces are not sent over OTLP (checked and passed over), metrics are: the problem names the metrics URL
    # and the general headers variable, since metrics have no headers of their own.
    with pytest.raises(ConfigError) as info:
        load_settings({"OTEL_TRACES_EXPORTER": "console", "OTEL_METRICS_EXPORTER": "otlp",
                       "OTEL_LOGS_EXPORTER": "console",
                       "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://user:pw-1234@collector:4317",
                       "OTEL_EXPORTER_OTLP_HEADERS": "Authorization=Bearer t"}, config_dir=None)
    [problem] = info.value.problems
    assert (problem.name, problem.value, problem.message, problem.hint) == (
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", None,
        "the URL's user:password@ becomes an Authorization: Basic header for metrics, "
        "but OTEL_EXPORTER_OTLP_HEADERS sets an authorization header too",
        "keep one of them: remove the credentials from the URL or the authorization header")


def test_url_credentials_beside_the_general_authorization_header_are_one_problem_naming_each_signal() -> None:
    # Every signal meets the same two inputs: told once, not three times; a signal with its own headers
    # variable is its own problem.
    with pytest.raises(ConfigError) as info:
        load_settings({**OTLP, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://user:pw-1234@collector:4317",
                       "OTEL_EXPORTER_OTLP_HEADERS": "Authorization=Bearer t",
                       "OTEL_EXPORTER_OTLP_METRICS_HEADERS": "authorization=Bearer m"}, config_dir=None)
    head = "the URL's user:password@ becomes an Authorization: Basic header for "
    assert [(p.name, p.message) for p in info.value.problems] == [
        ("OTEL_EXPORTER_OTLP_ENDPOINT",
         head + "traces and logs, but OTEL_EXPORTER_OTLP_HEADERS sets an authorization header too"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT",
         head + "metrics, but OTEL_EXPORTER_OTLP_METRICS_HEADERS sets an authorization header too")]
    assert "pw-1234" not in repr(info.value.problems)


def test_an_invalid_url_with_credentials_is_reported_without_them() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({**OTLP, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://user:pw-1234@collector:99999"}, config_dir=None)
    assert "pw-1234" not in repr(info.value.problems) and "user" not in repr(info.value.problems)


def test_semconv_opt_in_is_set_unless_the_program_has_its_own(tmp_path: Path) -> None:
    settings = load_settings({}, config_dir=None).settings
    env = plan_launch(settings, ["true"], {"PATH": "/usr/bin:/bin"}).env
    assert env["OTEL_SEMCONV_STABILITY_OPT_IN"] == "http"
    env = plan_launch(settings, ["true"], {"PATH": "/usr/bin:/bin", "OTEL_SEMCONV_STABILITY_OPT_IN": "http/dup"}).env
    assert env["OTEL_SEMCONV_STABILITY_OPT_IN"] == "http/dup"


def test_an_https_endpoint_without_a_port_goes_to_443_as_for_the_exporters() -> None:
    for protocol in ("grpc", "http/protobuf"):
        env = env_for({**OTLP, "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
                       "OTEL_EXPORTER_OTLP_ENDPOINT": "https://api.vendor.example",
                       "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "https://logs.vendor.example/otlp/v1/logs"})
        suffix = "" if protocol == "grpc" else "/v1/traces"
        assert env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] == f"https://api.vendor.example:443{suffix}"
        assert env["OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"].startswith("https://logs.vendor.example:443")


def test_an_http_endpoint_without_a_port_is_refused_rather_than_guessed() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({**OTLP, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://agent:pw-1234@collector/v1/traces"},
                      config_dir=None)
    [problem] = info.value.problems
    assert problem.name == "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" and "port 80" in problem.message
    assert "pw-1234" not in repr(problem)


def test_a_per_signal_http_url_is_used_as_written_or_refused(tmp_path: Path) -> None:
    http = {**OTLP, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
    env = env_for({**http, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://gw:4318/otlp/v1/traces"})
    assert env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] == "http://gw:4318/otlp/v1/traces"
    # The exporter would post to /custom as written; cryostorm would add /v1/traces: refused.
    dotenv = tmp_path / "app.env"
    dotenv.write_text("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://gw:4318/custom\n")
    cases: list[tuple[dict[str, str], Path | None]] = [
        ({**http, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://gw:4318/custom"}, None), (http, dotenv)]
    for environ, env_file in cases:
        with pytest.raises(ConfigError) as info:
            load_settings(environ, env_file=env_file, config_dir=None)
        [problem] = info.value.problems
        assert problem.name.startswith("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") and "/v1/traces" in problem.message
    # Over gRPC the path is ignored by the exporter (and cryostorm warns about it): accepted.
    load_settings({**OTLP, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://gw:4317/custom"}, config_dir=None)


# -- each OTEL_* variable read as the SDK reads it -------------------------------------------------


def test_timeouts_are_seconds_up_to_a_day() -> None:
    s = load_settings({"OTEL_EXPORTER_OTLP_TIMEOUT": "86400", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "0.0016",
                       "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT": "1e1"}, config_dir=None).settings
    assert (s.otlp.timeout_millis, s.tracing.timeout_millis, s.metrics.timeout_millis) == (86_400_000, 2, 10_000)
    for raw in ("86400.01", "nan", "inf"):
        assert problem_tuples({"OTEL_EXPORTER_OTLP_TIMEOUT": raw}) == [
            ("OTEL_EXPORTER_OTLP_TIMEOUT", raw, "expected a number of seconds up to 86400 (one day)", "")]
    assert problem_tuples({"OTEL_EXPORTER_OTLP_LOGS_TIMEOUT": "soon"}) == [
        ("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "soon", "expected a number of seconds, e.g. 10", "")]


def test_exporter_names_are_read_as_the_sdk_reads_them() -> None:
    s = load_settings({"OTEL_TRACES_EXPORTER": " NONE ", "OTEL_METRICS_EXPORTER": "console,",
                       "OTEL_LOGS_EXPORTER": " Otlp_Proto_Grpc "}, config_dir=None).settings
    assert s.tracing.enabled is False and s.metrics.exporter_type.value == "console"
    assert (s.logging.exporter_type.value, s.logging.protocol.value) == ("otlp", "grpc")
    s = load_settings({"OTEL_LOGS_EXPORTER": "console, OTLP_proto_http"}, config_dir=None).settings
    assert (s.logging.exporter_type.value, s.logging.protocol.value, s.logging.also_export_to) == (
        "otlp", "http/protobuf", ["console"])
    # the exporter name that fixes the protocol outranks the signal's protocol variable, wherever it is written
    s = load_settings({"OTEL_TRACES_EXPORTER": "otlp_proto_http", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
                       "OTEL_SERVICE_NAME": "b", "OTEL_RESOURCE_ATTRIBUTES": "service.name=a"},
                      config_dir=None).settings
    assert (s.tracing.protocol.value, s.service.name) == ("http/protobuf", "b")


def test_sdk_disabled_and_propagators() -> None:
    assert load_settings({"OTEL_SDK_DISABLED": " TRUE "}, config_dir=None).settings.enabled is False
    assert load_settings({"OTEL_SDK_DISABLED": "false"}, config_dir=None).settings.enabled is True
    assert load_settings({"OTEL_SDK_DISABLED": ""}, config_dir=None).settings.enabled is True
    assert problem_tuples({"OTEL_SDK_DISABLED": "yes"}) == [
        ("OTEL_SDK_DISABLED", "yes", "expected true or false, got 'yes'", "")]
    s = load_settings({"OTEL_PROPAGATORS": " TraceContext, ,B3 "}, config_dir=None).settings
    assert [p.value for p in s.propagation.propagator_types] == ["tracecontext", "b3"]
    assert load_settings({"OTEL_PROPAGATORS": " None "}, config_dir=None).settings.propagation.enabled is False


def test_resource_attributes_fill_the_service_and_keep_the_rest() -> None:
    loaded = load_settings({"OTEL_RESOURCE_ATTRIBUTES": "service.name=a,service.version=2,"
                            "deployment.environment.name=production"}, config_dir=None)
    s = loaded.settings
    assert (s.service.name, s.service.version, s.service.environment.value) == ("a", "2", "production")
    assert loaded.origin(("service", "additional_attributes")).describe() == "default"  # nothing else was given
    s = load_settings({"OTEL_RESOURCE_ATTRIBUTES": "a%2Cb=1%2C2,deployment.environment=staging"},
                      config_dir=None).settings
    assert (s.service.environment.value, s.service.additional_attributes) == ("staging", {"a%2Cb": "1,2"})


def test_endpoints_lose_the_signal_path_and_get_the_https_port() -> None:
    s = load_settings({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/v1/traces/",
                       "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": " http://t:4318/v1/traces/ ",
                       "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "https://u:p@m/v1/metrics",
                       "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://l:4318/x/v1/logs"}, config_dir=None).settings
    assert s.collector.path == "/v1/traces"  # the general URL is a base URL: kept as written
    assert s.tracing.collector is not None and (s.tracing.collector.host, s.tracing.collector.path) == ("t", "")
    assert s.metrics.collector is not None and (s.metrics.collector.port, s.metrics.collector.username) == (443, "u")
    assert s.logging.collector is not None and s.logging.collector.path == "/x"
    # whitespace only: unset, as for the exporters
    s = load_settings({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://g:4317", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "  "},
                      config_dir=None).settings
    assert s.tracing.collector is None
    # what is wrong with a URL is reported by the model, as written
    for url, message in (("https://host:99999", "invalid port in 'https://host:99999'"),
                         ("ftp://host", "URL scheme must be http or https, got 'ftp'"),
                         ("host:4317", "expected a URL such as http://collector:4317, got 'host:4317' (no scheme)"),
                         # urlsplit keeps [::1] and the port and drops the x between them: refused, not rewritten
                         ("http://[::1]x:4317", "invalid host in 'http://[::1]x:4317': an IPv6 address in brackets "
                          "is followed by ':' and the port or by nothing, e.g. http://[::1]:4317"),
                         ("http://a]b:4317", "invalid host in 'http://a]b:4317': '[' and ']' only enclose an IPv6 "
                          "address, e.g. http://[::1]:4317")):
        assert problem_tuples({"OTEL_EXPORTER_OTLP_ENDPOINT": url}) == [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", url, message, "")]
    assert problem_tuples({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}) == [(
        "OTEL_EXPORTER_OTLP_ENDPOINT", "http://c",
        "an http URL without a port: the OpenTelemetry exporters would send to port 80 (http/protobuf) or 443 "
        "(grpc), not to an OTLP port; write the port, e.g. http://collector:4318 (http/protobuf) or "
        "http://collector:4317 (grpc)", "")]


def test_a_refused_variable_is_named_with_the_reason_and_a_secret_one_masked(tmp_path: Path) -> None:
    assert problem_tuples({"OTEL_EXPORTER_JAEGER_PASSWORD": "pw"}) == [(
        "OTEL_EXPORTER_JAEGER_PASSWORD", "****", "not supported by cryostorm-run: cryostorm has no Jaeger exporter; "
        "export OTLP to a collector that forwards to Jaeger", "unset it")]
    dotenv = tmp_path / "app.env"
    dotenv.write_text("OTEL_EXPORTER_ZIPKIN_ENDPOINT=http://z:9411\n")
    with pytest.raises(ConfigError) as info:
        load_settings({}, env_file=dotenv, config_dir=None)
    assert [(p.name, p.value, p.message, p.hint) for p in info.value.problems] == [(
        f"OTEL_EXPORTER_ZIPKIN_ENDPOINT in {dotenv}", "http://z:9411", "not supported by cryostorm-run: cryostorm "
        "has no Zipkin exporter; export OTLP to a collector that forwards to Zipkin", "unset it")]


def test_an_endpoint_keeps_its_path_and_a_url_without_host_is_reported_by_the_model() -> None:
    s = load_settings({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/ABX/"}, config_dir=None).settings
    assert s.collector.path == "/ABX"  # only the trailing slash goes
    assert problem_tuples({"OTEL_EXPORTER_OTLP_ENDPOINT": "http:///v1"}) == [(
        "OTEL_EXPORTER_OTLP_ENDPOINT", "http:///v1",
        "invalid host '': use a host name or IP address, without scheme or port", "")]


def test_a_refused_variable_does_not_hide_the_problems_of_the_others() -> None:
    assert [p[0] for p in problem_tuples({"OTEL_EXPORTER_ZIPKIN_ENDPOINT": "http://z:9411",
                                          "OTEL_SDK_DISABLED": "yes"})] == [
        "OTEL_EXPORTER_ZIPKIN_ENDPOINT", "OTEL_SDK_DISABLED"]


def test_tls_files_are_read_before_the_program_starts_and_a_pair_is_named_alone(tmp_path: Path) -> None:
    """A CA file that holds no certificate, or a key that is not the certificate's, failed at every export with
    a reason naming something else ("connection refused", "use http://"): refused by name before the start."""
    files = tls_files(tmp_path, ("ca", "cert", "key"))
    other = tls_files(tmp_path / "other", ("key",))["key"]  # another key pair's key
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("garbage\n")
    assert problem_tuples({"OTEL_EXPORTER_OTLP_CERTIFICATE": str(garbage)}) == [(
        "OTEL_EXPORTER_OTLP_CERTIFICATE", str(garbage), "holds no CA certificate the exporters can read "
        "(NO_CERTIFICATE_OR_CRL_FOUND)", "give a PEM file, beginning -----BEGIN CERTIFICATE-----, with the CA that "
        "signed the collector's certificate")]
    [(name, value, message, hint)] = problem_tuples({"OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE": str(files["cert"]),
                                                     "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY": str(other)})
    assert (name, value, hint) == ("OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE and "
                                   "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", None,
                                   "give the PEM certificate and the PEM private key made for it")
    assert message.startswith("not a client certificate and its key ("), message
    valid = {"OTEL_EXPORTER_OTLP_CERTIFICATE": str(files["ca"]), "OTEL_EXPORTER_OTLP_CLIENT_KEY": str(files["key"]),
             "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": str(files["cert"])}
    assert load_settings(valid, config_dir=None).settings.otlp.client_key_file == files["key"]
    # one of the pair alone: the pair's input named, not every input of the group (headers, the CA)
    assert problem_tuples({"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": str(files["cert"]),
                           "OTEL_EXPORTER_OTLP_CERTIFICATE": str(files["ca"]),
                           "OTEL_EXPORTER_OTLP_HEADERS": "a=b"}) == [(
        "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", str(files["cert"]),
        "client_certificate_file and client_key_file must be set together", "")]
