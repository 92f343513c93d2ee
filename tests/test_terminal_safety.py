"""Nothing a setting holds can drive the terminal or flood it: control characters are shown escaped,
huge values shortened, in every human-facing message (launcher errors, warnings, the settings table,
the hook's start-up line)."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CRYOSTORM_RUN, child_env, drain_pty, run_launcher
from typer.testing import CliRunner

from cryostorm_run.cli._app import app

ESC = "\x1b]0;owned\x07\x1b[2J\x1b[31m"  # set the window title, clear the screen, red
HUGE = "9" * 1_000_000


def invoke(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    result = CliRunner().invoke(app, args, env=env)
    return result.exit_code, result.stdout + result.stderr


def assert_tame(output: str, limit: int = 20_000) -> None:
    assert "\x1b" not in output and "\x07" not in output, output
    assert len(output) < limit, len(output)
    assert "Traceback" not in output and "internal error" not in output


@pytest.mark.parametrize(("env", "code"), [
    ({"CRYOSTORM_TRACING__SAMPLE_RATE": ESC}, 2),  # refused: quoted in the error
    ({"CRYOSTORM_COLLECTOR": f"http://x{ESC}:4317"}, 2),
    ({"OTEL_EXPORTER_OTLP_TIMEOUT": ESC}, 2),  # refused by the OTEL_* reader
    ({"CRYOSTORM_SERVIC__NAME": ESC}, 2),  # unknown setting
    ({"OTEL_EXPORTER_OTLP_ENDPIONT" + ESC: "x"}, 0),  # a warning naming the variable (accepted)
    ({"CRYOSTORM_SERVICE__NAME": "ok" + ESC}, 0),  # accepted: shown in the table
    ({"CRYOSTORM_SERVICE__NAME": "[/bold] [red]x"}, 0),  # rich markup in a value is shown, not parsed
])
def test_control_characters_never_reach_the_terminal(env: dict[str, str], code: int) -> None:
    for args in (["check-config"], ["print-env", "--format", "docker"]):
        result = CliRunner().invoke(app, args, env=env)
        assert result.exit_code == code, result.output
        assert_tame(result.stderr)  # print-env's stdout is data: values exactly as they are
    result = run_launcher(["--", sys.executable, "-c", "pass"], env=env)
    assert result.returncode == code, result.stderr
    assert_tame(result.stderr)


def test_escapes_are_shown_as_escapes() -> None:
    code, output = invoke(["check-config"], {"CRYOSTORM_TRACING__SAMPLE_RATE": "\x1b[2J"})
    assert code == 2
    assert "CRYOSTORM_TRACING__SAMPLE_RATE = '\\x1b[2J'" in output


@pytest.mark.parametrize("name", ["CRYOSTORM_TRACING__SAMPLE_RATE", "OTEL_EXPORTER_OTLP_TIMEOUT",
                                  "CRYOSTORM_COLLECTOR", "CRYOSTORM_OTLP__CERTIFICATE_FILE", "CRYOSTORM_SERVIC__NAME"])
def test_a_one_megabyte_value_is_shortened_in_every_message(name: str, tmp_path: Path) -> None:
    for args in (["check-config"], ["print-env"], ["check-config", "--set", f"tracing.sample_rate={HUGE}"]):
        code, output = invoke(args, {name: HUGE})
        assert code == 2, output[:2000]
        assert_tame(output, 5000)
        assert (args[1:2] == ["--set"] and "--set tracing.sample_rate" in output) or name in output
        assert "(1000000 chars)" in output or name == "CRYOSTORM_SERVIC__NAME"  # an unknown one: value not shown
    env_file = tmp_path / "huge.env"
    env_file.write_text(f"{name}={HUGE}\n")
    result = run_launcher(["--env-file", str(env_file), "--", sys.executable, "-c", "pass"])
    assert result.returncode == 2
    assert_tame(result.stderr, 5000)
    assert "(1000000 chars)" in result.stderr or name == "CRYOSTORM_SERVIC__NAME"


def test_the_hooks_start_up_line_escapes_the_service_name() -> None:
    result = run_launcher(["--", sys.executable, "-c", "pass"], env={"CRYOSTORM_SERVICE__NAME": "svc" + ESC + "\nx"})
    assert result.returncode == 0, result.stderr
    assert "cryostorm: service=svc\\x1b]0;owned\\x07\\x1b[2J\\x1b[31m\\nx env=" in result.stderr
    assert_tame(result.stderr)


def print_env_on_a_terminal(env: dict[str, str]) -> tuple[bytes, str]:
    """print-env's stdout as a terminal receives it, and its stderr (a pipe)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([CRYOSTORM_RUN, "print-env"], env=child_env(env), stdout=follower,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    os.close(follower)
    received = drain_pty(leader)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    return received, stderr.decode()


def test_print_env_on_a_terminal_shows_a_values_escapes_and_says_where_the_exact_bytes_are() -> None:
    stdout, stderr = print_env_on_a_terminal({"CRYOSTORM_SERVICE__NAME": "svc" + ESC})
    assert b"\x1b" not in stdout and b"\x07" not in stdout, stdout
    assert b"export OTEL_SERVICE_NAME='svc\\x1b]0;owned\\x07\\x1b[2J\\x1b[31m'" in stdout
    assert stderr == ("cryostorm: warning: print-env shows control characters as \\xNN on a terminal, where they "
                      "would act, not show: pipe or redirect the output for the exact values\n")
    # into a pipe (what `eval "$(cryostorm-run print-env)"` reads) the value is exact, and nothing is said
    result = run_launcher(["print-env"], env={"CRYOSTORM_SERVICE__NAME": "svc" + ESC})
    assert f"export OTEL_SERVICE_NAME='svc{ESC}'" in result.stdout and result.stderr == ""
    # a value without one: the same bytes on a terminal as in a pipe (line ends aside), no warning
    stdout, stderr = print_env_on_a_terminal({"CRYOSTORM_SERVICE__NAME": "svc\tok"})
    assert stderr == "" and b"export OTEL_SERVICE_NAME='svc\tok'" in stdout
