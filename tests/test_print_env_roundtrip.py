"""Every `print-env` format reads back exactly through its real consumer, whatever the value holds.

Hostile values (quotes, `$`, `${VAR}`, `$(cmd)`, backquotes, backslashes, line breaks, control
characters, emoji) go into a setting; each format's output is read by what reads it in real life:
bash `eval` (shell), bash `set -a; . file` and python-dotenv (dotenv), `docker run --env-file`'s
rules (docker is not installed here: emulated below from its documented parsing), two YAML parsers
(k8s) and JSON. A format that cannot hold a value refuses it (exit 2, the variable named), and only
for the documented reasons; nothing a value holds is ever executed.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tempfile
from pathlib import Path

import yaml
from conftest import examples
from dotenv import dotenv_values
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML
from typer.testing import CliRunner

from cryostorm_run.cli._app import app

NAME = "OTEL_SERVICE_NAME"
PAYLOADS = ["'", '"', "$", "${HOME}", "${X:-y}", "$HOME", "$(touch pwned)", "`touch pwned2`", ";", "\\", "\\\\",
            "\\'", "\\n", "\n", "\r", "\r\n", "\t", "\x1b[2J", "\x07", "\x0b", "\x7f", "\x85", "\u2028", "\ufeff",
            "🙂", "\U0010fffd", "#", " # not a comment", "=", " ", "&&", "|", "!", "*", "%s", "é"]
CHARS = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")  # env values hold no NUL
HOSTILE = st.lists(st.sampled_from(PAYLOADS) | st.text(CHARS, min_size=1, max_size=4), min_size=1, max_size=8
                   ).map("".join).filter(lambda v: len(v) <= 255 and v.strip())  # service.name: 1-255, not blank
EXAMPLES = settings(max_examples=examples(80), deadline=None, suppress_health_check=[HealthCheck.too_slow])


def print_env(fmt: str, value: str) -> tuple[int, str, str]:
    # --show-secrets: a value that looks like `user:password@host` would be masked otherwise.
    result = CliRunner().invoke(app, ["print-env", "--format", fmt, "--show-secrets"],
                                env={"CRYOSTORM_SERVICE__NAME": value})
    # click's Result.stdout turns \r\n into \n: read the bytes the command wrote.
    return result.exit_code, result.stdout_bytes.decode(), result.stderr


def bash(script: str, text: str) -> str:
    """Run `script` in a fresh temp dir holding `f` (the output); assert nothing else appeared there."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "f").write_text(text)
        done = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], cwd=tmp, capture_output=True,
                              check=True, env={"PATH": os.environ["PATH"], "HOME": tmp})
        assert sorted(os.listdir(tmp)) == ["f"], "a value was executed"
        return done.stdout.decode()  # bytes: text mode would turn a \r into \n


def docker_env_file(text: str) -> dict[str, str]:
    """`docker run --env-file` as documented (docker/cli opts/file.go): one NAME=VALUE a line (lines end at
    \\n, a trailing \\r dropped), leading whitespace trimmed, `#` lines are comments, the value taken
    literally to the end of the line: no quotes removed, no escapes, no expansion; valid UTF-8 only."""
    text.encode("utf-8")
    found = {}
    for raw in text.split("\n"):
        line = raw.removesuffix("\r").lstrip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep and name and not any(c.isspace() for c in name), f"docker refuses the line {raw!r}"
        found[name] = value
    return found


def refused(code: int, stdout: str, stderr: str) -> bool:
    if code == 0:
        return False
    assert code == 2, stderr
    assert stdout == ""
    assert f"{NAME} (from CRYOSTORM_SERVICE__NAME)" in stderr and "use --format" in stderr
    assert "Traceback" not in stderr and "internal error" not in stderr
    return True


@EXAMPLES
@given(HOSTILE)
def test_shell_round_trips_through_bash_eval(value: str) -> None:
    code, out, err = print_env("shell", value)
    assert code == 0, err
    assert bash(f'eval "$(cat f)"; printf %s "${NAME}"', out) == value


@EXAMPLES
@given(HOSTILE)
def test_dotenv_round_trips_through_bash_and_python_dotenv(value: str) -> None:
    code, out, err = print_env("dotenv", value)
    if refused(code, out, err):
        # Only what a shell and python-dotenv cannot both read back is refused.
        assert "\r" in value or "${" in value or (
            ("$" in value or "`" in value) and ("'" in value or "\\\\" in value or value.endswith("\\"))), value
        return
    assert bash(f'set -a; . ./f; printf %s "${NAME}"', out) == value
    assert bash(f'bash --norc -c \'set -a; . ./f; printf %s "${NAME}"\'', out) == value  # set -a exports it
    assert dotenv_values(stream=io.StringIO(out))[NAME] == value
    with tempfile.TemporaryDirectory() as tmp:  # from a file too: read in text mode, as load_dotenv does
        (Path(tmp) / ".env").write_text(out)
        assert dotenv_values(Path(tmp) / ".env")[NAME] == value


@EXAMPLES
@given(HOSTILE)
def test_docker_env_file_takes_values_literally(value: str) -> None:
    code, out, err = print_env("docker", value)
    if refused(code, out, err):
        assert "\n" in value or "\r" in value, value
        assert "docker --env-file cannot hold" in err
        return
    assert docker_env_file(out)[NAME] == value


@EXAMPLES
@given(HOSTILE)
def test_k8s_round_trips_through_yaml_1_2_and_1_1(value: str) -> None:
    code, out, err = print_env("k8s", value)
    assert code == 0, err
    for items in (YAML(typ="safe", pure=True).load(out), yaml.safe_load(out)):
        assert {item["name"]: item["value"] for item in items}[NAME] == value


@EXAMPLES
@given(HOSTILE)
def test_json_round_trips(value: str) -> None:
    code, out, err = print_env("json", value)
    assert code == 0, err
    assert json.loads(out)[NAME] == value


def test_dotenv_never_runs_a_command_substitution() -> None:
    # The report's case: `set -a; . file` created the file with the old json.dumps quoting.
    for value in ("$(touch pwned)", "`touch pwned`", "a\nb $(touch pwned)"):
        code, out, err = print_env("dotenv", value)
        assert code == 0, err
        assert bash(f'set -a; . ./f; printf %s "${NAME}"', out) == value


def test_a_comment_cannot_be_broken_out_of(tmp_path: Path) -> None:
    # The source comment names the env file; a line break in its path must not end the comment.
    folder = tmp_path / "x\n$(touch pwned)"
    folder.mkdir()
    env_file = folder / "e.env"
    env_file.write_text("CRYOSTORM_SERVICE__NAME=ok\n")
    for fmt in ("shell", "dotenv"):
        result = CliRunner().invoke(app, ["print-env", "--format", fmt, "--env-file", str(env_file)], env={})
        assert result.exit_code == 0, result.stderr
        assert bash(f'set -a; eval "$(cat f)"; printf %s "${NAME}"', result.stdout) == "ok"
        assert dotenv_values(stream=io.StringIO(result.stdout))[NAME] == "ok"
    result = CliRunner().invoke(app, ["print-env", "--format", "docker", "--env-file", str(env_file)], env={})
    assert docker_env_file(result.stdout)[NAME] == "ok"
