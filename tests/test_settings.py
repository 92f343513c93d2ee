"""Settings: validation, error naming, and source precedence pair by pair."""

from __future__ import annotations

import json
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
    with pytest.raises(ValueError, match=r"TelemetrySettings\(nonsense=...\) = '1': unknown setting"):
        TelemetrySettings(nonsense=1)  # type: ignore[call-arg]


@pytest.mark.parametrize(("environ", "expected"), [
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://user:hunter2@collector:99999"},
     "  OTEL_EXPORTER_OTLP_ENDPOINT = 'http://****:****@collector:99999': invalid port in "
     "'http://****:****@collector:99999'"),
    ({"OTEL_EXPORTER_OTLP_HEADERS": "Authorization=Bearer%20hunter2,bad"},
     "  OTEL_EXPORTER_OTLP_HEADERS = 'Authorization=****,****': expected key=value pairs separated by commas, "
     "got '****' (item 2 of 2)"),
    ({"OTEL_RESOURCE_ATTRIBUTES": "team"}, "  OTEL_RESOURCE_ATTRIBUTES = 'team': expected key=value pairs "
     "separated by commas, got 'team'"),
])
def test_settings_made_in_a_program_are_refused_as_the_launcher_does_secrets_masked(
        monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], expected: str) -> None:
    """`Telemetry.from_settings(TelemetrySettings())` without the launcher: pydantic's own error quoted every
    input in clear (`input_value='http://user:hunter2@...'`), and a reader's refusal was an internal SourceError."""
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError) as info:  # noqa: PT011  (the message is checked below)
        TelemetrySettings()
    assert type(info.value).__name__ == "InvalidSettings"
    assert str(info.value) == f"invalid cryostorm settings (1 problem):\n{expected}"
    assert "hunter2" not in repr(info.value) and info.value.__cause__ is None and info.value.__suppress_context__


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
        ({"OTEL_TRACES_EXPORTER": "otlp,none"}, "OTEL_TRACES_EXPORTER", "otlp,none", "cannot be combined"),
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


@pytest.mark.parametrize(
    ("name", "suggested"),
    [
        ("CRYOSTORM_TRACES__ENABLED", "CRYOSTORM_TRACING__ENABLED"),  # OpenTelemetry's word for the signal
        ("CRYOSTORM_LOGS__LEVEL", "CRYOSTORM_LOGGING__LEVEL"),
        ("CRYOSTORM_METRIC__EXPORT_INTERVAL_MILLIS", "CRYOSTORM_METRICS__EXPORT_INTERVAL_MILLIS"),
        ("CRYOSTORM_SPANS__EXPORT_CONFIG__BATCH_SIZE", "CRYOSTORM_TRACING__EXPORT_CONFIG__BATCH_SIZE"),
        ("CRYOSTORM_TRACES__SAMPLER", "CRYOSTORM_TRACING__SAMPLING_STRATEGY"),
        ("CRYOSTORM_TRACE__SAMPLER_ARG", "CRYOSTORM_TRACING__SAMPLE_RATE"),
        ("CRYOSTORM_ENDPOINT", "CRYOSTORM_COLLECTOR"),
        ("CRYOSTORM_TRACES__ENDPOINT", "CRYOSTORM_TRACING__COLLECTOR"),
        ("CRYOSTORM_PROPAGATORS", "CRYOSTORM_PROPAGATION__PROPAGATOR_TYPES"),
    ],
)
def test_opentelemetrys_words_for_a_setting_suggest_cryostorms(name: str, suggested: str) -> None:
    # The value is shown as written, also when the whole section is unknown (no `traces` section at all).
    assert problems({name: "v1"}) == [(name, "v1", "unknown setting", f"did you mean {suggested}?")]


def test_each_input_in_an_unknown_section_is_its_own_problem_and_a_secret_stays_masked() -> None:
    assert problems({"CRYOSTORM_TRACES__ENABLED": "false", "CRYOSTORM_TRACES__HEADERS": "authorization=s3cret"}) == [
        ("CRYOSTORM_TRACES__ENABLED", "false", "unknown setting", "did you mean CRYOSTORM_TRACING__ENABLED?"),
        ("CRYOSTORM_TRACES__HEADERS", "****", "unknown setting", "did you mean CRYOSTORM_TRACING__HEADERS?")]


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
        "OTEL_PYTHON_EXCLUDED_URLS": "/ping,/ready",  # passed on as it is (upstream's meaning), not a setting
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
    assert s.excluded_paths == ["/health", "/metrics", "/favicon.ico"]


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


# -- every problem exactly as it is printed: name, value shown, message, hint ---------------------


def config_problems(tmp_path: Path, toml: str) -> list[tuple[str, str | None, str, str]]:
    (tmp_path / "cryostorm.toml").write_text(toml)
    return problems({}, config_dir=tmp_path)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"CRYOSTORM_TRACING__EXPORTER_TYPE": "nope"}, ("CRYOSTORM_TRACING__EXPORTER_TYPE", "nope",
          "not an allowed value", "allowed: console, pretty, console_json, otlp, in_memory, prometheus or none")),
        ({"CRYOSTORM_COLLECTOR__PORT": "x"}, ("CRYOSTORM_COLLECTOR__PORT", "x", "Input should be a valid integer, "
          "unable to parse string as an integer", "use a port number, e.g. 4317")),
        ({"CRYOSTORM_TRACING__SAMPLE_RATE": "abc"}, ("CRYOSTORM_TRACING__SAMPLE_RATE", "abc", "Input should be a valid "
          "number, unable to parse string as a number", "use a ratio from 0 to 1, e.g. 0.25 to keep a quarter of "
          "the traces")),
        # the example fits the setting: milliseconds for a duration, a count for a size
        ({"CRYOSTORM_OTLP__TIMEOUT_MILLIS": "10s"}, ("CRYOSTORM_OTLP__TIMEOUT_MILLIS", "10s", "Input should be a "
          "valid integer, unable to parse string as an integer", "use a plain number of milliseconds, e.g. 5000")),
        ({"CRYOSTORM_LOGGING__MAX_QUEUE_SIZE": "big"}, ("CRYOSTORM_LOGGING__MAX_QUEUE_SIZE", "big", "Input should be "
          "a valid integer, unable to parse string as an integer", "use a plain number, e.g. 512")),
        ({"CRYOSTORM_TRACING__SAMPLE_RATE": "2"}, ("CRYOSTORM_TRACING__SAMPLE_RATE", "2",
          "Input should be less than or equal to 1", "allowed: <= 1.0")),
        # a validator's message loses pydantic's "Value error, " and quotes the URL without its user:password@
        ({"CRYOSTORM_COLLECTOR": "http://a:b@c:99999"}, ("CRYOSTORM_COLLECTOR", "http://****:****@c:99999",
          "invalid port in 'http://****:****@c:99999'", "")),
        ({"CRYOSTORM_COLLECTOR": "http://a:b@[::1]z:4317"}, ("CRYOSTORM_COLLECTOR", "http://****:****@[::1]z:4317",
          "invalid host in 'http://****:****@[::1]z:4317': an IPv6 address in brackets is followed by ':' and the "
          "port or by nothing, e.g. http://[::1]:4317", "")),
        # a check over a group of values with one input beneath it: named and shown (masked: a password) by it
        ({"CRYOSTORM_COLLECTOR__PASSWORD": "pw"}, ("CRYOSTORM_COLLECTOR__PASSWORD", "****",
          "a password needs a username (user:password@ in the URL)", "")),
    ],
)
def test_each_kind_of_problem_is_worded_exactly(environ: dict[str, str], expected: tuple[str, str, str, str]) -> None:
    assert problems(environ) == [expected]


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("enabled = [1]", ("cryostorm.toml enabled", "[1]", "Input should be a valid boolean", "allowed: true, false")),
        ("enabled = 5", ("cryostorm.toml enabled", "5", "Input should be a valid boolean, unable to interpret input",
                         "allowed: true, false")),
        ("[collector]\nport = 1.5", ("cryostorm.toml collector.port", "1.5", "Input should be a valid integer, "
                                     "got a number with a fractional part", "use a port number, e.g. 4317")),
        # not a number, not a bool: no hint; a value that is not text is shown as written
        ("[service]\nname = 5", ("cryostorm.toml service.name", "5", "Input should be a valid string", "")),
        ("excluded_paths = 5", ("cryostorm.toml excluded_paths", "5", "Input should be a valid list", "")),
        # a header whose value is not text: the value stays masked
        ('[otlp.headers]\n"x-api-key" = 5', ("cryostorm.toml otlp.headers", "****",
                                             "'x-api-key': Input should be a valid string", "")),
    ],
)
def test_config_file_values_of_the_wrong_type_are_worded_exactly(
        tmp_path: Path, toml: str, expected: tuple[str, str, str, str]) -> None:
    assert config_problems(tmp_path, toml) == [expected]


def test_an_attribute_value_that_is_a_list_is_one_problem_per_attribute(tmp_path: Path) -> None:
    # pydantic reports each branch of str | bool | int | float it tried: one problem per attribute, naming it
    # (it was four, "Input should be a valid string/boolean/integer/number", naming none); no value shown
    found = config_problems(tmp_path, '[service.additional_attributes]\nk = ["str", "int"]\nj = [2]')
    assert found == [("cryostorm.toml service.additional_attributes", None,
                      f"{key!r}: must be a string, true/false or a number, got list", "") for key in ("k", "j")]


@pytest.mark.parametrize(
    ("headers", "shown", "message"),
    [
        ("Bearer canary-123", "****", "expected key=value pairs separated by commas, got '****'"),
        # the value is shown with its header names (values masked) and the message says which item is wrong
        ("authorization=Bearer canary-123,oops", "authorization=****,****",
         "expected key=value pairs separated by commas, got '****' (item 2 of 2)"),
        ("oops,authorization=Bearer canary-123", "****,authorization=****",
         "expected key=value pairs separated by commas, got '****' (item 1 of 2)"),
        # the longest piece is masked first: a value inside another is never left half shown
        ("k=zz,abzzc", "k=****,****", "expected key=value pairs separated by commas, got '****' (item 2 of 2)"),
        # header names stay readable; a value is masked wherever it appears, whole (with its own '=')
        ("authorization=a=b,bad name=x", "authorization=****,bad name=****",
         "invalid header name 'bad name': use letters, digits and !#$%&'*+-.^_`|~ only"),
        ("authorization=digits,bad name=x", "authorization=****,bad name=****",
         "invalid header name 'bad name': use letters, **** and !#$%&'*+-.^_`|~ only"),
    ],
)
def test_a_header_problem_never_quotes_a_header_value(headers: str, shown: str, message: str) -> None:
    assert problems({"CRYOSTORM_OTLP__HEADERS": headers}) == [("CRYOSTORM_OTLP__HEADERS", shown, message, "")]



NOT_ASCII = ("the value of header {!r} has a character that is not ASCII (at position {} of {}): header values must "
             "be ASCII (visible characters and spaces) over gRPC and HTTP alike (a %XX escape counts as what it "
             "decodes to); remove the stray character (a typographic quote or a non-breaking space pasted with the "
             "token?)")


@pytest.mark.parametrize(
    ("variable", "written", "header", "secret", "at", "stray"),
    [
        # a typographic apostrophe pasted with the token: gRPC INTERNAL "Invalid metadata", HTTP UnicodeEncodeError
        ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer abc\u2019def", "authorization", "abc\u2019def",
         (11, 14), "\u2019"),
        # percent-encoded (the SDK decodes it): the same character once decoded
        ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-key=abc%E2%9C%93", "x-key", "abc%E2%9C%93", (4, 4), "\u2713"),
        # Latin-1: HTTP would send it, gRPC metadata would not (printable ASCII only): one rule for both
        ("CRYOSTORM_OTLP__HEADERS", '{"x-key": "caf\u00e9-token"}', "x-key", "caf\u00e9-token", (4, 10), "\u00e9"),
        ("CRYOSTORM_LOGGING__HEADERS", "x-key=non\u00a0breaking", "x-key", "non\u00a0breaking", (4, 12), "\u00a0"),
    ],
)
def test_a_header_value_that_is_not_ascii_is_refused_naming_the_header_not_the_value(
        variable: str, written: str, header: str, secret: str, at: tuple[int, int], stray: str) -> None:
    """Before: accepted, then every export failed. Break checked: the check refusing only control characters."""
    [(name, shown, message, _)] = problems({variable: written})
    assert (name, message) == (variable, NOT_ASCII.format(header, *at))
    assert secret not in f"{shown} {message}" and stray not in f"{shown} {message}"
    assert "****" in str(shown)


def test_a_header_value_of_printable_ascii_is_accepted() -> None:
    visible = "".join(chr(c) for c in range(0x21, 0x7F)).replace(",", "")  # every visible character, spaces inside
    settings = load_settings({"CRYOSTORM_OTLP__HEADERS": json.dumps({"x-key": f"a b {visible}"})}).settings
    assert settings.otlp.headers["x-key"].get_secret_value() == f"a b {visible}"

@pytest.mark.parametrize(
    ("name", "value", "hint"),
    [
        ("CRYOSTORM_COLLECTOR__POR", "4317", "did you mean CRYOSTORM_COLLECTOR__PORT?"),  # the 2nd closest is a secret
        ("CRYOSTORM_API_TOKEN", "****", "remove it, or check the spelling"),  # only a loose match (FASTAPI_TELEMETRY)
        ("CRYOSTORM_AUTH_KEY", "****", "remove it, or check the spelling"),
        ("CRYOSTORM_PASSWD", "****", "remove it, or check the spelling"),
        ("CRYOSTORM_SOME_CREDENTIAL", "****", "remove it, or check the spelling"),
        ("CRYOSTORM_SENDHEADER", "****", "did you mean CRYOSTORM_ENABLED?"),
    ],
)
def test_unknown_variables_mask_what_looks_secret_and_suggest_only_a_close_name(name: str, value: str,
                                                                                  hint: str) -> None:
    assert problems({name: "s3cret"}) == [(name, value if value == "****" else "s3cret", "unknown setting", hint)]


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[collector]\npor = 4317", ("cryostorm.toml collector.por", "4317", "unknown setting",
                                     "did you mean collector.port?")),
        ('[otlp]\nhost = "x"', ("cryostorm.toml otlp.host", "x", "unknown setting",
                                "remove it, or check the spelling")),  # otlp.headers is only a loose match
        ('[collector]\nextra_auth = "x"', ("cryostorm.toml collector.extra_auth", "****", "unknown setting",
                                           "did you mean collector.path?")),
    ],
)
def test_unknown_config_file_keys_mask_what_looks_secret(tmp_path: Path, toml: str,
                                                         expected: tuple[str, str, str, str]) -> None:
    assert config_problems(tmp_path, toml) == [expected]


def test_unknown_dotted_assignment_has_no_suggestion() -> None:
    assert problems({}, overrides=[parse_dotted("--set", "tracing.sample_rat=1")]) == [
        ("--set tracing.sample_rat", "1", "unknown setting", "remove it, or check the spelling")]


def test_dotted_assignment_splits_at_the_first_equals_sign() -> None:
    assert parse_dotted("--set", "otlp.headers=authorization=Bearer x") == Override(
        "--set otlp.headers", ("otlp", "headers"), "authorization=Bearer x")
    with pytest.raises(ConfigError) as info:
        parse_dotted("--set", "no-equals-sign")
    [problem] = info.value.problems
    assert (problem.name, problem.value, problem.message, problem.hint) == (
        "--set", "no-equals-sign", "expected KEY=VALUE, e.g. tracing.sample_rate=0.5", "")


@pytest.mark.parametrize(
    ("environ", "name"),
    [({"CRYOSTORM_METRICS__EXPORTER_TYPE": "prometheus"}, "CRYOSTORM_METRICS__EXPORTER_TYPE"),
     ({"CRYOSTORM_EXPORTER_TYPE": "prometheus"}, "CRYOSTORM_EXPORTER_TYPE")],
)
def test_prometheus_without_its_exporter_package_is_refused(
        monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], name: str) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda module, *a: None if module == "opentelemetry.exporter.prometheus" else real(module, *a))
    from importlib.metadata import version

    # the installed SDK kept (pip picks the exporter release made for it), never a version guessed for it
    assert problems(environ) == [(name, "prometheus", "'prometheus' needs a package that is not installed",
                                  "pip install opentelemetry-exporter-prometheus "
                                  f"'opentelemetry-sdk=={version('opentelemetry-sdk')}'")]
    assert load_settings({}).settings.metrics.exporter_type is None  # not wanted, not looked for


def test_prometheus_without_its_package_is_named_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda module, *a: None if module == "opentelemetry.exporter.prometheus" else real(module, *a))
    for environ, overrides, name in (({"OTEL_METRICS_EXPORTER": "prometheus"}, [], "OTEL_METRICS_EXPORTER"),
                                     ({}, [Override("--exporter", ("exporter_type",), "prometheus")], "--exporter")):
        assert [p[0] for p in problems(environ, overrides=overrides)] == [name]


def test_a_package_whose_lookup_fails_counts_as_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    def broken(module: str, *args: object) -> None:
        raise ValueError(f"{module}.__spec__ is None")  # what find_spec raises for a half-imported module

    monkeypatch.setattr(importlib.util, "find_spec", broken)
    assert problems({"OTEL_PROPAGATORS": "b3"}) == [("OTEL_PROPAGATORS", "b3", "'b3' needs a package that is not "
                                                     "installed", "pip install opentelemetry-propagator-b3")]


@pytest.mark.parametrize(("kind", "field", "hint"), [
    ("greater_than", {"gt": 5}, "allowed: > 5"), ("greater_than_equal", {"ge": 5}, "allowed: >= 5"),
    ("less_than", {"lt": 5}, "allowed: < 5"), ("less_than_equal", {"le": 5}, "allowed: <= 5"),
])
def test_every_bound_pydantic_reports_gets_its_hint(kind: str, field: dict[str, int], hint: str) -> None:
    # No setting has an `lt` bound today; the explanation is checked against pydantic's own errors for all four.
    from typing import Annotated

    from pydantic import BaseModel, Field, ValidationError

    from cryostorm_run.config.explain import _explain
    from cryostorm_run.config.sources import Origin

    class Bounded(BaseModel):
        n: Annotated[int, Field(**field)]  # type: ignore[call-overload]

    with pytest.raises(ValidationError) as info:
        Bounded(n=0 if "greater" in kind else 9)
    [err] = info.value.errors(include_url=False)
    assert err["type"] == kind
    explained = _explain(err, {"n": 9}, {("n",): Origin("cryostorm_env", "CRYOSTORM_N")})
    assert (explained.name, explained.value, explained.hint) == ("CRYOSTORM_N", "9", hint)


# -- sources: what each reader makes of its input --------------------------------------------------


def test_every_origin_describes_itself_as_the_user_wrote_it() -> None:
    from cryostorm_run.config.sources import DEFAULT, Origin

    assert Origin("env_file", "OTEL_SERVICE_NAME", "app.env").describe() == "OTEL_SERVICE_NAME in app.env"
    assert Origin("config_file", "tracing.sample_rate", "cryostorm.toml").describe() == \
        "cryostorm.toml tracing.sample_rate"
    assert Origin("otel_file", "resource.attributes", "otel.yaml:3").describe() == "otel.yaml:3 resource.attributes"
    assert Origin("flag", "--service-name").describe() == "--service-name"
    assert Origin("cryostorm_env", "CRYOSTORM_ENABLED").describe() == "CRYOSTORM_ENABLED"
    assert DEFAULT.describe() == "default"


def test_a_problem_is_made_printable_and_short_once() -> None:
    from cryostorm_run.config.sources import Problem, SourceError

    problem = Problem("N" * 300, "v" * 100, "m" * 600, "h" * 600)
    assert problem.name == "N" * 200 + "… (300 chars)"
    assert problem.value == "v" * 60 + "… (100 chars)"
    assert (problem.message, problem.hint) == ("m" * 500 + "… (600 chars)", "h" * 500 + "… (600 chars)")
    assert Problem("A\x1b", None, "m\x07").name == "A\\x1b" and Problem("A", None, "m\x07").value is None
    assert Problem("A", None, "m\x07").message == "m\\x07"
    error = SourceError([Problem("A", None, "first"), Problem("B", "x", "second")])
    assert str(error) == "A: first; B: second" and [p.name for p in error.problems] == ["A", "B"]


def test_what_counts_as_a_secret() -> None:
    from cryostorm_run.config.sources import is_secret_name, is_secret_path, mask

    assert all(is_secret_name(n) for n in ("otel_exporter_otlp_headers", "CRYOSTORM_COLLECTOR__PASSWORD",
                                           "CRYOSTORM_OTLP__HEADERS__AUTHORIZATION", "MY_TOKEN_FILE", "A_SECRET_B"))
    assert not any(is_secret_name(n) for n in ("CRYOSTORM_PASSWORD_FILE", "HEADER", "CRYOSTORM_COLLECTOR"))
    assert is_secret_path(("otlp", "headers")) and is_secret_path(("collector", "password"))
    assert not is_secret_path(("collector", "username"))
    assert (mask("x"), mask(0), mask(""), mask(None)) == ("****", "****", "", "")


def test_cryostorm_variables_are_read_whatever_their_case_but_not_the_launchers_own(tmp_path: Path) -> None:
    loaded = load_settings({"cryostorm_service__name": "low", "CRYOSTORM_": "x", "cryostorm_plan_cache": "1"})
    assert loaded.settings.service.name == "low"
    assert loaded.origin(("service", "name")).describe() == "cryostorm_service__name"
    # the plan cache variable is the launcher's, in the environment only: in an env file it is a setting
    path = env_file(tmp_path, "CRYOSTORM_PLAN_CACHE=1\n")
    assert problems({}, env_file=path) == [
        (f"CRYOSTORM_PLAN_CACHE in {path}", "1", "unknown setting", "remove it, or check the spelling")]


def test_env_file_problems_are_worded_exactly(tmp_path: Path) -> None:
    missing = tmp_path / "missing.env"
    assert problems({}, env_file=missing) == [("--env-file", str(missing), "no such file", "check the path")]
    undecodable = tmp_path / "latin1.env"
    undecodable.write_bytes(b"OTEL_SERVICE_NAME=\xff\n")
    [(name, value, message, hint)] = problems({}, env_file=undecodable)
    assert (name, value, hint) == ("--env-file", str(undecodable), "")
    assert message.startswith("cannot read: 'utf-8' codec can't decode byte 0xff")
    too_long = tmp_path / ("x" * 300)
    [(name, _, message, _)] = problems({}, env_file=too_long)
    assert (name, message) == ("--env-file", "cannot use this path: File name too long")
    path = env_file(tmp_path, "OTEL_CONFIG_FILE=otel.yaml\n")
    assert problems({}, env_file=path) == [(f"OTEL_CONFIG_FILE in {path}", "otel.yaml",
                                            "an env file cannot name the OpenTelemetry configuration file",
                                            "set OTEL_CONFIG_FILE in the environment or use --config-file")]


def test_env_file_lines_without_a_value_are_unset(tmp_path: Path) -> None:
    path = env_file(tmp_path, "OTEL_CONFIG_FILE=  \nOTEL_EXPORTER_OTLP_TRACES_ENDPOINT\nCRYOSTORM_SERVICE__NAME=svc\n")
    loaded = load_settings({}, env_file=path)
    assert loaded.settings.tracing.collector is None and loaded.settings.service.name == "svc"


def test_a_whole_value_set_above_replaces_the_parts_set_below(tmp_path: Path) -> None:
    path = env_file(tmp_path, "CRYOSTORM_COLLECTOR__PORT=1\n")
    loaded = load_settings({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}, env_file=path)
    assert (loaded.settings.collector.host, loaded.settings.collector.port) == ("c", 4317)
    assert loaded.origin(("collector", "port")).describe() == "OTEL_EXPORTER_OTLP_ENDPOINT"
    # and a part set above a whole value merges into it, each keeping its origin
    loaded = load_settings({"CRYOSTORM_SERVICE__ADDITIONAL_ATTRIBUTES": "a=1",
                            "CRYOSTORM_SERVICE__ADDITIONAL_ATTRIBUTES__B": "2", "OTEL_RESOURCE_ATTRIBUTES": "c=3"})
    assert loaded.settings.service.additional_attributes == {"a": "1", "b": "2"}
    assert loaded.origin(("service", "additional_attributes", "b")).describe() == \
        "CRYOSTORM_SERVICE__ADDITIONAL_ATTRIBUTES__B"
    assert loaded.origin(("service", "additional_attributes", "a")).describe() == \
        "CRYOSTORM_SERVICE__ADDITIONAL_ATTRIBUTES"


OTEL_FILE = """\
file_format: "1.1"
resource:
  attributes:
    - name: service.name
      value: ${SVC:-from-file}
tracer_provider:
  processors:
    - batch:
        exporter:
          otlp_grpc:
            endpoint: http://collector:4317
"""


def test_an_opentelemetry_configuration_file_decides_the_opentelemetry_settings(tmp_path: Path) -> None:
    path = tmp_path / "otel.yaml"
    path.write_text(OTEL_FILE)
    loaded = load_settings({"OTEL_SERVICE_NAME": "env-name", "SVC": "substituted", "OTEL_CONFIG_FILE": "other.yaml",
                            "CRYOSTORM_LOGGING__LEVEL": "debug"}, otel_config=path, config_dir=None)
    s = loaded.settings
    assert (s.service.name, s.tracing.exporter_type, s.logging.level.value) == ("substituted", ExporterType.OTLP,
                                                                                 "DEBUG")
    assert s.tracing.collector is not None and s.tracing.collector.base_url(OtlpProtocol.GRPC) == \
        "http://collector:4317"
    assert loaded.origin(("service", "name")).describe() == f"{path}:4 resource.attributes[0]"
    assert [(w.code, w.message) for w in loaded.warnings] == [
        ("ineffective-with-config-file", f"OTEL_CONFIG_FILE=other.yaml has no effect: --config-file {path} names "
                                         "the file"),
        ("ineffective-with-config-file", f"OTEL_SERVICE_NAME has no effect: the OpenTelemetry configuration file "
                                         f"{path} decides service.name (with a configuration file, the other sources "
                                         "of OpenTelemetry settings are ignored, as the specification says)")]
    # named by OTEL_CONFIG_FILE alone: the same file, nothing ineffective
    loaded = load_settings({"OTEL_CONFIG_FILE": str(path)}, config_dir=None)
    assert (loaded.settings.service.name, loaded.warnings) == ("from-file", ())


def test_problems_of_every_source_are_reported_together(tmp_path: Path) -> None:
    (tmp_path / "cryostorm.toml").write_text("[tracing]\nsample_rate = [")
    bad_otel = tmp_path / "otel.yaml"
    bad_otel.write_text('file_format: "1.1"\nlog_level: debug\n')
    found = problems({"OTEL_SDK_DISABLED": "yes"}, config_dir=tmp_path, env_file=tmp_path / "missing.env",
                     otel_config=bad_otel)
    assert [name for name, _, _, _ in found] == [
        "cryostorm.toml", "--env-file", "OTEL_SDK_DISABLED", f"{bad_otel}:2 log_level"]


def test_the_config_file_and_the_env_file_each_set_their_own_settings(tmp_path: Path) -> None:
    (tmp_path / "cryostorm.toml").write_text("[service]\nversion = \"9.9\"\n")
    loaded = load_settings({}, config_dir=tmp_path, env_file=env_file(tmp_path, "CRYOSTORM_SERVICE__NAME=file\n"))
    assert (loaded.settings.service.name, loaded.settings.service.version) == ("file", "9.9")


def test_the_launchers_own_variable_is_passed_over_wherever_it_comes(tmp_path: Path) -> None:
    from cryostorm_run.common.shown import printable

    loaded = load_settings({"CRYOSTORM_PLAN_CACHE": "/tmp/x", "CRYOSTORM_SERVICE__NAME": "after"})
    assert loaded.settings.service.name == "after"
    too_long = tmp_path / ("y" * 300)
    assert problems({}, env_file=too_long) == [
        ("--env-file", printable(str(too_long)), "cannot use this path: File name too long", "")]


@pytest.mark.parametrize(("module", "examples"), [("shown", 2), ("words", 1), ("runtime", 1)])
def test_the_shown_values_docstring_examples_run(module: str, examples: int) -> None:
    # Masking, shortening and counting as the stderr lines show them ("1 span", never "1 spans").
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(f"cryostorm_run.common.{module}"))
    assert (result.attempted, result.failed) == (examples, 0)


def test_each_value_records_the_kind_of_source_it_came_from(tmp_path: Path) -> None:
    path = env_file(tmp_path, "CRYOSTORM_SERVICE__VERSION=2\n")
    loaded = load_settings({"OTEL_SERVICE_NAME": "x", "CRYOSTORM_ENABLED": "true"}, env_file=path,
                           overrides=[Override("--exporter", ("exporter_type",), "console")])
    kinds = {p: (o.kind, o.name, o.file) for p, o in loaded.origins.items()}
    assert kinds == {("service", "name"): ("otel_env", "OTEL_SERVICE_NAME", None),
                     ("enabled",): ("cryostorm_env", "CRYOSTORM_ENABLED", None),
                     ("service", "version"): ("env_file", "CRYOSTORM_SERVICE__VERSION", str(path)),
                     ("exporter_type",): ("flag", "--exporter", None)}


def test_the_files_limits_replace_the_programs_variables(tmp_path: Path) -> None:
    path = tmp_path / "limits.yaml"
    path.write_text('file_format: "1.1"\nattribute_limits:\n  attribute_count_limit: 64\n')
    loaded = load_settings({"OTEL_ATTRIBUTE_COUNT_LIMIT": "10"}, otel_config=path, config_dir=None)
    assert loaded.dropped_env == frozenset({"OTEL_ATTRIBUTE_COUNT_LIMIT"})
    assert {name: (value, origin.describe()) for name, (value, origin) in loaded.file_env.items()} == {
        "OTEL_ATTRIBUTE_COUNT_LIMIT": ("64", f"{path}:3 attribute_limits.attribute_count_limit")}


def test_a_source_problem_and_a_validation_problem_are_reported_together(tmp_path: Path) -> None:
    (tmp_path / "cryostorm.toml").write_text("[tracing]\nsample_rate = [")
    found = problems({"CRYOSTORM_TRACING__SAMPLE_RATE": "2"}, config_dir=tmp_path)
    assert [name for name, _, _, _ in found] == ["cryostorm.toml", "CRYOSTORM_TRACING__SAMPLE_RATE"]


def test_attributes_from_the_config_file_and_the_environment_are_merged(tmp_path: Path) -> None:
    (tmp_path / "cryostorm.toml").write_text('[service.additional_attributes]\nteam = "core"\n')
    loaded = load_settings({"OTEL_RESOURCE_ATTRIBUTES": "region=eu"}, config_dir=tmp_path)
    assert loaded.settings.service.additional_attributes == {"team": "core", "region": "eu"}


@pytest.mark.parametrize(("lower", "name", "value", "reason"), [
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:99999"}, "OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:99999",
     "invalid port"),
    ({"CRYOSTORM_COLLECTOR": "http://c:99999"}, "CRYOSTORM_COLLECTOR", "http://c:99999", "invalid port"),
])
def test_a_bad_value_under_a_nested_override_is_refused_not_dropped(
        lower: dict[str, str], name: str, value: str, reason: str) -> None:
    # The port set over it must not make the bad URL (and its host) vanish: the collector would
    # silently become localhost:4317.
    with pytest.raises(ConfigError) as caught:
        load_settings({**lower, "CRYOSTORM_COLLECTOR__PORT": "4317"}, config_dir=None)
    (problem,) = caught.value.problems
    assert (problem.name, problem.value) == (name, value)
    assert reason in problem.message
    # a good URL under the same override keeps its host
    s = load_settings({name: "http://c:4318", "CRYOSTORM_COLLECTOR__PORT": "4317"}, config_dir=None).settings
    assert (s.collector.host, s.collector.port) == ("c", 4317)


@pytest.mark.parametrize("bad_otel", ["OTEL_EXPORTER_OTLP_TIMEOUT=x", "OTEL_SDK_DISABLED=maybe",
                                      "OTEL_RESOURCE_ATTRIBUTES=%%zz", "OTEL_TRACES_EXPORTER=a,none"])
def test_a_variable_that_cannot_be_read_hides_no_other_problem(tmp_path: Path, bad_otel: str) -> None:
    # One OTEL_* value that could not be converted used to drop every environment setting, so a bad
    # CRYOSTORM_* value (or a bad OTEL_* value the model checks) was reported only once that one was fixed.
    name, _, value = bad_otel.partition("=")
    environ = {name: value, "CRYOSTORM_TRACING__SAMPLE_RATE": "7", "OTEL_BSP_MAX_QUEUE_SIZE": "0"}
    assert [p[0] for p in problems(environ)] == [name, "CRYOSTORM_TRACING__SAMPLE_RATE", "OTEL_BSP_MAX_QUEUE_SIZE"]
    # the same in an env file (its settings still validated, and the environment's)
    path = env_file(tmp_path, f"{bad_otel}\nCRYOSTORM_OTLP__TIMEOUT_MILLIS=-1\n")
    found = [p[0] for p in problems({"CRYOSTORM_TRACING__SAMPLE_RATE": "7"}, env_file=path)]
    assert found[0] == f"{name} in {path}" and len(found) == 3, found
    assert "CRYOSTORM_TRACING__SAMPLE_RATE" in found and f"CRYOSTORM_OTLP__TIMEOUT_MILLIS in {path}" in found
    # what could be read is still used: a valid configuration otherwise loads as before
    assert load_settings({"CRYOSTORM_TRACING__SAMPLE_RATE": "0.5"}).settings.tracing.sample_rate == 0.5


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        # the value as the user wrote it, and which item of a list is not allowed (was "['tracecontext', 'foo']")
        ({"OTEL_PROPAGATORS": "tracecontext,foo"}, ("OTEL_PROPAGATORS", "tracecontext,foo",
                                                    "not an allowed value: 'foo'",
                                                    "allowed: tracecontext, baggage, b3, b3multi or jaeger")),
        # a converted value is said as read (was shown as '-1000', a value nobody wrote)
        ({"OTEL_EXPORTER_OTLP_TIMEOUT": "-1"}, ("OTEL_EXPORTER_OTLP_TIMEOUT", "-1",
                                                "Input should be greater than 0 (read as -1000)", "allowed: > 0")),
        ({"OTEL_RESOURCE_ATTRIBUTES": "team=a,deployment.environment.name=prod"},
         ("OTEL_RESOURCE_ATTRIBUTES", "team=a,deployment.environment.name=prod", "not an allowed value: 'prod'",
          "allowed: development, staging or production")),
        # a check over a group with one input beneath it shows that input (was no value)
        ({"CRYOSTORM_COLLECTOR__HOST": "http://x"}, ("CRYOSTORM_COLLECTOR__HOST", "http://x",
                                                     "invalid host 'http://x': use a host name or IP address, "
                                                     "without scheme or port", "")),
        # a group given one value: which settings it holds, no model class name (was "instance of TracingConfig")
        ({"CRYOSTORM_TRACING": "1"}, ("CRYOSTORM_TRACING", "1", "tracing is a group of settings, not one value",
                                      "set the ones you mean: tracing.enabled, tracing.exporter_type, "
                                      "tracing.also_export_to, ...")),
    ],
)
def test_a_problem_shows_the_value_as_written_and_names_what_is_wrong(environ: dict[str, str],
                                                                       expected: tuple[str, str, str, str]) -> None:
    assert problems(environ) == [expected]


@pytest.mark.parametrize("name", ["CRYOSTORM_SERVICE__NAME", "CRYOSTORM_SERVICE__VERSION"])
def test_a_blank_service_name_or_version_is_refused(name: str) -> None:
    assert problems({name: "   "}) == [(name, "   ", "must not be blank: use a name, e.g. checkout", "")]
