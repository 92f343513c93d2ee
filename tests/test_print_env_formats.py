"""`print-env --format shell|dotenv|json|docker|k8s`, each line saying where its value came from."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cryostorm_run.cli._app import app
from cryostorm_run.config.sources import Origin
from cryostorm_run.launch.envformat import FORMATS, EnvLine, Unrepresentable, render_env, row_source

SECRET = "Bearer fmt-secret-5566"
ENV = {"CRYOSTORM_SERVICE__NAME": "it's (x) \"quoted\" \\", "CRYOSTORM_EXPORTER_TYPE": "otlp",
       "OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25",
       "CRYOSTORM_OTLP__HEADERS": f"authorization={SECRET}"}


def print_env(*args: str, env: dict[str, str] | None = None) -> str:
    result = CliRunner().invoke(app, ["print-env", *args], env=ENV if env is None else env)
    assert result.exit_code == 0, result.stderr
    return result.stdout


def pairs(text: str) -> list[tuple[str, str]]:
    """(comment, line) for the comment-above-each-variable formats."""
    lines = text.splitlines()
    assert all(c.startswith("# ") for c in lines[0::2]), lines
    return list(zip(lines[0::2], lines[1::2], strict=True))


def test_shell_comment_says_where_each_value_came_from() -> None:
    found = pairs(print_env("--format", "shell", "--set", "otlp.timeout_millis=5000"))
    assert ("# from CRYOSTORM_SERVICE__NAME", "export OTEL_SERVICE_NAME='it'\"'\"'s (x) \"quoted\" \\'") in found
    assert ("# from OTEL_TRACES_SAMPLER_ARG", "export OTEL_TRACES_SAMPLER_ARG=0.25") in found
    assert ("# from CRYOSTORM_EXPORTER_TYPE", "export OTEL_LOGS_EXPORTER=otlp") in found
    assert ("# from --set otlp.timeout_millis", "export OTEL_EXPORTER_OTLP_TRACES_TIMEOUT=5") in found
    assert ("# default", "export OTEL_METRIC_EXPORT_INTERVAL=60000") in found
    assert ("# from CRYOSTORM_OTLP__HEADERS", "export OTEL_EXPORTER_OTLP_TRACES_HEADERS='****'") in found
    assert found[-1][0] == "# cryostorm's hook directory, then your PYTHONPATH"


def test_shell_is_still_safe_to_eval() -> None:
    name = "it's $(x) \"quoted\""
    out = print_env("--format", "shell", env={**ENV, "CRYOSTORM_SERVICE__NAME": name})
    done = subprocess.run(["sh", "-c", out + 'printf %s "$OTEL_SERVICE_NAME"'], capture_output=True, text=True,
                          check=True, env={"PATH": os.environ["PATH"]})
    assert done.stdout == name


def test_dotenv_comments_and_values_parse_back(tmp_path: Path) -> None:
    from dotenv import dotenv_values

    env_file = tmp_path / "base.env"
    env_file.write_text("CRYOSTORM_METRICS__EXPORT_INTERVAL_MILLIS=1000\n")
    out = print_env("--format", "dotenv", "--env-file", str(env_file))
    assert ("# from CRYOSTORM_METRICS__EXPORT_INTERVAL_MILLIS in " + str(env_file),
            "OTEL_METRIC_EXPORT_INTERVAL='1000'") in pairs(out)
    written = tmp_path / "out.env"
    written.write_text(out)
    values = dotenv_values(written)
    assert values["OTEL_SERVICE_NAME"] == ENV["CRYOSTORM_SERVICE__NAME"]
    assert values["OTEL_EXPORTER_OTLP_LOGS_HEADERS"] == "****"


def test_source_of_a_group_set_piece_by_piece() -> None:
    env = {"CRYOSTORM_EXPORTER_TYPE": "otlp", "CRYOSTORM_COLLECTOR__PORT": "14317"}
    found = pairs(print_env("--format", "shell", env=env))
    assert ("# from CRYOSTORM_COLLECTOR__PORT", "export OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://localhost:14317"
            ) in found


def test_config_file_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cryostorm.toml").write_text('[service]\nname = "from-toml"\n')
    monkeypatch.chdir(tmp_path)
    assert ("# from cryostorm.toml service.name", "export OTEL_SERVICE_NAME=from-toml") in pairs(print_env(env={}))


def test_docker_is_an_env_file_with_literal_values() -> None:
    # `docker run --env-file` takes the rest of the line as the value: no quotes, no escapes.
    found = pairs(print_env("--format", "docker"))
    assert ("# from CRYOSTORM_SERVICE__NAME", "OTEL_SERVICE_NAME=" + ENV["CRYOSTORM_SERVICE__NAME"]) in found
    assert ("# from CRYOSTORM_OTLP__HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS=****") in found
    assert not any(line.startswith("PYTHONPATH=") for _, line in found)  # a path on this machine, not in the image


@pytest.mark.parametrize(("fmt", "value", "others"), [
    ("docker", "two\nlines", "k8s, json, shell or dotenv"), ("docker", "cr\r", "k8s, json, shell or dotenv"),
    ("dotenv", "it's $(x)", "shell, json or k8s"), ("dotenv", "${HOME}", "shell, json or k8s")])
def test_a_value_the_format_cannot_hold_is_refused(fmt: str, value: str, others: str) -> None:
    result = CliRunner().invoke(app, ["print-env", "--format", fmt], env={**ENV, "CRYOSTORM_SERVICE__NAME": value})
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "OTEL_SERVICE_NAME (from CRYOSTORM_SERVICE__NAME)" in result.stderr
    assert f"use --format {others}" in result.stderr
    assert "Traceback" not in result.stderr and "\r" not in result.stderr


def test_k8s_env_list_is_valid_yaml_with_string_values() -> None:
    out = print_env("--format", "k8s")
    items = yaml.safe_load(out)
    assert isinstance(items, list)
    env = {item["name"]: item["value"] for item in items}
    assert all(isinstance(v, str) for v in env.values())
    assert env["OTEL_SERVICE_NAME"] == ENV["CRYOSTORM_SERVICE__NAME"]
    assert env["OTEL_BSP_MAX_EXPORT_BATCH_SIZE"] == "512"
    assert env["OTEL_EXPORTER_OTLP_METRICS_HEADERS"] == "****"
    assert "PYTHONPATH" not in env
    assert '  value: "0.25"  # from OTEL_TRACES_SAMPLER_ARG' in out.splitlines()


def test_secrets_masked_in_every_format_unless_asked() -> None:
    for fmt in FORMATS:
        assert "fmt-secret-5566" not in print_env("--format", fmt)
        assert "authorization=Bearer%20fmt-secret-5566" in print_env("--format", fmt, "--show-secrets")


def test_json_format_is_unchanged() -> None:
    data = json.loads(print_env("--format", "json"))
    assert data["OTEL_SERVICE_NAME"] == ENV["CRYOSTORM_SERVICE__NAME"]
    assert data["OTEL_EXPORTER_OTLP_TRACES_HEADERS"] == "****"


def test_unknown_format_lists_all_formats() -> None:
    result = CliRunner().invoke(app, ["print-env", "--format", "xml"])
    assert result.exit_code == 2
    assert "allowed: shell, dotenv, json, docker, k8s" in result.stderr


# -- the formats as pure functions (render_env, row_source): exact output, the seams mutation testing found

def line(value: str, name: str = "OTEL_SERVICE_NAME", source: str = "default") -> EnvLine:
    return EnvLine(name, value, source)


@pytest.mark.parametrize(("fmt", "value", "reason"), [
    ("docker", "two\nlines", "contains a line break, which a docker --env-file cannot hold"),
    ("docker", "cr\r", "contains a line break, which a docker --env-file cannot hold"),
    ("dotenv", "cr\r", "contains a carriage return, which python-dotenv reads as a line break"),
    ("dotenv", "${HOME}", "contains ${, which dotenv readers expand as a variable"),
    ("dotenv", "it's $(x)", "contains $ or ` (which a shell expands in double quotes) and also ' or \\ (which single "
                            "quotes cannot hold for both a shell and python-dotenv)"),
    ("dotenv", "`x`\\\\", "contains $ or ` (which a shell expands in double quotes) and also ' or \\ (which single "
                          "quotes cannot hold for both a shell and python-dotenv)"),
])
def test_each_refusal_names_its_format_the_variable_and_why(fmt: str, value: str, reason: str) -> None:
    refused = line(value)
    with pytest.raises(Unrepresentable) as caught:
        render_env([line("ok", "OTEL_FIRST"), refused], fmt)
    assert (caught.value.fmt, caught.value.line, caught.value.reason) == (fmt, refused, reason)
    assert str(caught.value) == f"OTEL_SERVICE_NAME: {reason}"


@pytest.mark.parametrize(("value", "written"), [
    ("plain $HOME `x`", "'plain $HOME `x`'"),  # single quotes: nothing expands
    ("it's", "\"it's\""),  # a ' needs double quotes
    ("a\\\\b", '"a\\\\\\\\b"'),  # so does \\ (python-dotenv undoes it in single quotes)
    ("ends\\", '"ends\\\\"'),  # and a trailing \ (it would escape the closing quote)
    ('say "hi"\'', '"say \\"hi\\"\'"'),
])
def test_dotenv_quotes_each_value_the_way_both_readers_undo(value: str, written: str) -> None:
    assert render_env([line(value)], "dotenv") == f"# default\nOTEL_SERVICE_NAME={written}\n"


def test_json_is_indented_by_two() -> None:
    assert render_env([line("1", "A"), line("2", "B")], "json") == '{\n  "A": "1",\n  "B": "2"\n}\n'


def test_k8s_escapes_what_yaml_would_not_read_back_and_leaves_out_pythonpath() -> None:
    lines = [line('q"b\\c\x01\x85\u2028é'), line("/here", "PYTHONPATH")]
    assert render_env(lines, "k8s") == (
        "# env: of a container spec (PYTHONPATH left out: run the program under cryostorm-run in the image)\n"
        "- name: OTEL_SERVICE_NAME\n"
        '  value: "q\\"b\\\\c\\x01\\x85\\u2028é"  # default\n')


def test_a_long_source_comment_is_cut_at_500_characters() -> None:
    long = "from " + "x" * 516  # 521 characters: over 500 + the 20 the cut leaves room for
    assert render_env([line("v", source=long)], "docker") == f"# {long[:500]}… (521 chars)\nOTEL_SERVICE_NAME=v\n"
    assert render_env([line("v", source=long[:520])], "docker") == f"# {long[:520]}\nOTEL_SERVICE_NAME=v\n"


def test_row_source_names_every_input_that_was_set_in_precedence_order() -> None:
    origins = {("otlp", "headers"): Origin("cryostorm_env", "CRYOSTORM_OTLP__HEADERS"),
               ("tracing", "headers"): Origin("otel_env", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"),
               ("collector",): Origin("flag", "--set collector"),
               ("logging", "export_config", "batch_size"): Origin("env_file", "CRYOSTORM_LOGGING__EXPORT_CONFIG__"
                                                                               "BATCH_SIZE", ".env")}
    assert row_source("tracing.headers, otlp.headers", origins) == (
        "from OTEL_EXPORTER_OTLP_TRACES_HEADERS, CRYOSTORM_OTLP__HEADERS")
    assert row_source("otlp.headers,otlp.headers", origins) == "from CRYOSTORM_OTLP__HEADERS"  # each name once
    assert row_source("collector.port", origins) == "from --set collector"  # set as a whole
    assert row_source("logging.export_config", origins) == "from CRYOSTORM_LOGGING__EXPORT_CONFIG__BATCH_SIZE in .env"
    assert row_source("metrics.export_interval_millis", origins) == "default"


@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_print_env_writes_utf8_whatever_stdout_encodes(encoding: str, fmt: str) -> None:
    """The program gets the variables as UTF-8 bytes; print-env writes those bytes even where Python's stdout would
    refuse them (PYTHONIOENCODING=ascii, a C locale): it was 'internal error: UnicodeEncodeError'."""
    from conftest import CRYOSTORM_RUN, child_env

    name = "caf\u00e9-\U0001f600"
    result = subprocess.run([CRYOSTORM_RUN, "print-env", "--format", fmt], capture_output=True, timeout=60,
                            check=False, env=child_env({"PYTHONIOENCODING": encoding, "CRYOSTORM_SERVICE__NAME": name}))
    assert result.returncode == 0, result.stderr.decode("utf-8", "replace")
    out = result.stdout.decode("utf-8")
    assert (json.loads(out)["OTEL_SERVICE_NAME"] if fmt == "json" else out).count(name) >= 1, out


def test_print_env_says_what_it_masked_and_how_to_have_it_whole() -> None:
    """`eval "$(cryostorm-run print-env)"` would export **** as a header value: an export refused by the collector,
    far from its cause. The masking is said on stderr (stdout stays the document), and how to have the values."""
    from conftest import CRYOSTORM_RUN, child_env

    env = child_env({"CRYOSTORM_EXPORTER_TYPE": "otlp", "OTEL_EXPORTER_OTLP_HEADERS": f"authorization={SECRET}",
                     "CRYOSTORM_SERVICE__NAME": "svc"})
    masked = subprocess.run([CRYOSTORM_RUN, "print-env"], env=env, capture_output=True, text=True, timeout=60,
                            check=False)
    assert masked.returncode == 0 and "OTEL_EXPORTER_OTLP_TRACES_HEADERS='****'" in masked.stdout
    assert masked.stderr == ("cryostorm: warning: print-env shows OTEL_EXPORTER_OTLP_LOGS_HEADERS, "
                             "OTEL_EXPORTER_OTLP_METRICS_HEADERS, OTEL_EXPORTER_OTLP_TRACES_HEADERS masked (****): to "
                             "use the output as the program's environment, add --show-secrets\n"), masked.stderr
    whole = subprocess.run([CRYOSTORM_RUN, "print-env", "--show-secrets"], env=env, capture_output=True, text=True,
                           timeout=60, check=False)
    assert (whole.returncode, whole.stderr) == (0, "") and SECRET.replace(" ", "%20") in whole.stdout


def test_variables_passed_on_as_they_are_are_listed_with_where_they_came_from(tmp_path: Path) -> None:
    # The program gets them (span limits, its exemplar filter, upstream's URL exclusions), so the environment
    # print-env describes has them too: from the environment ("yours, kept") or from the env file.
    env_file = tmp_path / "deploy.env"
    env_file.write_text("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT=2\nOTEL_PYTHON_DISABLED_INSTRUMENTATIONS=requests\n")
    theirs = {"OTEL_METRICS_EXEMPLAR_FILTER": "always_off", "OTEL_PYTHON_EXCLUDED_URLS": "ping"}
    found = pairs(print_env("--format", "shell", "--env-file", str(env_file), env={**ENV, **theirs}))
    assert ("# yours (OTEL_METRICS_EXEMPLAR_FILTER), kept", "export OTEL_METRICS_EXEMPLAR_FILTER=always_off") in found
    assert ("# yours (OTEL_PYTHON_EXCLUDED_URLS), kept", "export OTEL_PYTHON_EXCLUDED_URLS=ping") in found
    assert (f"# from OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT in {env_file}",
            "export OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT=2") in found
    assert not [line for _, line in found if "_EXCLUDED_URLS=" in line and "OTEL_PYTHON_EXCLUDED_URLS" not in line]
