"""The CLI's edges: an option without its value, --json when invalid, print-env's warnings, plain help
metavars, --quiet with --verbose, doctor --path, the --env-file help, the usage errors' footer, and a launcher
started with its stdout or stderr closed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CRYOSTORM_RUN, PYTHON, ROOT, child_env, run_launcher
from otlp_receiver import Receiver
from typer.testing import CliRunner

from cryostorm_run.cli._app import app
from cryostorm_run.cli._common import UsageError
from cryostorm_run.cli._run import parse

CANARY = "canary-edge-5e6f7a"
FOOTER = "`cryostorm-run check-config` shows every setting"


def invoke(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, args, env=env or {})
    return result.exit_code, result.stdout, result.stderr


def program(marker: Path) -> list[str]:
    """A command that leaves a file behind if it ever runs."""
    return [PYTHON, "-c", f"open({str(marker)!r}, 'w'); print('STARTED')"]


# -- an option whose value would be `--`, another option, or nothing -----------------------------------------

@pytest.mark.parametrize("option", ["--service-name", "--exporter", "--endpoint", "--env-file", "--config-file",
                                    "--set"])
@pytest.mark.parametrize("after", [["--"], ["--quiet", "--"], ["--verbose", "--"]])
def test_the_launcher_refuses_an_option_without_its_value(tmp_path: Path, option: str, after: list[str]) -> None:
    marker = tmp_path / "started"
    result = run_launcher([option, *after, *program(marker)])
    assert result.returncode == 2, result.stderr
    assert (result.stdout, marker.exists()) == ("", False)
    assert f"  {option} = '{after[0]}'\n    expects a value" in result.stderr
    assert f"e.g. cryostorm-run {option} " in result.stderr  # how to write it
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr


def test_the_launcher_names_what_an_option_allows() -> None:
    result = run_launcher(["--exporter", "--", "true"])
    assert result.returncode == 2
    assert "allowed: console, pretty, console_json, otlp, in_memory, prometheus, none" in result.stderr


def test_the_launcher_parser_takes_values_as_written() -> None:
    with pytest.raises(UsageError, match="expects a value"):
        parse(["--service-name"])
    with pytest.raises(UsageError, match="not the option --debug"):
        parse(["--env-file", "--debug", "--", "x"])
    # With `=` the value is what was written, even `--`; a value merely starting with `-` is a value.
    assert parse(["--service-name=--", "--", "x"])[0]["flags"] == {"--service-name": "--"}
    assert parse(["--service-name", "-svc-", "--", "x"])[0]["flags"] == {"--service-name": "-svc-"}


def test_an_option_taken_for_a_value_is_named_without_its_value() -> None:
    result = run_launcher(["--endpoint", f"--set=otlp.headers=authorization={CANARY}", "--", "true"])
    assert result.returncode == 2
    assert "  --endpoint = '--set'\n    expects a value, not the option --set" in result.stderr
    assert CANARY not in result.stderr
    code, out, err = invoke(["check-config", "--json", "--endpoint", f"--set=otlp.headers=authorization={CANARY}"])
    assert code == 2
    assert CANARY not in out + err


@pytest.mark.parametrize(("args", "shown"), [
    (["check-config", "--service-name", "--json"], "--service-name = '--json'"),
    (["check-config", "--env-file", "--"], "--env-file = '--'"),
    (["print-env", "--exporter", "--"], "--exporter = '--'"),
    (["print-env", "--format", "--show-secrets"], "--format = '--show-secrets'"),
    (["doctor", "--path", "--", "python"], "--path = '--'"),
    (["bootstrap", "--installer", "--dry-run"], "--installer = '--dry-run'"),
])
def test_every_command_refuses_an_option_without_its_value(args: list[str], shown: str) -> None:
    code, out, err = invoke(args)
    assert code == 2, err
    assert out == ""
    assert f"  {shown}\n    expects a value" in err
    assert f"e.g. cryostorm-run {args[0]} {args[1]} " in err
    assert FOOTER not in err and "Traceback" not in err


# -- check-config --json when the configuration is invalid ---------------------------------------------------

def test_check_config_json_lists_the_problems_when_invalid() -> None:
    env = {"CRYOSTORM_TRACING__SAMPLE_RATE": "9", "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://user:{CANARY}@c:99999",
           "CRYOSTORM_SERVICE__NAME": ""}
    code, out, err = invoke(["check-config", "--json"], env)
    assert code == 2
    data = json.loads(out)
    assert data["valid"] is False and data["settings"] == [] and data["warnings"] == []
    problems = {p["name"]: p for p in data["problems"]}
    assert set(problems) == set(env)
    assert problems["CRYOSTORM_TRACING__SAMPLE_RATE"]["value"] == "9"
    assert problems["CRYOSTORM_TRACING__SAMPLE_RATE"]["hint"] == "allowed: <= 1.0"
    assert "less than or equal to 1" in problems["CRYOSTORM_TRACING__SAMPLE_RATE"]["message"]
    assert set(problems["OTEL_EXPORTER_OTLP_ENDPOINT"]) == {"name", "value", "message", "hint"}
    assert problems["CRYOSTORM_SERVICE__NAME"]["hint"] == "give it a value, or leave it out for the default"
    assert CANARY not in out + err
    assert "invalid configuration (3 problems)" in err  # the report for people stays on stderr


def test_check_config_json_for_a_usage_error_and_unchanged_when_valid() -> None:
    code, out, _ = invoke(["check-config", "--json", "--set", "--"])
    assert code == 2
    assert json.loads(out)["problems"][0]["name"] == "--set"
    code, out, _ = invoke(["check-config", "--json"])
    assert code == 0
    assert set(json.loads(out)) == {"valid", "settings", "warnings"}


# -- print-env prints the launcher's warnings ----------------------------------------------------------------

def test_print_env_prints_the_warnings_on_stderr_only() -> None:
    warning = ("cryostorm: warning: OTEL_SERVICE_NAM is not an OpenTelemetry variable and is ignored "
               "(did you mean OTEL_SERVICE_NAME?)\n")
    typo = run_launcher(["print-env", "--format", "json"], {"OTEL_SERVICE_NAM": "x"})
    plain = run_launcher(["print-env", "--format", "json"])
    assert typo.returncode == 0
    assert typo.stderr == warning
    assert typo.stdout == plain.stdout  # stdout: the document alone, fit for a file
    assert warning in run_launcher(["check-config"], {"OTEL_SERVICE_NAM": "x"}).stderr  # the same line


# -- plain help ---------------------------------------------------------------------------------------------

def test_bootstrap_help_names_values_plainly() -> None:
    result = run_launcher(["bootstrap", "--help"])
    assert result.returncode == 0
    assert "<" not in result.stdout  # no "<list[str]>" nor "<str>"
    assert "--installer INSTALLER" in result.stdout
    assert "[-- COMMAND]..." in result.stdout and "With -- COMMAND [ARGS...]" in result.stdout


def test_env_file_help_follows_the_readme_precedence() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "`cryostorm.toml` or `[tool.cryostorm]`" in readme and "(below `--env-file`, above defaults)" in readme
    for text in (run_launcher(["--help"]).stdout, run_launcher(["print-env", "--help"]).stdout):
        help_ = " ".join(text.split("--env-file PATH", 1)[1].split("--config-file", 1)[0].split())
        assert "lowest precedence" not in help_
        assert re.search(r"below CRYOSTORM_\* and OTEL_\* variables, above cryostorm\.toml", help_), help_


# -- --quiet with --verbose ---------------------------------------------------------------------------------

@pytest.mark.parametrize("both", [["--quiet", "--verbose"], ["--verbose", "--quiet"]])
def test_quiet_and_verbose_together_are_refused(tmp_path: Path, both: list[str]) -> None:
    marker = tmp_path / "started"
    result = run_launcher([*both, "--", *program(marker)])
    assert result.returncode == 2, result.stderr
    assert (result.stdout, marker.exists()) == ("", False)
    assert "  --quiet and --verbose\n    cannot be used together (keep one:" in result.stderr
    assert FOOTER not in result.stderr


# -- doctor --path -------------------------------------------------------------------------------------------

def test_doctor_refuses_a_path_that_is_not_a_directory(tmp_path: Path) -> None:
    missing, afile = tmp_path / "nowhere", tmp_path / "file"
    afile.write_text("")
    code, out, err = invoke(["doctor", "--json", "--path", str(missing), "--path", str(tmp_path),
                             "--path", str(afile)])
    assert code == 2
    assert [f["message"] for f in json.loads(out)["findings"]] == [  # --json: still its document
        f"--path = '{missing}': no such directory", f"--path = '{afile}': not a directory"]
    assert f"  --path = '{missing}'\n    no such directory" in err
    assert f"  --path = '{afile}'\n    not a directory" in err
    assert f"'{tmp_path}'" not in err
    assert "usage error (2 problems); nothing was checked." in err


# -- the footer of usage errors -----------------------------------------------------------------------------

def test_an_unknown_option_gets_no_check_config_footer() -> None:
    result = run_launcher(["--bogus", "--", "true"])
    assert result.returncode == 2
    assert result.stderr == ("cryostorm-run: usage error (1 problem); nothing was started.\n"
                             "  --bogus\n    unknown option (see cryostorm-run --help)\n")
    assert FOOTER not in run_launcher(["--"]).stderr  # no command given
    assert FOOTER not in invoke(["bootstrap", "--dry-run"])[2]


def test_a_problem_with_a_setting_keeps_the_footer() -> None:
    assert FOOTER in run_launcher(["--", "true"], {"CRYOSTORM_TRACING__SAMPLE_RATE": "9"}).stderr
    code, out, err = invoke(["print-env", "--format", "docker"], {"CRYOSTORM_SERVICE__NAME": "two\nlines"})
    assert (code, out) == (2, "")
    assert "--format docker cannot hold this value (1 problem); nothing was printed." in err
    assert FOOTER in err


@pytest.mark.parametrize("switch", [{"OTEL_SDK_DISABLED": "true"}, {"CRYOSTORM_ENABLED": "false"}])
def test_the_kill_switch_runs_the_program_whatever_else_is_wrong(switch: dict[str, str]) -> None:
    # Telemetry turned off during an incident must not keep the program from starting over another setting.
    env = {**switch, "OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317",
           "CRYOSTORM_OTLP__HEADERS": "authorization=Bearer s3cr3tv4lue,bad name=x"}
    result = run_launcher(["--", sys.executable, "-c", "import os; print('STARTED', 'PYTHONPATH' in os.environ)"],
                          env=env)
    assert (result.returncode, result.stdout) == (0, "STARTED False\n"), result.stderr
    name = next(iter(switch))
    assert result.stderr.startswith(f"cryostorm: warning: telemetry is off ({name}), so the program runs "
                                    "without it; with it on, these settings would be refused: "), result.stderr
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in result.stderr and "CRYOSTORM_OTLP__HEADERS" in result.stderr
    assert "s3cr3tv4lue" not in result.stderr
    assert "cryostorm: telemetry off" not in result.stderr  # said once, by the warning


def test_a_kill_switch_that_is_itself_wrong_is_refused() -> None:
    result = run_launcher(["--", sys.executable, "-c", "print('STARTED')"],
                          env={"CRYOSTORM_ENABLED": "maybe", "OTEL_TRACES_EXPORTER": "zipkin"})
    assert result.returncode == 2 and "STARTED" not in result.stdout
    assert "CRYOSTORM_ENABLED = 'maybe'" in result.stderr


# -- the parser's own usage errors, told as cryostorm's -------------------------------------------------------

@pytest.mark.parametrize(("args", "shown", "told"), [
    (["doctor", "--jsn"], "--jsn", "unknown option for doctor (did you mean --json? see cryostorm-run doctor --help)"),
    (["check-config", "--probe-timeout", "abc"], "--probe-timeout = 'abc'", "unable to parse string as a number"),
    (["check-config", "--probe-timeout=0.01"], "--probe-timeout = '0.01'", "greater than or equal to 0.1"),
    (["print-env", "--format"], "--format", "expects a value (e.g. cryostorm-run print-env --format dotenv; "
                                            "allowed: shell, dotenv, json, docker, k8s)"),
    (["schema", "extra"], "the command line", "unexpected extra argument(s) (extra)"),
], ids=["unknown-option", "not-a-number", "below-the-minimum", "missing-value", "extra-argument"])
def test_a_commands_parse_error_names_the_option_and_its_value_as_cryostorms_errors_do(args: list[str], shown: str,
                                                                                      told: str) -> None:
    result = run_launcher(args)
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    nothing = {"doctor": "checked", "check-config": "checked", "print-env": "printed", "schema": "printed"}[args[0]]
    assert result.stderr.startswith(f"cryostorm-run: usage error (1 problem); nothing was {nothing}.\n  {shown}\n    ")
    assert told in result.stderr
    assert "Usage:" not in result.stderr and "Error:" not in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("args", [["doctor", "--json", "--bogus"], ["doctor", "--json", "--path", "/no/such/dir"],
                                  ["doctor", "--json", "--path", "--json"], ["check-config", "--json", "--bogus"],
                                  ["check-config", "--json", "--probe-timeout", "abc"]])
def test_json_asked_for_still_gets_its_document_on_a_usage_error(args: list[str]) -> None:
    result = run_launcher(args)
    assert result.returncode == 2, result.stderr
    document = json.loads(result.stdout)
    if args[0] == "doctor":
        assert document["healthy"] is False
        assert [(f["section"], f["status"]) for f in document["findings"]] == [("usage", "problem")]
        assert document["findings"][0]["message"].startswith(args[2])
    else:
        assert (document["valid"], document["problems"][0]["name"]) == (False, args[2])
    assert "usage error (1 problem)" in result.stderr  # the report for people stays on stderr


def test_a_secret_typed_as_an_extra_argument_or_an_unknown_options_value_is_masked() -> None:
    result = run_launcher(["check-config", f"otlp.headers=authorization=Bearer {CANARY}"])
    assert result.returncode == 2
    assert "unexpected extra argument(s) (otlp.headers=****" in result.stderr, result.stderr
    assert CANARY not in result.stderr + result.stdout
    for args in (["check-config", f"--headers=authorization={CANARY}"], [f"--headers=authorization={CANARY}", "--",
                                                                         "true"]):
        result = run_launcher(args)
        assert result.returncode == 2
        assert "\n  --headers" in result.stderr and "unknown option" in result.stderr, result.stderr
        assert CANARY not in result.stderr + result.stdout


def test_an_unknown_launcher_option_close_to_one_is_named() -> None:
    result = run_launcher(["--service_name", "x", "--", "true"])
    assert result.returncode == 2
    assert "  --service_name\n    unknown option (did you mean --service-name? see cryostorm-run --help)" in \
        result.stderr, result.stderr


# -- started with stdout or stderr closed (`>&-`, `2>&-`) ------------------------------------------------------

CLOSED_FD_PROGRAM = """
import sys
from opentelemetry import trace
with trace.get_tracer("closed").start_as_current_span("closed-fd-span"):
    pass
print("to stdout")  # Python drops it when stdout is closed: sys.stdout is None
with open(sys.argv[1], "w") as report:
    report.write(repr((sys.stdout is None, sys.stderr is None)))
"""


@pytest.mark.parametrize("fd", [1, 2], ids=["stdout", "stderr"])
def test_a_closed_stdout_or_stderr_stays_closed_and_the_program_runs_traced(otlp_receiver: Receiver,
                                                                             tmp_path: Path, fd: int) -> None:
    def run(argv: list[str], report: Path) -> subprocess.CompletedProcess[str]:
        env = child_env({"CRYOSTORM_EXPORTER_TYPE": "otlp", "CRYOSTORM_COLLECTOR": otlp_receiver.grpc_endpoint})
        return subprocess.run([*argv, PYTHON, "-c", CLOSED_FD_PROGRAM, str(report)], env=env, capture_output=True,
                              text=True, timeout=60, check=False, preexec_fn=lambda: os.close(fd))

    bare = run([], tmp_path / "bare")
    launched = run([CRYOSTORM_RUN, "--"], tmp_path / "launched")
    expected_stdout = "" if fd == 1 else "to stdout\n"
    assert (launched.returncode, launched.stdout) == (bare.returncode, bare.stdout) == (0, expected_stdout), \
        launched.stderr
    # The program sees the descriptor closed, as without cryostorm.
    assert (tmp_path / "launched").read_text() == (tmp_path / "bare").read_text() == repr((fd == 1, fd == 2))
    assert [s.name for s in otlp_receiver.wait_for_spans(1, timeout=20)] == ["closed-fd-span"]
    assert all(line.startswith("cryostorm: ") for line in launched.stderr.splitlines()), launched.stderr


def test_a_launcher_whose_working_directory_was_deleted_runs_the_program(tmp_path: Path) -> None:
    """A shell left in a directory that was removed (a release directory replaced under it) starts programs
    there; Python runs them. The plan cache, keyed on the working directory, is skipped, not an internal error.
    (Not `python -c` importing pydantic there: on Python 3.13 pydantic_core's import itself fails, with '' on
    sys.path, which is not cryostorm's.)"""
    gone = tmp_path / "gone"
    gone.mkdir()
    script = (f'cd {gone} && rmdir {gone} && {CRYOSTORM_RUN} check-config >/dev/null && '
              f'for run in 1 2; do {CRYOSTORM_RUN} -- {PYTHON} -c "print(\'ran\')" || exit; done')
    result = subprocess.run(["sh", "-c", script], env=child_env(), capture_output=True, text=True, timeout=60,
                            check=False)
    assert (result.returncode, result.stdout) == (0, "ran\nran\n"), result.stderr
    assert "internal error" not in result.stderr and not gone.exists()


@pytest.mark.parametrize("command", ["check-config", "print-env", "doctor", "bootstrap", "schema"])
def test_a_subcommand_written_after_launcher_options_is_told_where_it_goes(command: str) -> None:
    result = run_launcher(["--env-file", "/dev/null", "--service-name", "x", command])
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    assert (f"  COMMAND = '{command}'\n    a cryostorm-run command, not a program: write it first, its options after "
            f"it (cryostorm-run {command} [OPTIONS]; see cryostorm-run {command} --help)") in result.stderr
    assert "command not found" not in result.stderr


def test_a_program_that_shares_a_subcommands_name_still_runs(tmp_path: Path) -> None:
    program = tmp_path / "print-env"
    program.write_text("#!/bin/sh\necho the program ran\n")
    program.chmod(0o755)
    result = run_launcher(["--quiet", "--", "print-env"], env={"PATH": f"{tmp_path}:/usr/bin:/bin"})
    assert (result.returncode, result.stdout) == (0, "the program ran\n"), result.stderr


@pytest.mark.parametrize("option", ["--env-file", "--config-file"])
@pytest.mark.parametrize("command", [["check-config"], ["print-env"], ["--", "true"]])
def test_a_settings_file_option_given_twice_is_refused_not_half_read(tmp_path: Path, option: str,
                                                                      command: list[str]) -> None:
    """Before, the second file silently replaced the first (docker reads every --env-file: its users expect both)."""
    first, second = tmp_path / "a", tmp_path / "b"
    first.write_text("CRYOSTORM_SERVICE__VERSION=9\n")
    second.write_text("CRYOSTORM_SERVICE__NAME=b\n")
    twice = [option, str(first), f"{option}={second}"]
    args = [*twice, *command] if command[0] == "--" else [*command, *twice]
    result = run_launcher(args)
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    assert f"  {option}\n    given more than once: one file is read (merge them into one file" in result.stderr


def test_a_program_argument_that_looks_like_a_file_option_is_the_programs() -> None:
    result = run_launcher(["--quiet", "--env-file", "/dev/null", PYTHON, "-c", "import sys; print(sys.argv[1:])",
                           "--env-file", "x"])
    assert "given more than once" not in result.stderr
    assert "not a regular file" in result.stderr  # /dev/null: the launcher's own option is still read
    result = run_launcher(["--quiet", PYTHON, "-c", "import sys; print(sys.argv[1:])", "--env-file", "x",
                           "--env-file", "y"])
    assert (result.returncode, result.stdout) == (0, "['--env-file', 'x', '--env-file', 'y']\n"), result.stderr
