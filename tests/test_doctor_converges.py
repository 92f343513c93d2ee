"""doctor's advice, followed literally in a fresh venv against the real package index, ends healthy.

A user installs cryostorm-run, then `pip install flask opentelemetry-instrumentation-flask`: pip
takes the newest Flask instrumentation, which exists only on an older contrib line, downgrades what
it requires and leaves the rest (pip does not look at installed packages it was not asked about), so
`pip check` is broken. doctor must say so, agree with the hook's start-up warning, and give a
command that, run as printed, leaves a healthy environment with a clean `pip check`; the same for
the advice to add a missing instrumentation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(args: list[str] | str, venv: Path, timeout: float = 600, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """In the venv as an activated shell has it: its bin first on PATH, nothing of this suite's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRYOSTORM_", "OTEL_", "PYTHON", "VIRTUAL_ENV"))}
    env |= {"PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", "VIRTUAL_ENV": str(venv)}
    return subprocess.run(args, env=env, cwd=venv, capture_output=True, text=True, timeout=timeout, check=False,
                          shell=isinstance(args, str), **kwargs)  # type: ignore[call-overload, no-any-return]


def doctor(venv: Path) -> tuple[int, dict[str, object]]:
    result = run(["cryostorm-run", "doctor", "--json"], venv)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def fixes(report: dict[str, object], status: str, text: str) -> set[str]:
    findings = report["findings"]
    assert isinstance(findings, list)
    return {f["fix"] for f in findings if f["status"] == status and text in f["message"] and f["fix"]}


def pip_check(venv: Path) -> subprocess.CompletedProcess[str]:
    return run(["pip", "check"], venv)


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    started = time.monotonic()
    base = tmp_path_factory.mktemp("converge")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(base / "dist"),
                            str(ROOT)], capture_output=True, text=True, timeout=300, check=False)
    assert built.returncode == 0, built.stderr
    [wheel] = (base / "dist").glob("cryostorm_run-*.whl")
    path = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=120)
    installed = run(["pip", "install", "-q", str(wheel)], path)
    assert installed.returncode == 0, installed.stderr
    print(f"fresh venv with the wheel in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return path


def test_following_doctors_advice_ends_healthy_with_a_clean_pip_check(venv: Path) -> None:
    started = time.monotonic()
    # What a user types; on the newest line it leaves a broken environment behind.
    assert run(["pip", "install", "-q", "flask", "opentelemetry-instrumentation-flask"], venv).returncode == 0
    broken = pip_check(venv)
    code, report = doctor(venv)
    if broken.returncode != 0:
        assert code == 1, report  # never `healthy` while pip check lists broken requirements
        [command] = fixes(report, "problem", "")  # one command fixes them all
        # The hook says the same at start-up, with the same command.
        hooked = run(["cryostorm-run", "--quiet", "--", "python", "-c", "print('ran')"], venv)
        assert hooked.stdout == "ran\n"
        assert "cryostorm: OpenTelemetry packages disagree: " in hooked.stderr
        assert hooked.stderr.rstrip().endswith(f": {command}"), hooked.stderr
        done = run(command, venv)  # literally, as printed
        assert done.returncode == 0, f"{command}\n{done.stderr}"
        code, report = doctor(venv)
    else:  # the index had a Flask instrumentation for the newest line: nothing to fix, still checked below
        assert code == 0, report
    assert code == 0, report
    assert pip_check(venv).returncode == 0, pip_check(venv).stdout
    assert any(f["status"] == "ok" and f["message"].startswith("flask ") for f in report["findings"]), report  # type: ignore[attr-defined]
    assert run(["cryostorm-run", "--quiet", "--", "python", "-c", "pass"], venv).stderr == ""

    # Advice to add an instrumentation (Flask brings Jinja2): followed literally, still healthy.
    [command] = fixes(report, "info", "opentelemetry-instrumentation-jinja2 is not installed")
    assert "==" not in command
    done = run(command, venv)
    assert done.returncode == 0, f"{command}\n{done.stderr}"
    code, report = doctor(venv)
    assert code == 0, report
    assert any(f["status"] == "ok" and f["message"].startswith("jinja2 ") for f in report["findings"]), report  # type: ignore[attr-defined]
    assert pip_check(venv).returncode == 0, pip_check(venv).stdout
    print(f"broken, advised, fixed, extended in {time.monotonic() - started:.0f} s", file=sys.stderr)


def test_an_instrumentation_from_another_line_is_put_back_on_one(venv: Path) -> None:
    # --no-deps: an instrumentation two contrib releases older than the rest, nothing else moved.
    anchor = run(["python", "-c", "import importlib.metadata as m; print(m.version('opentelemetry-instrumentation'))"],
                 venv).stdout.strip()
    minor = int(anchor.split(".")[1].split("b")[0])
    other = f"opentelemetry-instrumentation-requests~=0.{minor - 2}.0b0"
    assert run(["pip", "install", "-q", "--no-deps", "requests", other], venv).returncode == 0
    assert pip_check(venv).returncode != 0
    code, report = doctor(venv)
    assert code == 1, report
    [command] = fixes(report, "problem", "")
    assert "==" not in command
    done = run(command, venv)
    assert done.returncode == 0, f"{command}\n{done.stderr}"
    code, report = doctor(venv)
    assert code == 0, report
    assert pip_check(venv).returncode == 0, pip_check(venv).stdout
