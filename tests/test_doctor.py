"""`cryostorm-run doctor`: instrumentations, OpenTelemetry version lines, and the command's interpreter."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shlex
import subprocess
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
# Another contrib line than the installed one, whichever line this suite runs on.
OTHER = f"0.{int(CONTRIB.split('.')[1].split('b')[0]) - 1}b0"
OTHER_API = f"1.{int(API.split('.')[1]) - 1}.0"


def fake_dist(site: Path, name: str, version: str, *requires: str) -> None:
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
             *(f"Requires-Dist: {r}" for r in requires)]
    (info / "METADATA").write_text("\n".join(lines) + "\n")


def line_command(site: Path | None = None, *added: str) -> str:
    """What the one fixing command must hold: every installed opentelemetry-* package by name, but
    cryostorm-run's own requirements with their ranges, and what is added; never a version of ours ..."""
    dists = [importlib.metadata.Distribution.at(p) for p in (site.glob("*.dist-info") if site else [])]
    dists += importlib.metadata.distributions()
    # ... and by name every other package that requires one (FastAPI requires opentelemetry-api).
    wanted = {n: n for d in dists if (n := d.metadata["Name"].lower().replace("_", "-")) != "cryostorm-run" and (
        n.startswith("opentelemetry-") or any(r.startswith("opentelemetry-") and ";" not in r
                                              for r in d.requires or ()))}
    for req in importlib.metadata.requires("cryostorm-run") or []:
        name = req.split("<")[0].split(">")[0].split("=")[0].split("~")[0].strip()
        if name.startswith("opentelemetry-") and ";" not in req:
            wanted[name] = req.replace(" ", "")
    for text in added:
        wanted.setdefault(text, text)
    return "pip install " + " ".join(shlex.quote(wanted[k]) for k in sorted(wanted))


@pytest.fixture
def conflicting_site(tmp_path: Path) -> Path:
    """A site dir where opentelemetry-instrumentation-flask is from another contrib line than the installed one."""
    site = tmp_path / "site"
    fake_dist(site, "opentelemetry-instrumentation-flask", OTHER, f"opentelemetry-instrumentation=={OTHER}",
              "flask>=1.0; extra == 'instruments'")
    return site


def messages(report: DoctorReport, status: str) -> list[tuple[str, str]]:
    return [(f.message, f.fix) for f in report.findings if f.status == status]


def test_version_conflict_shows_both_versions_and_one_command(conflicting_site: Path) -> None:
    report = diagnose(paths=[str(conflicting_site), *sys.path])
    command = line_command(conflicting_site)
    assert messages(report, "problem") == [
        (f"contrib packages are not on one release (opentelemetry-instrumentation {CONTRIB}); these differ: "
         f"opentelemetry-instrumentation-flask {OTHER}", command),
        (f"opentelemetry-instrumentation-flask {OTHER} requires opentelemetry-instrumentation=={OTHER}, but "
         f"opentelemetry-instrumentation {CONTRIB} is installed", command),
        (f"flask {FLASK}: opentelemetry-instrumentation-flask {OTHER} is not from the line of "
         f"opentelemetry-instrumentation {CONTRIB}", command),
    ]
    assert "==" not in command and "'opentelemetry-instrumentation<1,>=0.61b0'" in command
    assert report.problems == 3
    text = render_report(report)
    assert text.count(command) == 2  # once for the packages, once for the instrumentations


def test_version_conflict_in_a_subprocess_via_pythonpath(conflicting_site: Path) -> None:
    result = run_launcher(["doctor"], env={"PYTHONPATH": str(conflicting_site)})
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    assert (f"  PROBLEM opentelemetry-instrumentation-flask {OTHER} requires opentelemetry-instrumentation=={OTHER}, "
            f"but opentelemetry-instrumentation {CONTRIB} is installed\n") in result.stderr
    assert f"          {line_command(conflicting_site)}\n" in result.stderr
    assert result.stderr.rstrip().endswith("cryostorm-run doctor: 3 problems")


def test_path_option_and_json(conflicting_site: Path) -> None:
    result = CliRunner().invoke(app, ["doctor", "--json", "--path", str(conflicting_site)])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["healthy"] is False
    assert sum(f["status"] == "problem" for f in data["findings"]) == 3


def test_stable_line_mismatch_lists_offenders(tmp_path: Path) -> None:
    pinned, loose = tmp_path / "pinned", tmp_path / "loose"
    fake_dist(pinned, "opentelemetry-sdk", OTHER_API, f"opentelemetry-api=={OTHER_API}")
    report = diagnose(paths=[str(pinned), *sys.path], libraries=[])
    assert (f"api/sdk/exporters are not on one release (opentelemetry-api {API}); these differ: "
            f"opentelemetry-sdk {OTHER_API}", line_command(pinned)) in messages(report, "problem")
    # Another release whose declared requirements are all met: worth knowing, not broken.
    fake_dist(loose, "opentelemetry-sdk", f"{API}.post1", f"opentelemetry-api=={API}")
    report = diagnose(paths=[str(loose), *sys.path], libraries=[])
    assert messages(report, "info") == [
        (f"api/sdk/exporters differ from opentelemetry-api {API} (opentelemetry-sdk {API}.post1), but every "
         "requirement they declare is met", "")]
    assert report.problems == 0


def test_cryostorm_runs_own_requirements_are_checked_and_kept(tmp_path: Path) -> None:
    # An SDK below cryostorm-run's own floor, with an API to match: nothing among OpenTelemetry's own
    # packages is broken, cryostorm-run's requirement is, and the fix keeps cryostorm-run's range.
    fake_dist(tmp_path, "opentelemetry-sdk", "1.39.0", "opentelemetry-api==1.39.0")
    fake_dist(tmp_path, "opentelemetry-api", "1.39.0")
    report = diagnose(paths=[str(tmp_path), *sys.path], libraries=[])
    problems = messages(report, "problem")
    own = importlib.metadata.version("cryostorm-run")
    assert (f"cryostorm-run {own} requires opentelemetry-sdk<2,>=1.40, but opentelemetry-sdk 1.39.0 is installed",
            line_command(tmp_path)) in problems
    assert "'opentelemetry-sdk<2,>=1.40'" in problems[0][1]


def test_doctor_and_pip_check_agree(tmp_path: Path) -> None:
    # A requirement pip check sees broken that is not on an OpenTelemetry package (wrapt), declared by
    # an instrumentation that is otherwise on the installed line.
    fake_dist(tmp_path, "opentelemetry-instrumentation-flask", CONTRIB, f"opentelemetry-instrumentation=={CONTRIB}",
              "wrapt>=99")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    checked = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, env=env,
                             check=False, timeout=120)
    assert checked.returncode == 1 and f"opentelemetry-instrumentation-flask {CONTRIB} has requirement wrapt>=99" in \
        checked.stdout, checked.stdout
    report = diagnose(paths=[str(tmp_path), *sys.path], libraries=[])
    wrapt = importlib.metadata.version("wrapt")
    assert messages(report, "problem") == [
        (f"opentelemetry-instrumentation-flask {CONTRIB} requires wrapt>=99, but wrapt {wrapt} is installed",
         line_command(tmp_path, "wrapt>=99"))]
    healthy = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, check=False,
                             timeout=120)
    assert (healthy.returncode == 0) == (diagnose(libraries=[]).problems == 0), healthy.stdout


def test_missing_instrumentation_is_installed_with_the_installed_line(tmp_path: Path) -> None:
    # bootstrap_gen names the anchor's version (`==`), which need not exist for that package: the
    # advice names it without a version, beside the installed OpenTelemetry packages.
    fake_dist(tmp_path, "fakelib", "1.0")
    report = diagnose(paths=[str(tmp_path), *sys.path], libraries=[
        {"library": "fakelib >= 1.0", "instrumentation": f"opentelemetry-instrumentation-fakelib=={CONTRIB}"},
        {"library": "fakelib >= 1.0", "instrumentation": "opentelemetry-instrumentation-fakelib-v2"},
        {"library": "fakelib >= 2.0", "instrumentation": "opentelemetry-instrumentation-fakelib-v3"},
    ])
    both = line_command(tmp_path, "opentelemetry-instrumentation-fakelib", "opentelemetry-instrumentation-fakelib-v2")
    assert messages(report, "info") == [
        ("fakelib 1.0: not instrumented (opentelemetry-instrumentation-fakelib is not installed)", both),
        ("fakelib 1.0: not instrumented (opentelemetry-instrumentation-fakelib-v2 is not installed)", both),
    ]
    assert report.problems == 0
    rendered = render_report(report)
    assert "pip keeps what fits and moves the rest to one line" in rendered
    assert rendered.count(both) == 1  # one command for every missing instrumentation, after them all


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
                                      f"{other_venv / 'bin' / 'python'} -u), Python")


def test_this_environment_through_a_symlinked_path_is_ok(tmp_path: Path) -> None:
    link = tmp_path / "current"  # `/srv/app/current -> releases/42`
    link.symlink_to(sys.prefix, target_is_directory=True)
    report = diagnose([str(link / "bin" / "python"), "app.py"], libraries=[])
    [finding] = [f for f in report.findings if f.section == "command"]
    assert (finding.status, finding.message) == ("ok", f"{link / 'bin' / 'python'} resolves to "
                                                 f"{link / 'bin' / 'python'} (a Python interpreter), Python "
                                                 f"{sys.version.split()[0]} in {link}: the hook will instrument it")


@pytest.mark.parametrize(("line", "flag"), [(f"#!{sys.executable} -I", "-I"),
                                            ("#!/usr/bin/env -S python3 -sE", "-E")])
def test_a_script_whose_shebang_skips_the_hook_is_a_problem(tmp_path: Path, line: str, flag: str) -> None:
    script = tmp_path / "tool"
    script.write_text(f"{line}\nprint('hi')\n")
    script.chmod(0o755)
    report = diagnose([str(script)], environ={"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"},
                      libraries=[])
    [finding] = [f for f in report.findings if f.section == "command"]
    assert finding.status == "problem", finding
    assert finding.message.endswith(f", but with {flag} it never imports the hook: the program would run NOT "
                                    "instrumented"), finding.message


def test_another_environment_with_its_own_cryostorm_is_sent_to_its_own_launcher(tmp_path: Path) -> None:
    app_venv = tmp_path / "app"  # the program's venv, with cryostorm-run of its own; this one is pipx's, say
    venv.create(app_venv, with_pip=False, symlinks=True)
    (app_venv / "bin" / "cryostorm-run").write_text("#!/bin/sh\n")
    report = diagnose([str(app_venv / "bin" / "python"), "app.py"], libraries=[])
    [finding] = [f for f in report.findings if f.section == "command"]
    assert (finding.status, finding.fix) == ("problem", f"run its own {app_venv / 'bin' / 'cryostorm-run'} "
                                             "(installed there too)")


def test_console_script_of_this_environment() -> None:
    report = diagnose([str(Path(sys.executable).parent / "uvicorn")], libraries=[])
    [finding] = [f for f in report.findings if f.section == "command"]
    assert finding.status == "ok", finding


@pytest.mark.parametrize(("assignment", "problem"), [("export PYTHONPATH=/app/lib", True),
                                                     ("PYTHONPATH=/app/lib; export PYTHONPATH", True),
                                                     ("  PYTHONPATH=/srv/lib exec python app.py", True),
                                                     ("export PYTHONPATH=/app/lib${PYTHONPATH:+:$PYTHONPATH}", False),
                                                     ('export PYTHONPATH="$PYTHONPATH:/app/lib"', False)])
def test_a_shell_entrypoint_that_replaces_pythonpath_is_a_problem(tmp_path: Path, assignment: str,
                                                                  problem: bool) -> None:
    script = tmp_path / "entrypoint.sh"
    script.write_text(f"#!/bin/sh\n{assignment}\nexec python app.py\n")
    script.chmod(0o755)
    report = diagnose([str(script)], libraries=[])
    [finding] = [f for f in report.findings if f.section == "command"]
    if problem:
        assert (finding.status, finding.fix) == ("problem",
                                                 "append instead: PYTHONPATH=/app/lib${PYTHONPATH:+:$PYTHONPATH}")
        assert f"sets PYTHONPATH without keeping the one it was given ({assignment.strip()!r})" in finding.message
    else:
        assert finding.status == "info", finding


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


def test_a_refused_setting_is_a_problem_named_as_written_and_a_valid_one_is_ok(tmp_path: Path) -> None:
    # `cryostorm-run -- COMMAND` would refuse to start with these settings: doctor must not say healthy.
    refused = {"CRYOSTORM_TRACING__SAMPLE_RATE": "1.5", "OTEL_EXPORTER_OTLP_ENDPOINT": "ftp://user:hunter2@c:21"}
    result = CliRunner().invoke(app, ["doctor"], env=refused)
    assert result.exit_code == 1, result.output
    assert "PROBLEM CRYOSTORM_TRACING__SAMPLE_RATE = '1.5': " in result.stderr
    assert "PROBLEM OTEL_EXPORTER_OTLP_ENDPOINT = 'ftp://****:****@c:21': " in result.stderr
    assert "hunter2" not in result.output
    assert "refuses to start (exit 2)" in result.stderr
    assert result.stderr.index("Configuration") < result.stderr.index("OpenTelemetry packages")
    # the same in --json, and a valid environment: ok, with what check-config would warn about as info
    result = CliRunner().invoke(app, ["doctor", "--json"], env=refused)
    found = [(f["status"], f["message"].split(" = ")[0]) for f in json.loads(result.stdout)["findings"]
             if f["section"] == "configuration"]
    assert sorted(found) == [("problem", "CRYOSTORM_TRACING__SAMPLE_RATE"), ("problem", "OTEL_EXPORTER_OTLP_ENDPOINT")]
    report = diagnose(environ={"CRYOSTORM_COLLECTOR": "http://c:4317"}, libraries=[], configuration=True)
    found = [(f.status, f.message) for f in report.findings if f.section == "configuration"]
    assert found[-1] == ("ok", "the settings in this environment are valid")
    assert [status for status, _ in found[:-1]] == ["info"] and "CRYOSTORM_EXPORTER_TYPE=otlp" in found[0][1]
    assert all(f.section != "configuration" for f in diagnose(environ=refused, libraries=[]).findings)
