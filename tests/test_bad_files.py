"""Files the settings come from that cannot be read as they stand: refused before the program starts (exit 2),
each problem named by file and line, no secret shown, and nothing said by the libraries that read them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from conftest import run_launcher

PROGRAM = ["--", sys.executable, "-c", "print('STARTED')"]


def test_an_env_file_line_python_dotenv_cannot_read_is_refused_not_skipped(tmp_path: Path) -> None:
    # python-dotenv skips such a line (logging "could not parse statement"): the setting on it was lost.
    env_file = tmp_path / "settings.env"
    env_file.write_text('CRYOSTORM_SERVICE__NAME=checkout\nCRYOSTORM_OTLP__HEADERS="authorization=Bearer s3cr3tv4lue\n'
                        "CRYOSTORM_EXPORTER_TYPE=console\nthis line is not a setting\n")
    result = run_launcher(["--env-file", str(env_file), *PROGRAM])
    assert result.returncode == 2, result.stderr
    assert "STARTED" not in result.stdout
    assert f"--env-file {env_file} line 2 = 'CRYOSTORM_OTLP__HEADERS=…'\n    not a NAME=value line" in result.stderr
    assert f"--env-file {env_file} line 4\n    not a NAME=value line" in result.stderr
    assert "s3cr3tv4lue" not in result.stderr and "python-dotenv" not in result.stderr, result.stderr


def test_a_well_formed_env_file_with_comments_exports_and_quoted_lines_still_runs(tmp_path: Path) -> None:
    env_file = tmp_path / "settings.env"
    env_file.write_text('# settings\nexport CRYOSTORM_SERVICE__NAME=checkout\n\nCRYOSTORM_SERVICE__VERSION="1 2"\n'
                        "CRYOSTORM_EXPORTER_TYPE=console\nNOTE='two\nlines'\n")
    result = run_launcher(["--quiet", "--env-file", str(env_file), *PROGRAM])
    assert (result.returncode, result.stdout) == (0, "STARTED\n"), result.stderr


@pytest.mark.parametrize(("path", "said"), [
    ("/dev/null", "not a regular file (a device or a pipe): write the settings to a file"),
    ("{tmp}", "is a directory, not a file"),
    ("{tmp}/missing.env", "no such file"),
])
def test_an_env_file_that_is_not_a_file_says_what_it_is(tmp_path: Path, path: str, said: str) -> None:
    path = path.replace("{tmp}", str(tmp_path))
    result = run_launcher(["--env-file", path, *PROGRAM])
    assert result.returncode == 2 and "STARTED" not in result.stdout
    assert f"  --env-file = '{path}'\n    {said} (check the path)" in result.stderr, result.stderr


def test_a_certificate_that_is_a_directory_says_so(tmp_path: Path) -> None:
    result = run_launcher(PROGRAM, env={"OTEL_EXPORTER_OTLP_CERTIFICATE": str(tmp_path)})
    assert result.returncode == 2 and "STARTED" not in result.stdout
    assert f"'{tmp_path}' is a directory: expected the path of a file" in result.stderr, result.stderr


@pytest.mark.parametrize(("text", "where"), [
    ("a: &a [*a]\n", ":1 a[0]"),
    ('file_format: "1.0"\nresource: &r\n  attributes:\n    - name: x\n      value: *r\n',
     ":5 resource.attributes[0].value"),
])
def test_a_recursive_yaml_alias_is_an_invalid_file_not_an_internal_error(tmp_path: Path, text: str,
                                                                         where: str) -> None:
    config = tmp_path / "otel.yaml"
    config.write_text(text)
    result = run_launcher(["--config-file", str(config), *PROGRAM])
    assert result.returncode == 2, result.stderr
    assert f"{config}{where}\n    an alias refers to a node that contains it (a recursive structure)" in result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("name", ["cryostorm.toml", "pyproject.toml"])
def test_a_config_file_saved_in_another_encoding_is_refused_by_line(tmp_path: Path, name: str) -> None:
    table = "[tool.cryostorm.service]" if name == "pyproject.toml" else "[service]"
    (tmp_path / name).write_bytes(f"{table}\nname = 'caf".encode() + b"\xe9'\n")  # Latin-1, as saved on Windows
    for args in (PROGRAM, ["check-config"]):
        result = run_launcher(args, cwd=tmp_path)
        assert result.returncode == 2 and "STARTED" not in result.stdout, result.stderr
        assert f"  {name}\n    not UTF-8 text: byte 0xe9 on line 2 (save it as UTF-8, the encoding TOML " \
               "requires)" in result.stderr, result.stderr
        assert "internal error" not in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("name", ["app.env", "otel.yaml", "cryostorm.toml", "pyproject.toml"])
def test_a_named_pipe_where_a_settings_file_goes_is_never_opened(tmp_path: Path, name: str) -> None:
    """Opening a FIFO blocks until something writes to it: the launcher, check-config (which warms the plan
    cache) and print-env hung for good. A pipe given by option is refused; one in the directory is not a file."""
    os.mkfifo(tmp_path / name)
    args = {"app.env": ["--env-file", name], "otel.yaml": ["--config-file", name]}.get(name, [])
    for command in ([*args, *PROGRAM], ["check-config", *args], ["print-env", *args]):
        result = run_launcher(command, cwd=tmp_path, timeout=30)  # a hang is a TimeoutExpired: a failure
        if args:
            assert result.returncode == 2, result.stderr
            assert f"{name}" in result.stderr and "not a regular file (a device or a pipe)" in result.stderr
        else:
            assert result.returncode == 0, result.stderr
        assert "internal error" not in result.stderr


def test_an_alias_bomb_in_an_otel_config_file_is_refused_at_once(tmp_path: Path) -> None:
    """Nine aliases of nine aliases, eight deep: 43 million values once expanded, from a 700-byte file. Every
    reader of the settings walks them all (the schema check took 30 s for seven levels); it is refused unread."""
    lines = ['file_format: "1.1"', "a: &a [" + ", ".join(["lol"] * 9) + "]"]
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
    config = tmp_path / "otel.yaml"
    config.write_text("\n".join(lines) + "\n")
    result = run_launcher(["check-config", "--config-file", str(config)], timeout=30)  # a hang: TimeoutExpired
    assert result.returncode == 2, result.stderr
    assert f"{config}:7 f\n    its aliases (*name) expand it to more than 100,000 values" in result.stderr


def test_a_key_given_twice_in_an_otel_config_file_is_refused_not_half_read(tmp_path: Path) -> None:
    """YAML requires unique keys; PyYAML keeps the last one, and a production exporter above a console one was
    dropped without a word (check-config said valid)."""
    config = tmp_path / "otel.yaml"
    config.write_text('file_format: "1.0"\ntracer_provider:\n  processors:\n    - batch:\n        exporter:\n'
                      "          otlp_http:\n            endpoint: http://prod:4318/v1/traces\ntracer_provider:\n"
                      "  processors:\n    - simple:\n        exporter:\n          console: {}\n"
                      "resource: {attributes: [{name: a, value: b, value: c}]}\n")
    result = run_launcher(["check-config", "--config-file", str(config)])
    assert result.returncode == 2, result.stderr
    assert "'tracer_provider' is given twice (lines 2 and 8): the second would replace the first whole" \
        in result.stderr
    assert "'value' is given twice (lines 13 and 13)" in result.stderr


def test_a_config_file_with_a_byte_order_mark_says_so(tmp_path: Path) -> None:
    (tmp_path / "cryostorm.toml").write_bytes(b"\xef\xbb\xbf[service]\nname = 'x'\n")  # as Windows editors save it
    result = run_launcher(PROGRAM, cwd=tmp_path)
    assert result.returncode == 2 and "STARTED" not in result.stdout, result.stderr
    assert "(the file starts with a byte-order mark) (save it as UTF-8 without a byte-order mark)" in result.stderr
