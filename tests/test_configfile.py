"""The config file source (`cryostorm.toml`, `pyproject.toml [tool.cryostorm]`) and the settings schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cryostorm_run.cli._app import app
from cryostorm_run.config.loading import ConfigError, Override, load_settings
from cryostorm_run.config.schema import settings_schema

PYPROJECT = """\
[project]
name = "shop"

[tool.cryostorm]
exporter_type = "otlp"
collector = "http://otel-collector:4317"
excluded_paths = ["/ping"]

[tool.cryostorm.service]
name = "checkout"

[tool.cryostorm.tracing]
sampling_strategy = "parentbased_traceidratio"
sample_rate = 0.25

[tool.cryostorm.otlp.headers]
authorization = "Bearer from-the-file"
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


def test_pyproject_table_is_a_source_with_provenance(tmp_path: Path) -> None:
    write(tmp_path, "pyproject.toml", PYPROJECT)
    loaded = load_settings({}, config_dir=tmp_path)
    s = loaded.settings
    assert (s.service.name, s.exporter_type.value, s.collector.host, s.tracing.sample_rate) == (
        "checkout", "otlp", "otel-collector", 0.25)
    assert s.excluded_paths == ["/ping"]
    assert s.otlp.headers["authorization"].get_secret_value() == "Bearer from-the-file"
    assert loaded.origin(("tracing", "sample_rate")).describe() == "pyproject.toml [tool.cryostorm] tracing.sample_rate"
    assert loaded.origin(("collector", "port")).describe() == "pyproject.toml [tool.cryostorm] collector"


def test_cryostorm_toml_has_no_table_header(tmp_path: Path) -> None:
    write(tmp_path, "cryostorm.toml", 'exporter_type = "none"\n[metrics]\nexport_interval_millis = 1000\n')
    loaded = load_settings({}, config_dir=tmp_path)
    assert loaded.settings.metrics.export_interval_millis == 1000
    assert loaded.origin(("metrics", "export_interval_millis")).describe() == (
        "cryostorm.toml metrics.export_interval_millis")


def test_pyproject_without_the_table_is_not_a_config_file(tmp_path: Path) -> None:
    write(tmp_path, "pyproject.toml", '[project]\nname = "cryostorm-fan"\n[tool.other]\nx = 1\n')
    assert load_settings({}, config_dir=tmp_path).origins == {}


@pytest.mark.parametrize(("toml", "shown"), [('[tool]\ncryostorm = "x"\n', "x"), ("tool.cryostorm = 5\n", "5")])
def test_a_cryostorm_key_that_is_not_a_table_is_refused_not_ignored(tmp_path: Path, toml: str, shown: str) -> None:
    write(tmp_path, "pyproject.toml", toml)
    with pytest.raises(ConfigError) as info:
        load_settings({}, config_dir=tmp_path)
    assert [(p.name, p.value, p.message, p.hint) for p in info.value.problems] == [(
        "pyproject.toml [tool.cryostorm]", shown, "must be a table of settings, not a value",
        'write [tool.cryostorm] on a line of its own and the settings under it, e.g. '
        'collector = "http://otel-collector:4317"')]


def test_a_pyproject_that_cannot_be_read_is_said_not_skipped_silently(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # A container's user that may not read the project's pyproject.toml (root reads any file, so the
    # refusal is the one the OS gives such a user). Not an error: the file may have no cryostorm table.
    write(tmp_path, "pyproject.toml", PYPROJECT)
    read_bytes = Path.read_bytes

    def refused(path: Path) -> bytes:
        if path.name == "pyproject.toml":
            raise PermissionError(13, "Permission denied", str(path))
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", refused)
    loaded = load_settings({}, config_dir=tmp_path)
    assert loaded.origins == {}
    assert [(w.code, w.message) for w in loaded.warnings] == [(
        "config-file-unreadable", f"pyproject.toml in {tmp_path.resolve()} cannot be read (Permission denied): "
        "settings in its [tool.cryostorm] table, if it has one, are not used")]


# Precedence, pair by pair: flags > CRYOSTORM_* > OTEL_* > --env-file > config file > defaults.
@pytest.mark.parametrize(
    ("environ", "env_file", "flag", "expected", "source"),
    [
        ({}, None, None, "from-config", "cryostorm.toml service.name"),
        ({}, "CRYOSTORM_SERVICE__NAME=from-env-file", None, "from-env-file", "CRYOSTORM_SERVICE__NAME in {env_file}"),
        ({"OTEL_SERVICE_NAME": "from-otel"}, "CRYOSTORM_SERVICE__NAME=from-env-file", None, "from-otel",
         "OTEL_SERVICE_NAME"),
        ({"OTEL_SERVICE_NAME": "from-otel", "CRYOSTORM_SERVICE__NAME": "from-cryostorm"}, None, None, "from-cryostorm",
         "CRYOSTORM_SERVICE__NAME"),
        ({"CRYOSTORM_SERVICE__NAME": "from-cryostorm"}, None, "from-flag", "from-flag", "--service-name"),
    ],
)
def test_precedence(tmp_path: Path, environ: dict[str, str], env_file: str | None, flag: str | None, expected: str,
                    source: str) -> None:
    write(tmp_path, "cryostorm.toml", '[service]\nname = "from-config"\n')
    file = write(tmp_path, "app.env", env_file + "\n") if env_file else None
    overrides = [Override("--service-name", ("service", "name"), flag)] if flag else []
    loaded = load_settings(environ, config_dir=tmp_path, env_file=file, overrides=overrides)
    assert loaded.settings.service.name == expected
    assert loaded.origin(("service", "name")).describe() == source.format(env_file=file)


def test_env_overrides_one_key_of_a_file_table(tmp_path: Path) -> None:
    write(tmp_path, "cryostorm.toml", 'collector = "http://from-file:4317"\n')
    loaded = load_settings({"CRYOSTORM_COLLECTOR__PORT": "9999"}, config_dir=tmp_path)
    assert (loaded.settings.collector.host, loaded.settings.collector.port) == ("from-file", 9999)


def test_invalid_values_are_named_by_file_and_key(tmp_path: Path) -> None:
    write(tmp_path, "pyproject.toml", "[tool.cryostorm.tracing]\nsample_rate = 2\nsampel_rate = 1\n")
    with pytest.raises(ConfigError) as info:
        load_settings({}, config_dir=tmp_path)
    problems = {(p.name, p.message, p.hint) for p in info.value.problems}
    assert ("pyproject.toml [tool.cryostorm] tracing.sample_rate", "Input should be less than or equal to 1",
            "allowed: <= 1.0") in problems
    assert ("pyproject.toml [tool.cryostorm] tracing.sampel_rate", "unknown setting",
            "did you mean tracing.sample_rate?") in problems


def test_opentelemetrys_section_names_in_a_config_file_suggest_cryostorms(tmp_path: Path) -> None:
    write(tmp_path, "cryostorm.toml", '[traces]\nsampler = "always_on"\nenabled = false\n[logs]\nlevel = "debug"\n')
    with pytest.raises(ConfigError) as info:
        load_settings({}, config_dir=tmp_path)
    assert [(p.name, p.value, p.hint) for p in info.value.problems] == [  # values shown as TOML has them
        ("cryostorm.toml traces.enabled", "false", "did you mean tracing.enabled?"),
        ("cryostorm.toml traces.sampler", "always_on", "did you mean tracing.sampling_strategy?"),
        ("cryostorm.toml logs.level", "debug", "did you mean logging.level?")]


def test_broken_toml_and_two_config_files_are_errors(tmp_path: Path) -> None:
    write(tmp_path, "cryostorm.toml", "[tracing\n")
    with pytest.raises(ConfigError) as info:
        load_settings({}, config_dir=tmp_path)
    [problem] = info.value.problems
    assert problem.name == "cryostorm.toml" and problem.message.startswith("invalid TOML: ")
    write(tmp_path, "cryostorm.toml", "enabled = true\n")
    write(tmp_path, "pyproject.toml", "[tool.cryostorm]\nenabled = false\n")
    with pytest.raises(ConfigError) as info:
        load_settings({}, config_dir=tmp_path)
    assert [(p.name, p.message) for p in info.value.problems] == [
        ("cryostorm.toml and pyproject.toml [tool.cryostorm]", "two config files define cryostorm settings")]


def test_check_config_reads_the_current_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "pyproject.toml", PYPROJECT)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["check-config", "--json"], env={"CRYOSTORM_TRACING__SAMPLE_RATE": "0.5"})
    assert result.exit_code == 0, result.stderr
    rows = {r["setting"]: r for r in json.loads(result.stdout)["settings"]}
    assert rows["service.name"]["source"] == "pyproject.toml [tool.cryostorm] service.name"
    assert rows["tracing.sample_rate"] == {"setting": "tracing.sample_rate", "value": 0.5,
                                           "source": "CRYOSTORM_TRACING__SAMPLE_RATE"}
    assert rows["otlp.headers.authorization"]["value"] == "****"
    assert "from-the-file" not in result.stdout + result.stderr


def test_schema_command_marks_secrets_write_only() -> None:
    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema == settings_schema()
    headers = schema["$defs"]["OtlpConfig"]["properties"]["headers"]
    assert headers["writeOnly"] is True and headers["additionalProperties"]["writeOnly"] is True
    assert schema["additionalProperties"] is False


def test_schema_validates_a_sample_config(tmp_path: Path) -> None:
    import jsonschema

    from cryostorm_run.config.configfile import _load_toml

    schema = settings_schema()
    good = write(tmp_path, "pyproject.toml", PYPROJECT)
    bad = write(tmp_path, "bad.toml", '[tool.cryostorm]\nexporter_type = "carrier-pigeon"\n'
                                      "[tool.cryostorm.tracing]\nsample_rate = 2\nsampel_rate = 1\n")
    validator = jsonschema.Draft202012Validator(schema)
    good_errors, bad_errors = (
        sorted(e.message for e in validator.iter_errors(_load_toml(path)["tool"]["cryostorm"])) for path in (good, bad)
    )
    assert good_errors == []
    assert len(bad_errors) == 3  # the enum, the bound and the unknown key
    assert load_settings({}, config_dir=tmp_path).settings.tracing.sample_rate == 0.25  # the model agrees
