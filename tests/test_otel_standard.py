"""Standard OTEL_* variables a deployment already has mean what they mean to the OpenTelemetry Python
SDK and its OTLP exporters: per-signal over general, exporter names that fix the protocol, credentials
in an endpoint URL. Unit level: settings → the program's environment → the exporter's arguments."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

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
    files = {}
    for name in ("ca", "cert", "key", "tca", "tcert", "tkey"):
        files[name] = tmp_path / f"{name}.pem"
        files[name].write_text("x")
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
