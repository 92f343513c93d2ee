"""OTEL_PYTHON_DISABLED_INSTRUMENTATIONS with a misspelt name: the instrumentation stays on, and that is said."""

from __future__ import annotations

import sys

from conftest import run_launcher


def test_a_misspelt_disabled_instrumentation_is_named_with_the_one_meant() -> None:
    program = ["--quiet", "--", sys.executable, "-c", "import requests; print('ran')"]
    env = {"CRYOSTORM_EXPORTER_TYPE": "console", "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "reqests,not-installed-here"}
    result = run_launcher(program, env=env)
    assert (result.returncode, result.stdout) == (0, "ran\n"), result.stderr
    # a name no installed instrumentation is close to (a variable shared by services) is not mentioned
    assert result.stderr.splitlines() == [
        "cryostorm: OTEL_PYTHON_DISABLED_INSTRUMENTATIONS names 'reqests', which is no installed instrumentation, "
        "so 'requests' stays instrumented: did you mean 'requests'?"], result.stderr


def test_a_correctly_named_disabled_instrumentation_is_not_mentioned() -> None:
    env = {"CRYOSTORM_EXPORTER_TYPE": "console", "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "requests"}
    result = run_launcher(["--quiet", "--", sys.executable, "-c", "import requests; print('ran')"], env=env)
    assert (result.returncode, result.stdout, result.stderr) == (0, "ran\n", "")
