"""`cryostorm-run doctor`: instrumentations, OpenTelemetry version lines, and the command's interpreter."""

from __future__ import annotations

import importlib.metadata
import json
import os
import sys
import venv
from pathlib import Path

import pytest
from conftest import run_launcher
from typer.testing import CliRunner

from cryostorm_run.cli._app import app
from cryostorm_run.diagnose.doctor import DoctorReport, diagnose, render_report

CONTRIB = importlib.metadata.version("opentelemetry-instrumentation")
API = importlib.metadata.version("opentelemetry-api")
FLASK = importlib.metadata.version("flask")
# Installed on every line, its instrumentation (opentelemetry-instrumentation-grpc) on none: the
# mixed and floor lines install opentelemetry-instrumentation-flask.
GRPCIO = importlib.metadata.version("grpcio")


def fake_dist(site: Path, name: str, version: str, *requires: str) -> None:
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
             *(f"Requires-Dist: {r}" for r in requires)]
    (info / "METADATA").write_text("\n".join(lines) + "\n")


@pytest.fixture
def conflicting_site(tmp_path: Path) -> Path:
    """A site dir where opentelemetry-instrumentation-flask is from the previous contrib release."""
    site = tmp_path / "site"
    fake_dist(site, "opentelemetry-instrumentation-flask", "0.66b1", "opentelemetry-instrumentation==0.66b1",
              "flask>=1.0; extra == 'instruments'")
    return site


def messages(report: DoctorReport, status: str) -> list[tuple[str, str]]:
    return [(f.message, f.fix) for f in report.findings if f.status == status]


def test_version_conflict_shows_both_versions(conflicting_site: Path) -> None:
    report = diagnose(paths=[str(conflicting_site), *sys.path])
    assert messages(report, "problem") == [
        (f"contrib packages must share one version (opentelemetry-instrumentation {CONTRIB}); these differ: "
         "opentelemetry-instrumentation-flask 0.66b1", f"pip install 'opentelemetry-instrumentation-flask=={CONTRIB}'"),
        ("opentelemetry-instrumentation-flask 0.66b1 requires opentelemetry-instrumentation==0.66b1, but "
         f"opentelemetry-instrumentation {CONTRIB} is installed",
         f"pip install 'opentelemetry-instrumentation-flask=={CONTRIB}'"),
        (f"flask {FLASK}: opentelemetry-instrumentation-flask 0.66b1 does not match opentelemetry-instrumentation "
         f"{CONTRIB}", f"pip install 'opentelemetry-instrumentation-flask=={CONTRIB}'"),
    ]
    assert report.problems == 3


def test_version_conflict_in_a_subprocess_via_pythonpath(conflicting_site: Path) -> None:
    result = run_launcher(["doctor"], env={"PYTHONPATH": str(conflicting_site)})
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    assert (f"  PROBLEM opentelemetry-instrumentation-flask 0.66b1 requires opentelemetry-instrumentation==0.66b1, "
            f"but opentelemetry-instrumentation {CONTRIB} is installed\n") in result.stderr
    assert f"          pip install 'opentelemetry-instrumentation-flask=={CONTRIB}'\n" in result.stderr
    assert result.stderr.rstrip().endswith("cryostorm-run doctor: 3 problems")


def test_path_option_and_json(conflicting_site: Path) -> None:
    result = CliRunner().invoke(app, ["doctor", "--json", "--path", str(conflicting_site)])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["healthy"] is False
    assert sum(f["status"] == "problem" for f in data["findings"]) == 3


def test_stable_line_mismatch_lists_offenders(tmp_path: Path) -> None:
    fake_dist(tmp_path, "opentelemetry-sdk", "1.44.0")
    report = diagnose(paths=[str(tmp_path), *sys.path], libraries=[])
    assert (f"api/sdk/exporters must share one version (opentelemetry-api {API}); these differ: "
            f"opentelemetry-sdk 1.44.0", f"pip install 'opentelemetry-sdk=={API}'") in messages(report, "problem")


def test_missing_instrumentation_gets_the_pinned_pip_line() -> None:
    report = diagnose(libraries=[
        {"library": "grpcio >= 1.42.0", "instrumentation": "opentelemetry-instrumentation-grpc==0.1b0"},
        {"library": "grpcio >= 1.42.0", "instrumentation": "opentelemetry-instrumentation-openai-v2"},
    ])
    assert messages(report, "info") == [
        (f"grpcio {GRPCIO}: not instrumented (opentelemetry-instrumentation-grpc is not installed)",
         f"pip install 'opentelemetry-instrumentation-grpc=={CONTRIB}'"),
        (f"grpcio {GRPCIO}: not instrumented (opentelemetry-instrumentation-openai-v2 is not installed)",
         "pip install 'opentelemetry-instrumentation-openai-v2'"),  # not on the 0.xb line: as published
    ]
    assert report.problems == 0
    text = render_report(report)
    assert (f"(contrib packages share the 0.xb line of opentelemetry-instrumentation {CONTRIB}; if pip finds no such "
            "version of one, upgrade them all together)") in text


def test_installed_and_unsupported_library_versions() -> None:
    fastapi = importlib.metadata.version("fastapi")
    inst = "opentelemetry-instrumentation-fastapi"
    ok = diagnose(libraries=[{"library": "fastapi >= 0.1", "instrumentation": f"{inst}=={CONTRIB}"}])
    assert messages(ok, "ok")[-1] == (f"fastapi {fastapi}: instrumented by {inst} {CONTRIB}", "")
    old = diagnose(libraries=[{"library": "fastapi < 0.1", "instrumentation": f"{inst}=={CONTRIB}"}])
    assert messages(old, "problem") == [
        (f"fastapi {fastapi}: outside what {inst} {CONTRIB} supports (<0.1), so it is not instrumented",
         "use fastapi <0.1")]


def test_this_environment_is_healthy() -> None:
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 0, result.stderr
    assert result.stderr.rstrip().endswith("cryostorm-run doctor: healthy")
    assert f"fastapi {importlib.metadata.version('fastapi')}: instrumented by" in result.stderr


def test_command_with_our_interpreter() -> None:
    result = CliRunner().invoke(app, ["doctor", "--", sys.executable, "app.py"])
    assert result.exit_code == 0, result.stderr
    assert (f"  ok      {sys.executable} resolves to {sys.executable} (a Python interpreter), Python "
            f"{sys.version.split()[0]} in {sys.prefix}: the hook will instrument it") in result.stderr


@pytest.fixture(scope="module")
def other_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another virtualenv (no pip, no cryostorm): the 'wrong python on PATH'."""
    path = tmp_path_factory.mktemp("other") / "venv"
    venv.create(path, with_pip=False, symlinks=True)
    return path


def test_wrong_python_on_path(other_venv: Path) -> None:
    env = {"PATH": f"{other_venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    result = CliRunner().invoke(app, ["doctor", "--", "python", "app.py"], env=env)
    assert result.exit_code == 1
    assert (f"  PROBLEM python resolves to {other_venv / 'bin' / 'python'} (a Python interpreter), Python "
            f"{sys.version.split()[0]} in {other_venv}: not the environment cryostorm-run is installed in "
            f"({sys.prefix}), so the program would run NOT instrumented\n"
            f"          run {sys.executable} instead, activate that environment, or install cryostorm-run into "
            f"{other_venv}\n") in result.stderr


def test_script_with_an_env_python_shebang(other_venv: Path, tmp_path: Path) -> None:
    script = tmp_path / "serve"
    script.write_text("#!/usr/bin/env -S python -u\nprint('hi')\n")
    script.chmod(0o755)
    report = diagnose([str(script)], environ={"PATH": f"{other_venv / 'bin'}{os.pathsep}{os.environ['PATH']}"},
                      libraries=[])
    [finding] = [f for f in report.findings if f.section == "command"]
    assert finding.status == "problem"
    assert finding.message.startswith(f"{script} resolves to {script} (a script whose #! line runs "
                                      f"{other_venv / 'bin' / 'python'}), Python")


def test_console_script_of_this_environment() -> None:
    report = diagnose([str(Path(sys.executable).parent / "uvicorn")], libraries=[])
    [finding] = [f for f in report.findings if f.section == "command"]
    assert finding.status == "ok", finding


def test_non_python_command_and_missing_command(tmp_path: Path) -> None:
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\nexec python app.py\n")
    script.chmod(0o755)
    report = diagnose([str(script)], libraries=[])
    assert messages(report, "info") == [
        (f"{script} ({script}) is not a Python program; the hook serves the Python programs it starts",
         "check the python it runs: cryostorm-run doctor -- PYTHON")]
    missing = diagnose(["no-such-command-xyz"], environ={"PATH": str(tmp_path)}, libraries=[])
    assert messages(missing, "problem") == [
        ("no-such-command-xyz: command not found (searched PATH)", "check the command and PATH")]
