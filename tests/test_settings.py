"""Settings: validation, error naming, and source precedence pair by pair."""

from __future__ import annotations

from pathlib import Path

import pytest

from cryostorm_run import ConfigError, ExporterType, OtlpProtocol, TelemetrySettings, load_settings
from cryostorm_run.config.loading import Override, parse_dotted


def problems(environ: dict[str, str], **kwargs: object) -> list[tuple[str, str | None, str, str]]:
    with pytest.raises(ConfigError) as info:
        load_settings(environ, **kwargs)  # type: ignore[arg-type]
    return [(p.name, p.value, p.message, p.hint) for p in info.value.problems]


def test_defaults_follow_the_seed() -> None:
    s = load_settings({}).settings
    assert s.service.name == "unknown-service"
    assert s.service.version == "0.1.0"
    assert s.service.environment.value == "development"
    assert s.exporter_type is ExporterType.CONSOLE
    assert s.tracing.sampling_strategy.value == "parentbased_always_on"
    assert [p.value for p in s.propagation.propagator_types] == ["tracecontext", "baggage"]
    assert s.excluded_paths == ["/health", "/metrics", "/favicon.ico"]
    assert s.tracing.export_config.batch_size == 512
    assert s.metrics.export_interval_millis == 60_000
    assert s.collector.base_url(OtlpProtocol.GRPC) == "http://localhost:4317"
    assert s.collector.base_url(OtlpProtocol.HTTP_PROTOBUF) == "http://localhost:4318"


def test_settings_are_frozen_and_forbid_unknown_fields() -> None:
    s = TelemetrySettings()
    with pytest.raises(Exception, match="frozen"):
        s.enabled = False  # type: ignore[misc]
    with pytest.raises(Exception, match="Extra inputs are not permitted"):
        TelemetrySettings(nonsense=1)  # type: ignore[call-arg]


def test_plain_constructor_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRYOSTORM_SERVICE__NAME", "from-env")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    s = TelemetrySettings()
    assert s.service.name == "from-env"
    assert s.tracing.sample_rate == 0.25


def test_nested_names_and_case_insensitive_values() -> None:
    s = load_settings({
        "CRYOSTORM_TRACING__EXPORTER_TYPE": "OTLP",
        "CRYOSTORM_TRACING__SAMPLING_STRATEGY": "TraceIdRatio",
        "CRYOSTORM_LOGGING__LEVEL": "debug",
        "CRYOSTORM_PROPAGATION__PROPAGATOR_TYPES": "tracecontext, b3",
        "CRYOSTORM_SERVICE__ADDITIONAL_ATTRIBUTES": "region=eu-west-1,team=payments",
    }).settings
    assert s.tracing.exporter_type is ExporterType.OTLP
    assert s.tracing.sampling_strategy.value == "traceidratio"
    assert s.logging.level.value == "DEBUG"
    assert [p.value for p in s.propagation.propagator_types] == ["tracecontext", "b3"]
    assert s.service.additional_attributes == {"region": "eu-west-1", "team": "payments"}


def test_collector_accepts_a_url_or_parts() -> None:
    s = load_settings({"CRYOSTORM_COLLECTOR": "https://otel.example.com:4318/otlp/"}).settings
    assert (s.collector.host, s.collector.port, s.collector.protocol, s.collector.path) == (
        "otel.example.com", 4318, "https", "/otlp")
    s = load_settings({"CRYOSTORM_COLLECTOR__HOST": "collector", "CRYOSTORM_COLLECTOR__PORT": "4999"}).settings
    assert s.collector.base_url(OtlpProtocol.GRPC) == "http://collector:4999"


@pytest.mark.parametrize(
    ("environ", "name", "value", "fragment"),
    [
        ({"CRYOSTORM_TRACING__SAMPLE_RATE": "2"}, "CRYOSTORM_TRACING__SAMPLE_RATE", "2", "<= 1"),
        ({"OTEL_TRACES_SAMPLER_ARG": "-1"}, "OTEL_TRACES_SAMPLER_ARG", "-1", ">= 0"),
        ({"CRYOSTORM_COLLECTOR__PORT": "70000"}, "CRYOSTORM_COLLECTOR__PORT", "70000", "<= 65535"),
        ({"CRYOSTORM_METRICS__EXPORT_INTERVAL_MILLIS": "0"}, "CRYOSTORM_METRICS__EXPORT_INTERVAL_MILLIS", "0", "> 0"),
        ({"CRYOSTORM_TRACING__EXPORTER_TYPE": "otpl"}, "CRYOSTORM_TRACING__EXPORTER_TYPE", "otpl", "otlp"),
        ({"OTEL_TRACES_SAMPLER": "bogus"}, "OTEL_TRACES_SAMPLER", "bogus", "parentbased_always_on"),
        ({"CRYOSTORM_ENABLED": "maybe"}, "CRYOSTORM_ENABLED", "maybe", "true, false"),
        ({"CRYOSTORM_COLLECTOR": "collector:4317"}, "CRYOSTORM_COLLECTOR", "collector:4317", "no scheme"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "ftp://x"}, "OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://x", "http or https"),
        ({"OTEL_EXPORTER_OTLP_TIMEOUT": "soon"}, "OTEL_EXPORTER_OTLP_TIMEOUT", "soon", "seconds"),
        ({"OTEL_TRACES_EXPORTER": "otlp,console"}, "OTEL_TRACES_EXPORTER", "otlp,console", "exactly one"),
    ],
)
def test_errors_name_the_variable_as_written(environ: dict[str, str], name: str, value: str, fragment: str) -> None:
    [(got_name, got_value, message, hint)] = problems(environ)
    assert got_name == name
    assert got_value == value
    assert fragment in message + " " + hint


def test_every_problem_is_reported_at_once() -> None:
    found = problems({
        "CRYOSTORM_TRACING__SAMPLE_RATE": "2",
        "CRYOSTORM_METRICS__EXPORT_INTERVAL_MILLIS": "abc",
        "OTEL_PROPAGATORS": "tracecontext,nope",
    })
    assert {f[0] for f in found} == {
        "CRYOSTORM_TRACING__SAMPLE_RATE", "CRYOSTORM_METRICS__EXPORT_INTERVAL_MILLIS", "OTEL_PROPAGATORS"}


def test_unknown_setting_is_an_error_with_a_suggestion() -> None:
    [(name, value, message, hint)] = problems({"CRYOSTORM_TRACING__SAMPLE_RAT": "0.5"})
    assert (name, value, message) == ("CRYOSTORM_TRACING__SAMPLE_RAT", "0.5", "unknown setting")
    assert hint == "did you mean CRYOSTORM_TRACING__SAMPLE_RATE?"


def test_cross_field_error_names_every_input_involved() -> None:
    [(name, _, message, _)] = problems({
        "CRYOSTORM_TRACING__EXPORT_CONFIG__BATCH_SIZE": "5000", "OTEL_BSP_MAX_QUEUE_SIZE": "100"})
    assert name == "CRYOSTORM_TRACING__EXPORT_CONFIG__BATCH_SIZE, OTEL_BSP_MAX_QUEUE_SIZE"
    assert "must not exceed" in message


def test_header_values_are_never_shown_in_errors() -> None:
    found = problems({"CRYOSTORM_OTLP__HEADERS": "authorization=Bearer canary-123,bad name=x"})
    assert found[0][0] == "CRYOSTORM_OTLP__HEADERS"
    assert "canary-123" not in repr(found)


def test_missing_tls_file_is_refused(tmp_path: Path) -> None:
    [(name, _, message, _)] = problems({"OTEL_EXPORTER_OTLP_CERTIFICATE": str(tmp_path / "ca.pem")})
    assert name == "OTEL_EXPORTER_OTLP_CERTIFICATE"
    assert "no such file" in message


def test_otel_variables_map_onto_the_model() -> None:
    s = load_settings({
        "OTEL_SERVICE_NAME": "checkout",
        "OTEL_RESOURCE_ATTRIBUTES": "service.version=2.0,deployment.environment=production,team=pay%2Cments",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "2.5",
        "OTEL_PROPAGATORS": "none",
        "OTEL_BSP_MAX_QUEUE_SIZE": "4096",
        "OTEL_PYTHON_EXCLUDED_URLS": "/ping,/ready",
    }).settings
    assert (s.service.name, s.service.version, s.service.environment.value) == ("checkout", "2.0", "production")
    assert s.service.additional_attributes == {"team": "pay,ments"}
    assert s.tracing.exporter_type is ExporterType.OTLP
    assert s.metrics.enabled is False
    assert s.tracing.collector is not None and s.tracing.collector.path == ""
    assert s.tracing.collector.base_url(OtlpProtocol.HTTP_PROTOBUF) == "http://c:4318"
    assert s.otlp.protocol is OtlpProtocol.HTTP_PROTOBUF
    assert s.otlp.timeout_millis == 2500  # the Python SDK reads this variable in seconds
    assert s.propagation.enabled is False
    assert s.tracing.export_config.max_queue_size == 4096
    assert s.excluded_paths == ["/ping", "/ready"]


def test_otel_service_name_outranks_resource_attributes() -> None:
    s = load_settings({"OTEL_RESOURCE_ATTRIBUTES": "service.name=a", "OTEL_SERVICE_NAME": "b"}).settings
    assert s.service.name == "b"


def test_sdk_disabled_disables_everything() -> None:
    assert load_settings({"OTEL_SDK_DISABLED": "true"}).settings.enabled is False


# -- precedence, pair by pair: flag > CRYOSTORM_* > OTEL_* > env file > default ----------------


def env_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "telemetry.env"
    path.write_text(text)
    return path


def test_flag_beats_cryostorm_variable() -> None:
    loaded = load_settings({"CRYOSTORM_SERVICE__NAME": "env"},
                           overrides=[Override("--service-name", ("service", "name"), "flag")])
    assert loaded.settings.service.name == "flag"
    assert loaded.origin(("service", "name")).describe() == "--service-name"


def test_cryostorm_variable_beats_otel_variable() -> None:
    loaded = load_settings({"CRYOSTORM_SERVICE__NAME": "cryo", "OTEL_SERVICE_NAME": "otel"})
    assert loaded.settings.service.name == "cryo"
    assert loaded.origin(("service", "name")).describe() == "CRYOSTORM_SERVICE__NAME"


def test_otel_variable_beats_env_file(tmp_path: Path) -> None:
    loaded = load_settings({"OTEL_SERVICE_NAME": "otel"},
                           env_file=env_file(tmp_path, "CRYOSTORM_SERVICE__NAME=file\n"))
    assert loaded.settings.service.name == "otel"


def test_env_file_beats_default(tmp_path: Path) -> None:
    path = env_file(tmp_path, "# comment\nCRYOSTORM_SERVICE__NAME=file\n")
    loaded = load_settings({}, env_file=path)
    assert loaded.settings.service.name == "file"
    assert loaded.origin(("service", "name")).describe() == f"CRYOSTORM_SERVICE__NAME in {path}"


def test_inside_env_file_cryostorm_beats_otel(tmp_path: Path) -> None:
    path = env_file(tmp_path, "CRYOSTORM_SERVICE__NAME=cryo\nOTEL_SERVICE_NAME=otel\n")
    assert load_settings({}, env_file=path).settings.service.name == "cryo"


def test_default_when_nothing_is_set() -> None:
    assert load_settings({}).origin(("service", "name")).describe() == "default"


def test_nested_override_merges_with_a_url_from_a_lower_source() -> None:
    s = load_settings({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://c.example:4317",
                       "CRYOSTORM_COLLECTOR__PORT": "9999"}).settings
    assert s.collector.base_url(OtlpProtocol.GRPC) == "https://c.example:9999"


def test_env_file_errors_name_the_file(tmp_path: Path) -> None:
    path = env_file(tmp_path, "CRYOSTORM_TRACING__SAMPLE_RATE=7\n")
    [(name, value, _, _)] = problems({}, env_file=path)
    assert (name, value) == (f"CRYOSTORM_TRACING__SAMPLE_RATE in {path}", "7")
    [(name, _, message, _)] = problems({}, env_file=tmp_path / "missing.env")
    assert (name, message) == ("--env-file", "no such file")


def test_dotted_assignments() -> None:
    assert parse_dotted("--set", "tracing.sample_rate=0.5") == Override(
        "--set tracing.sample_rate", ("tracing", "sample_rate"), "0.5")
    [(name, _, _, _)] = problems({}, overrides=[parse_dotted("--set", "tracing.sample_rate=9")])
    assert name == "--set tracing.sample_rate"
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_dotted("--set", "no-equals-sign")


def test_component_without_its_package_is_refused_with_the_pip_line() -> None:
    # opentelemetry-propagator-jaeger is deliberately not a test dependency.
    [(name, value, message, hint)] = problems({"OTEL_PROPAGATORS": "tracecontext,jaeger"})
    assert (name, value) == ("OTEL_PROPAGATORS", "jaeger")
    assert "not installed" in message
    assert hint == "pip install opentelemetry-propagator-jaeger"
    # b3 is installed for the tests: accepted
    s = load_settings({"OTEL_PROPAGATORS": "b3"}).settings
    assert [p.value for p in s.propagation.propagator_types] == ["b3"]
