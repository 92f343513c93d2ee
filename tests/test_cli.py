"""The CLI at two depths: typer's CliRunner for the commands, and the hand-parsed `--` path."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import run_launcher
from typer.testing import CliRunner

from cryostorm_run.cli._app import app
from cryostorm_run.cli._common import UsageError
from cryostorm_run.cli._run import parse

CANARY = "canary-s3cr3t-9f8e7d"


def invoke(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, args, env=env or {})
    return result.exit_code, result.stdout, result.stderr


def test_check_config_valid_shows_values_and_sources() -> None:
    code, out, err = invoke(["check-config"], {"CRYOSTORM_SERVICE__NAME": "checkout", "OTEL_TRACES_SAMPLER_ARG": "0.5"})
    assert code == 0
    assert out == ""  # reports go to stderr
    assert "service.name" in err and "checkout" in err and "CRYOSTORM_SERVICE__NAME" in err
    assert "OTEL_TRACES_SAMPLER_ARG" in err


def test_check_config_json() -> None:
    code, out, _ = invoke(["check-config", "--json"], {"CRYOSTORM_OTLP__HEADERS": f"authorization={CANARY}"})
    assert code == 0
    data = json.loads(out)
    rows = {r["setting"]: r for r in data["settings"]}
    assert data["valid"] is True
    assert rows["otlp.headers.authorization"]["value"] == "****"
    assert rows["otlp.headers.authorization"]["source"] == "CRYOSTORM_OTLP__HEADERS"
    assert rows["service.name"] == {"setting": "service.name", "value": "unknown-service", "source": "default"}
    assert CANARY not in out


def test_check_config_invalid_exits_2_with_every_problem() -> None:
    code, out, err = invoke(["check-config"], {"CRYOSTORM_TRACING__SAMPLE_RATE": "2", "OTEL_TRACES_SAMPLER": "nope"})
    assert code == 2
    assert out == ""
    assert "invalid configuration (2 problems)" in err
    assert "CRYOSTORM_TRACING__SAMPLE_RATE = '2'" in err
    assert "OTEL_TRACES_SAMPLER = 'nope'" in err
    assert "Traceback" not in err


def test_check_config_flags_and_set() -> None:
    code, out, _ = invoke(["check-config", "--json", "--service-name", "flagged", "--set", "tracing.sample_rate=0.3"])
    rows = {r["setting"]: r for r in json.loads(out)["settings"]}
    assert code == 0
    assert rows["service.name"]["source"] == "--service-name"
    assert rows["tracing.sample_rate"] == {"setting": "tracing.sample_rate", "value": 0.3,
                                           "source": "--set tracing.sample_rate"}


def test_print_env_shell_is_safe_to_eval() -> None:
    env = {"CRYOSTORM_SERVICE__NAME": "it's $(dangerous)", "CRYOSTORM_EXPORTER_TYPE": "otlp",
           "CRYOSTORM_OTLP__HEADERS": f"authorization={CANARY}"}
    code, out, _ = invoke(["print-env"], env)
    assert code == 0
    assert CANARY not in out
    assert "export OTEL_EXPORTER_OTLP_TRACES_HEADERS='****'" in out
    assert out.splitlines()[-1].startswith("export PYTHONPATH=")
    evaluated = subprocess.run(["sh", "-c", out + 'printf %s "$OTEL_SERVICE_NAME"'], capture_output=True,
                               text=True, check=True, env={"PATH": os.environ["PATH"]})
    assert evaluated.stdout == "it's $(dangerous)"


def test_print_env_show_secrets_and_formats() -> None:
    env = {"CRYOSTORM_EXPORTER_TYPE": "otlp", "CRYOSTORM_OTLP__HEADERS": f"authorization={CANARY}"}
    code, out, _ = invoke(["print-env", "--format", "json", "--show-secrets"], env)
    assert code == 0
    assert json.loads(out)["OTEL_EXPORTER_OTLP_LOGS_HEADERS"] == f"authorization={CANARY}"
    code, out, _ = invoke(["print-env", "--format", "dotenv"], env)
    assert "OTEL_TRACES_EXPORTER='otlp'" in out.splitlines()
    code, _, err = invoke(["print-env", "--format", "xml"])
    assert code == 2 and "allowed: shell, dotenv, json" in err


def test_env_file_option(tmp_path: Path) -> None:
    path = tmp_path / "prod.env"
    path.write_text("CRYOSTORM_SERVICE__NAME=from-file\n")
    code, out, _ = invoke(["print-env", "--format", "json", "--env-file", str(path)])
    assert code == 0 and json.loads(out)["OTEL_SERVICE_NAME"] == "from-file"


def test_version() -> None:
    code, out, _ = invoke(["--version"])
    assert code == 0 and out.startswith("cryostorm-run 0.")


def test_run_path_parser() -> None:
    options, command = parse(["--service-name", "a", "--set=tracing.sample_rate=0.1", "--quiet", "--", "python", "-V"])
    assert command == ["python", "-V"]
    assert options["flags"] == {"--service-name": "a"}
    assert options["set"] == ["tracing.sample_rate=0.1"]
    assert options["report"] == "quiet"
    assert parse(["uvicorn", "--reload"])[1] == ["uvicorn", "--reload"]  # `--` is optional
    with pytest.raises(UsageError):
        parse(["--bogus", "--", "x"])
    with pytest.raises(UsageError):
        parse(["--env-file"])


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["--bogus", "--", "true"], 2, "--bogus"),
        (["--set", "nokey", "--", "true"], 2, "expected KEY=VALUE"),
        (["--"], 2, "no command given"),
        (["--", "no-such-command-xyz"], 127, "no-such-command-xyz: command not found"),
    ],
)
def test_run_path_errors_are_one_clear_message(args: list[str], code: int, fragment: str) -> None:
    result = run_launcher(args)
    assert result.returncode == code, result.stderr
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_help_lists_commands() -> None:
    result = run_launcher(["--help"])
    assert result.returncode == 0
    assert "cryostorm-run [OPTIONS] -- COMMAND" in result.stdout
    assert "check-config" in result.stdout


def test_secret_on_the_command_line_is_never_echoed() -> None:
    result = run_launcher(["--set", f"otlp.headers=authorization={CANARY}", "--set", "tracing.sample_rate=5", "--",
                           "true"])
    assert result.returncode == 2
    assert CANARY not in result.stderr + result.stdout


def test_python_dash_m_works_like_the_console_script() -> None:
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "cryostorm_run", "--quiet", "--", sys.executable, "-c",
                             "import os; print(os.environ['OTEL_TRACES_EXPORTER'])"],
                            capture_output=True, text=True, timeout=60, check=False,
                            env={**os.environ, "CRYOSTORM_EXPORTER_TYPE": "otlp"})
    assert (result.returncode, result.stdout) == (0, "otlp\n"), result.stderr


def test_an_env_files_opentelemetry_variables_passed_on_as_they_are_reach_the_program(tmp_path: Path) -> None:
    # Mapped ones become settings; the others (limits, disabled instrumentations, ...) were dropped without a
    # word. The environment's own value wins over the file's, as for every setting.
    env_file = tmp_path / "deploy.env"
    env_file.write_text("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT=2\nOTEL_PYTHON_DISABLED_INSTRUMENTATIONS=requests\n"
                        "OTEL_METRICS_EXEMPLAR_FILTER=always_off\n")
    names = ["OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "OTEL_METRICS_EXEMPLAR_FILTER"]
    done = run_launcher(["--quiet", "--env-file", str(env_file), "--", "python3", "-c",
                         f"import os; print([os.environ.get(n) for n in {names!r}])"],
                        env={"OTEL_METRICS_EXEMPLAR_FILTER": "trace_based"})
    assert done.returncode == 0, done.stderr
    assert done.stdout == "['2', 'requests', 'trace_based']\n"
