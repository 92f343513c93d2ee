"""The README's main command works: a program runs under the launcher and its telemetry is printed."""

from __future__ import annotations

from conftest import PYTHON, ROOT, run_launcher


def test_hello_example_prints_its_output_and_console_telemetry() -> None:
    result = run_launcher(["--", PYTHON, str(ROOT / "examples" / "hello.py")])
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello, world\n"  # stdout is the program's alone
    assert "cryostorm: service=unknown-service" in result.stderr
    assert '"body": "hello from a program that knows nothing about telemetry"' in result.stderr
