"""The OpenTelemetry configuration file (OTEL_CONFIG_FILE / --config-file) through the real launcher:
a valid file exports to the real receiver, a broken one is refused naming its line and path before
anything starts, inputs the file makes ineffective are reported, secrets in the file stay masked."""

from __future__ import annotations

import json
import socket
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PYTHON, ROOT, run_launcher
from otlp_receiver import Receiver

from cryostorm_run.config.loading import ConfigError, load_settings

APP = str(ROOT / "tests" / "apps" / "rel_emit.py")  # 3 spans, a metric, a log record
SECRET = "Bearer file-sekret-42"


def valid_file(rcv: Receiver) -> str:
    return textwrap.dedent(f"""\
        file_format: "1.1"
        resource:
          attributes:
            - name: service.name
              value: ${{CFG_TEST_SERVICE:-from-the-file}}
            - name: team
              value: core
        tracer_provider:
          processors:
            - batch:
                schedule_delay: 100
                exporter:
                  otlp_http:
                    endpoint: http://127.0.0.1:{rcv.http_port}/v1/traces
                    headers:
                      - name: authorization
                        value: "{SECRET}"
        meter_provider:
          readers:
            - periodic:
                interval: 60000
                exporter:
                  otlp_grpc:
                    endpoint: http://127.0.0.1:{rcv.grpc_port}
        logger_provider:
          processors:
            - simple:
                exporter:
                  otlp_grpc:
                    endpoint: http://127.0.0.1:{rcv.grpc_port}
        propagator:
          composite:
            - tracecontext:
            - baggage:
        """)


@pytest.fixture
def rcv() -> Iterator[Receiver]:
    with Receiver() as receiver:
        yield receiver


def write(tmp_path: Path, text: str, name: str = "otel.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_a_program_configured_only_by_the_file_exports_to_the_receiver(rcv: Receiver, tmp_path: Path) -> None:
    config = write(tmp_path, valid_file(rcv))
    result = run_launcher(["--", PYTHON, APP, "3"], {"OTEL_CONFIG_FILE": str(config)}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    spans = rcv.spans()
    assert sorted(s.name for s in spans) == ["rel-0", "rel-1", "rel-2"]
    assert {s.resource["service.name"] for s in spans} == {"from-the-file"}  # ${VAR:-default}
    assert {s.resource["team"] for s in spans} == {"core"}
    assert {r.headers.get("authorization") for r in rcv.requests() if r.signal == "traces"} == {SECRET}
    assert {r.transport for r in rcv.requests()} == {"http", "grpc"}  # traces over HTTP, the rest over gRPC
    assert "rel.count" in {m.name for m in rcv.metrics()}
    assert [log.body for log in rcv.logs()] == ["done emitting"]
    assert SECRET not in result.stderr + result.stdout


def test_substitution_takes_the_variable_and_the_flag_names_the_file(rcv: Receiver, tmp_path: Path) -> None:
    config = write(tmp_path, valid_file(rcv))
    result = run_launcher(["--config-file", str(config), "--", PYTHON, APP, "1"],
                          {"CFG_TEST_SERVICE": "from-the-environment", "OTEL_CONFIG_FILE": "other.yaml"}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert {s.resource["service.name"] for s in rcv.spans()} == {"from-the-environment"}
    assert f"OTEL_CONFIG_FILE=other.yaml has no effect: --config-file {config} names the file" in result.stderr


def test_inputs_the_file_makes_ineffective_are_reported_and_do_nothing(rcv: Receiver, tmp_path: Path) -> None:
    config = write(tmp_path, valid_file(rcv))
    env = {"OTEL_CONFIG_FILE": str(config), "OTEL_SERVICE_NAME": "ignored", "CRYOSTORM_TRACING__SAMPLE_RATE": "0",
           "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "1"}
    result = run_launcher(["--exporter", "console", "--", PYTHON, APP, "1"], env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for name in ("OTEL_SERVICE_NAME", "CRYOSTORM_TRACING__SAMPLE_RATE", "--exporter",
                 "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT"):
        assert f"cryostorm: warning: {name} has no effect: the OpenTelemetry configuration file" in result.stderr
    assert {s.resource["service.name"] for s in rcv.spans()} == {"from-the-file"}  # the file's, exported OTLP
    strict = run_launcher(["check-config", "--strict"], env, cwd=tmp_path)
    assert strict.returncode == 2 and "OTEL_SERVICE_NAME has no effect" in strict.stderr


def test_check_config_and_print_env_show_what_the_file_decided(rcv: Receiver, tmp_path: Path) -> None:
    config = write(tmp_path, valid_file(rcv))
    env = {"OTEL_CONFIG_FILE": str(config)}
    checked = run_launcher(["check-config", "--json"], env, cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    rows = {r["setting"]: r for r in json.loads(checked.stdout)["settings"]}
    assert rows["service.name"]["value"] == "from-the-file"
    assert rows["service.name"]["source"] == f"{config}:4 resource.attributes[0]"
    assert rows["tracing.export_config.schedule_delay_millis"]["source"] == (
        f"{config}:11 tracer_provider.processors[0].batch.schedule_delay")
    assert rows["tracing.headers.authorization"]["value"] == "****"
    assert rows["logging.processor_type"] == {"setting": "logging.processor_type", "value": "simple",
                                              "source": f"{config}:27 logger_provider.processors[0].simple"}
    printed = run_launcher(["print-env", "--format", "json"], env, cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    variables = json.loads(printed.stdout)
    assert variables["OTEL_SERVICE_NAME"] == "from-the-file"
    assert variables["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] == "http/protobuf"
    assert variables["OTEL_EXPORTER_OTLP_TRACES_HEADERS"] == "****"
    shell = run_launcher(["print-env"], env, cwd=tmp_path)
    assert f"{config}:11 tracer_provider.processors[0].batch.schedule_delay" in shell.stdout
    for output in (checked, printed, shell):
        assert SECRET not in output.stdout + output.stderr
        assert "file-sekret" not in output.stdout + output.stderr


BROKEN = {
    "schema violation": ("""\
        file_format: "1.1"
        tracer_provider:
          processors:
            - batch:
                schedule_delay: 100
        """, ":4 tracer_provider.processors[0].batch", "'exporter' is a required property"),
    "wrong type": ("""\
        file_format: "1.1"
        tracer_provider:
          processors:
            - batch:
                schedule_delay: soon
                exporter:
                  console:
        """, ":5 tracer_provider.processors[0].batch.schedule_delay", "'soon' is not of type 'integer', 'null'"),
    "bad YAML": ("""\
        file_format: "1.1"
        tracer_provider:
          processors: [
            - batch:
        """, "otel.yaml:4", "invalid YAML"),
    "unknown exporter": ("""\
        file_format: "1.1"
        tracer_provider:
          processors:
            - batch:
                exporter:
                  zipkin:
                    endpoint: http://zipkin:9411
        """, ":6 tracer_provider.processors[0].batch.exporter.zipkin", "exporter 'zipkin'"),
    "bad substitution": ("""\
        file_format: "1.1"
        resource:
          attributes:
            - name: service.name
              value: ${NOT A NAME}
        """, ":5 resource.attributes[0].value", "invalid substitution"),
    "unsupported major version": ('file_format: "2.0"\n', ":1 file_format", "not supported"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_a_broken_file_is_refused_with_its_line_and_nothing_starts(tmp_path: Path, case: str) -> None:
    text, where, message = BROKEN[case]
    config = write(tmp_path, text)
    marker = tmp_path / "started"
    result = run_launcher(["--", PYTHON, "-c", f"open({str(marker)!r}, 'w')"], {"OTEL_CONFIG_FILE": str(config)},
                          cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert not marker.exists()
    assert where in result.stderr and message in result.stderr, result.stderr
    checked = run_launcher(["check-config"], {"OTEL_CONFIG_FILE": str(config)}, cwd=tmp_path)
    assert checked.returncode == 2 and where in checked.stderr


def test_what_cryostorm_cannot_honour_is_refused_not_ignored(tmp_path: Path) -> None:
    config = write(tmp_path, """\
        file_format: "1.1"
        log_level: debug
        tracer_provider:
          processors:
            - simple:
                exporter:
                  otlp_grpc:
            - batch:
                exporter:
                  otlp_http:
          sampler:
            parent_based:
              remote_parent_sampled:
                always_off:
        meter_provider:
          readers:
            - periodic:
                exporter:
                  console:
          views:
            - selector:
                instrument_name: x
              stream:
                aggregation:
                  drop:
        """)
    with pytest.raises(ConfigError) as caught:
        load_settings({"OTEL_CONFIG_FILE": str(config)}, config_dir=None)
    names = [p.name for p in caught.value.problems]
    assert names == [f"{config}:2 log_level", f"{config}:8 tracer_provider.processors[1]",
                     f"{config}:13 tracer_provider.sampler.parent_based.remote_parent_sampled",
                     f"{config}:20 meter_provider.views"]
    assert all(p.message.startswith("not supported by cryostorm-run") for p in caught.value.problems)


def test_a_zero_the_schema_allows_but_cryostorm_cannot_honour_is_refused_with_what_to_write(tmp_path: Path) -> None:
    # Each was refused as if the file were invalid ("Input should be greater than 0"): the schema allows 0
    # (for a timeout: no limit), so the refusal says what 0 means there and what to write instead.
    config = write(tmp_path, """\
        file_format: "1.1"
        tracer_provider:
          processors:
            - batch:
                schedule_delay: 0
                export_timeout: 0
                exporter:
                  otlp_grpc:
                    endpoint: http://collector:4317
                    timeout: 0
        meter_provider:
          readers:
            - periodic:
                interval: 0
                exporter:
                  console:
        """)
    with pytest.raises(ConfigError) as caught:
        load_settings({"OTEL_CONFIG_FILE": str(config)}, config_dir=None)
    found = {p.name.split(" ", 1)[1]: (p.message, p.hint) for p in caught.value.problems}
    batch = "tracer_provider.processors[0].batch"
    assert sorted(found) == sorted([f"{batch}.schedule_delay", f"{batch}.export_timeout",
                                    f"{batch}.exporter.otlp_grpc.timeout",
                                    "meter_provider.readers[0].periodic.interval"])
    assert found[f"{batch}.exporter.otlp_grpc.timeout"] == (
        "not supported by cryostorm-run: timeout 0 (no limit): cryostorm bounds every export, so that a collector "
        "that never answers cannot hold the queue or the exit", "give a limit in milliseconds, e.g. 10000")
    assert all(m.startswith("not supported by cryostorm-run: ") and "in milliseconds" in h for m, h in found.values())


def test_an_omitted_batch_setting_is_the_schemas_own_default_for_that_signal(tmp_path: Path) -> None:
    # A logger provider's omitted schedule_delay was given the span processor's 5000 and labelled "the spec's
    # default"; the schema says 1000 for log records. The oracle: the vendored schema's own words.
    import re

    from cryostorm_run.config.otelspec import BATCH_DEFAULTS

    schema = json.loads((ROOT / "cryostorm_run" / "config" / "otel_configuration_schema.json").read_text())
    for signal, definition in (("tracing", "BatchSpanProcessor"), ("logging", "BatchLogRecordProcessor")):
        properties = schema["$defs"][definition]["properties"]
        said = {key: int(re.search(r"If omitted or null, (\d+) is used", properties[key]["description"]).group(1))
                for key in BATCH_DEFAULTS[signal]}
        assert said == BATCH_DEFAULTS[signal], definition
    config = write(tmp_path, """\
        file_format: "1.1"
        tracer_provider:
          processors:
            - batch:
                exporter:
                  console:
        logger_provider:
          processors:
            - batch:
                exporter:
                  console:
        """)
    loaded = load_settings({"OTEL_CONFIG_FILE": str(config)}, config_dir=None)
    assert loaded.settings.tracing.export_config.schedule_delay_millis == 5000
    assert loaded.settings.logging.export_config.schedule_delay_millis == 1000
    assert "(omitted: 1000, the spec's default)" in loaded.origin(("logging", "export_config",
                                                                   "schedule_delay_millis")).describe()


def test_typed_resource_attributes_arrive_with_their_type(rcv: Receiver, tmp_path: Path) -> None:
    # They arrived as strings ('7', '0.5', 'true'): OTEL_RESOURCE_ATTRIBUTES holds text only.
    config = write(tmp_path, f"""\
        file_format: "1.1"
        resource:
          attributes:
            - {{name: service.name, value: typed}}
            - {{name: team.size, value: 7, type: int}}
            - {{name: ratio, value: 1, type: double}}
            - {{name: flag, value: true, type: bool}}
            - {{name: untyped, value: 7}}
            - {{name: as.text, value: false, type: string}}
        tracer_provider:
          processors:
            - simple:
                exporter:
                  otlp_grpc:
                    endpoint: {rcv.grpc_endpoint}
        """)
    result = run_launcher(["--", PYTHON, APP, "1"], {"OTEL_CONFIG_FILE": str(config)}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (span,) = rcv.wait_for_spans(1, timeout=20)
    shown = {key: span.resource[key] for key in ("team.size", "ratio", "flag", "untyped", "as.text")}
    assert shown == {"team.size": 7, "ratio": 1.0, "flag": True, "untyped": "7", "as.text": "false"}
    assert [type(v) for v in shown.values()] == [int, float, bool, str, str]
    wrong = write(tmp_path, 'file_format: "1.1"\nresource:\n  attributes:\n    - {name: n, value: x, type: int}\n',
                  "wrong.yaml")
    with pytest.raises(ConfigError) as caught:
        load_settings({"OTEL_CONFIG_FILE": str(wrong)}, config_dir=None)
    assert [(p.name, p.message) for p in caught.value.problems] == [
        (f"{wrong}:4 resource.attributes[0].value", "the value 'x' is not of its type int")]


def test_a_newer_format_minor_is_read_with_a_warning_of_its_own(tmp_path: Path) -> None:
    # It was told under the code "ineffective-with-config-file", which is about other inputs the file overrides.
    config = write(tmp_path, 'file_format: "1.2"\n')
    loaded = load_settings({"OTEL_CONFIG_FILE": str(config), "OTEL_SERVICE_NAME": "env"}, config_dir=None)
    codes = {w.code: w.message for w in loaded.warnings}
    assert codes["config-file-format-newer"] == (
        f"{config}:1 file_format: file format 1.2 is newer than the schema cryostorm-run validates against (1.1); "
        "a setting it does not know is refused, not ignored")
    assert codes["ineffective-with-config-file"].startswith("OTEL_SERVICE_NAME has no effect")


def test_a_long_value_in_a_schema_error_is_shortened_and_escaped(tmp_path: Path) -> None:
    config = write(tmp_path, f"""\
        file_format: "1.1"
        tracer_provider:
          processors:
            - batch:
                schedule_delay: "\\e[31m{'x' * 200}"
                exporter:
                  console:
        """)
    with pytest.raises(ConfigError) as caught:
        load_settings({"OTEL_CONFIG_FILE": str(config)}, config_dir=None)
    (problem,) = caught.value.problems
    assert problem.message.startswith("does not match the configuration schema: '\\x1b[31mxxx"), problem.message
    assert "… (205 chars)' is not of type" in problem.message and "x" * 100 not in problem.message


@pytest.mark.parametrize("headers", [f'[{{name: authorization, value: "{SECRET}"}}]',
                                     f'{{authorization: "{SECRET}"}}',  # a mapping: the schema error quotes it
                                     f'"authorization={SECRET}"'])
def test_secrets_in_a_broken_file_stay_masked(tmp_path: Path, headers: str) -> None:
    config = write(tmp_path, f"""\
        file_format: "1.1"
        tracer_provider:
          processors:
            - batch:
                exporter:
                  otlp_grpc:
                    endpoint: http://user:pw-sekret@collector:4317
                    headers: {headers}
                    timeout: forever
        """)
    result = run_launcher(["check-config"], {"OTEL_CONFIG_FILE": str(config)}, cwd=tmp_path)
    assert result.returncode == 2 and ":9 tracer_provider.processors[0].batch.exporter.otlp_grpc.timeout" \
        in result.stderr, result.stderr
    assert "file-sekret" not in result.stderr and "pw-sekret" not in result.stderr


def test_the_other_file_kinds_are_told_apart(tmp_path: Path) -> None:
    toml = write(tmp_path, "[tool.cryostorm]\n", "cryostorm.toml")
    result = run_launcher(["--config-file", str(toml), "--", "true"], cwd=tmp_path / "..")
    assert result.returncode == 2 and "cryostorm's own settings file" in result.stderr
    env_file = write(tmp_path, f"OTEL_CONFIG_FILE={tmp_path / 'otel.yaml'}\n", "app.env")
    result = run_launcher(["--env-file", str(env_file), "--", "true"], cwd=tmp_path)
    assert result.returncode == 2 and "an env file cannot name the OpenTelemetry configuration file" in result.stderr


def test_the_files_limits_reach_the_programs_sdk(rcv: Receiver, tmp_path: Path) -> None:
    config = write(tmp_path, f"""\
        file_format: "1.1"
        attribute_limits:
          attribute_value_length_limit: 4
        tracer_provider:
          limits:
            attribute_count_limit: 2
          processors:
            - simple:
                exporter:
                  otlp_grpc:
                    endpoint: http://127.0.0.1:{rcv.grpc_port}
        """)
    program = ("from opentelemetry import trace\n"
               "with trace.get_tracer('t').start_as_current_span('limited') as span:\n"
               "    span.set_attributes({'a': 'x', 'b': 'y', 'c': 'long value'})\n"
               "    span.add_event('kept')\n")
    # Replaced by the file even where it sets nothing: the SDK's default (128 events), not 0.
    env = {"OTEL_CONFIG_FILE": str(config), "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "100",
           "OTEL_SPAN_EVENT_COUNT_LIMIT": "0"}
    result = run_launcher(["--", PYTHON, "-c", program], env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (span,) = rcv.spans()
    assert span.attributes == {"b": "y", "c": "long"}  # the file's limits (oldest dropped), not the variable
    assert [name for name, _ in span.events] == ["kept"]
    assert "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT has no effect" in result.stderr
    assert "OTEL_SPAN_EVENT_COUNT_LIMIT has no effect" in result.stderr
    printed = run_launcher(["print-env"], env, cwd=tmp_path)
    assert f"# from {config}:6 tracer_provider.limits.attribute_count_limit\nexport OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT=2" \
        in printed.stdout, printed.stdout


def test_without_the_reading_libraries_the_file_is_refused_with_the_pip_command(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write(tmp_path, 'file_format: "1.1"\n')
    monkeypatch.setitem(sys.modules, "yaml", None)  # import yaml raises ImportError
    with pytest.raises(ConfigError) as caught:
        load_settings({"OTEL_CONFIG_FILE": str(config)}, config_dir=None)
    (problem,) = caught.value.problems
    assert problem.name == f"OTEL_CONFIG_FILE {config}" and "pip install 'cryostorm-run[config-file]'" in problem.hint


def test_the_readme_example_is_valid_and_a_lone_reference_is_typed(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("```yaml", readme.index("### The OpenTelemetry configuration file")) + len("```yaml\n")
    example = write(tmp_path, readme[start:readme.index("```", start)])
    loaded = load_settings({"OTEL_CONFIG_FILE": str(example), "API_TOKEN": "t"}, config_dir=None)
    assert loaded.settings.service.name == "checkout"
    assert loaded.settings.tracing.headers["authorization"].get_secret_value() == "t"
    typed = write(tmp_path, """\
        file_format: "1.1"
        tracer_provider:
          processors:
            - batch:
                schedule_delay: ${DELAY}
                exporter:
                  console:
        """, "typed.yaml")
    loaded = load_settings({"OTEL_CONFIG_FILE": str(typed), "DELAY": "250"}, config_dir=None)
    assert loaded.settings.tracing.export_config.schedule_delay_millis == 250


def test_a_json_file_with_tabs_is_read_with_its_lines_and_the_program_never_sees_the_variable(
        tmp_path: Path) -> None:
    from cryostorm_run.launch.plan import plan_launch

    config = write(tmp_path, '{\n\t"file_format": "1.1",\n\t"tracer_provider": {"processors": [\n'
                   '\t\t{"simple": {"exporter": {"console": {}}}}]}\n}\n', "otel.json")
    environ = {"OTEL_CONFIG_FILE": str(config), "PATH": "/usr/bin:/bin"}
    loaded = load_settings(environ, config_dir=None)
    assert loaded.origin(("tracing", "processor_type")).describe() == f"{config}:4 tracer_provider.processors[0].simple"
    assert "OTEL_CONFIG_FILE" not in plan_launch(loaded.settings, ["true"], environ).env
    broken = write(tmp_path, '{\n\t"file_format": "1.1",\n}\n', "broken.json")
    with pytest.raises(ConfigError, match="invalid JSON") as caught:
        load_settings({"OTEL_CONFIG_FILE": str(broken)}, config_dir=None)
    # the line Python's json names: the trailing comma's from 3.13 on, where the object ends before
    assert caught.value.problems[0].name == f"{broken}:{2 if sys.version_info >= (3, 13) else 3}"


def test_a_file_configured_program_keeps_the_bounded_exit_and_the_loss_report(tmp_path: Path) -> None:
    # cryostorm's own providers run it: the exit flush gives up at shutdown_timeout_millis (a cryostorm
    # setting the file leaves alone) and says what was lost, as without a file.
    config = write(tmp_path, """\
        file_format: "1.1"
        tracer_provider:
          processors:
            - batch:
                exporter:
                  otlp_grpc:
                    endpoint: http://127.0.0.1:9
        """)
    env = {"OTEL_CONFIG_FILE": str(config), "CRYOSTORM_SHUTDOWN_TIMEOUT_MILLIS": "1000"}
    result = run_launcher(["--quiet", "--", PYTHON, APP, "50"], env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "telemetry not fully flushed within 1 s (shutdown_timeout_millis)" in result.stderr
    assert "50 spans" in result.stderr


def test_a_console_copy_and_a_prometheus_reader_beside_otlp_are_honoured(rcv: Receiver, tmp_path: Path) -> None:
    # As OTEL_TRACES_EXPORTER=otlp,console: a processor per exporter, the console one beside the OTLP one.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = write(tmp_path, f"""\
        file_format: "1.1"
        tracer_provider:
          processors:
            - simple:
                exporter:
                  console:
            - batch:
                schedule_delay: 100
                exporter:
                  otlp_grpc:
                    endpoint: http://127.0.0.1:{rcv.grpc_port}
        meter_provider:
          readers:
            - pull:
                exporter:
                  prometheus/development:
                    host: 127.0.0.1
                    port: {port}
            - periodic:
                exporter:
                  otlp_grpc:
                    endpoint: http://127.0.0.1:{rcv.grpc_port}
        """)
    settings = load_settings({"OTEL_CONFIG_FILE": str(config)}, config_dir=None).settings
    assert (settings.tracing.exporter_type.value, settings.tracing.also_export_to) == ("otlp", ["console"])
    assert settings.tracing.export_config.schedule_delay_millis == 100  # the OTLP processor's, not the copy's
    assert (settings.metrics.exporter_type.value, settings.metrics.also_export_to) == ("otlp", ["prometheus"])
    assert (settings.metrics.prometheus_host, settings.metrics.prometheus_port) == ("127.0.0.1", port)
    result = run_launcher(["--", PYTHON, APP, "2"], {"OTEL_CONFIG_FILE": str(config)}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(s.name for s in rcv.spans()) == ["rel-0", "rel-1"]
    assert result.stderr.count('"name": "rel-') == 2, result.stderr  # and the console's JSON, on stderr
    assert "rel.count" in {m.name for m in rcv.metrics()}


def test_a_second_otlp_processor_or_a_copy_with_its_own_settings_is_refused(tmp_path: Path) -> None:
    config = write(tmp_path, """\
        file_format: "1.1"
        tracer_provider:
          processors:
            - batch:
                exporter:
                  otlp_grpc:
            - simple:
                exporter:
                  otlp_http:
        logger_provider:
          processors:
            - batch:
                exporter:
                  otlp_grpc:
            - batch:
                max_queue_size: 10
                exporter:
                  console:
        """)
    with pytest.raises(ConfigError) as caught:
        load_settings({"OTEL_CONFIG_FILE": str(config)}, config_dir=None)
    found = [(p.name, p.message) for p in caught.value.problems]
    assert found == [
        (f"{config}:7 tracer_provider.processors[1]", "not supported by cryostorm-run: a second processor exporting "
         "to 'otlp_http': cryostorm exports a signal to one OTLP endpoint, and beside it to the console"),
        (f"{config}:16 logger_provider.processors[1].batch.max_queue_size", "not supported by cryostorm-run: "
         "'max_queue_size' on a second processor (it takes the first one's settings)")], found


@pytest.mark.parametrize(("value", "version"), [("010", "10"), ("1:30", "1%3A30"), ("on", "on"), ("1_000", "1_000"),
                                                ("2024-01-01", "2024-01-01"), ("0o17", "15"), ("0x1F", "31")])
def test_a_substituted_value_is_typed_by_the_yaml_1_2_core_schema(tmp_path: Path, value: str, version: str) -> None:
    """The data model: YAML files SHOULD be parsed with the v1.2 core schema. By PyYAML's 1.1 rules V=010 became
    8, V=1:30 90, V=on true, and V=2024-01-01 a date the schema quoted as Python."""
    config = tmp_path / "otel.yaml"
    config.write_text('file_format: "1.0"\nresource:\n  attributes:\n    - name: service.name\n      value: svc\n'
                      "    - name: service.version\n      value: ${V}\n")
    result = run_launcher(["print-env", "--config-file", str(config)], {"V": value})
    assert result.returncode == 0, result.stderr
    assert f"service.version={version}," in result.stdout or f"service.version={version}'" in result.stdout, \
        result.stdout
