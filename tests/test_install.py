"""Installing cryostorm-run into an application's environment, for real: fresh venvs, pip, the real
package index (whatever line the rest of the suite runs on).

* Flask: `pip install <wheel> flask opentelemetry-instrumentation-flask gunicorn` resolves to a
  consistent OpenTelemetry line (today 1.45.1 / 0.66b1: the Flask instrumentation has no 0.66b2),
  `pip check` is clean, and a plain Flask app under that venv's `cryostorm-run` is traced by Flask's
  instrumentation, served by Flask's own server and by gunicorn.
* A pinned team: `pip install 'opentelemetry-sdk==1.40.0' <wheel>` keeps the pin, `pip check` is
  clean, and a program under that venv's `cryostorm-run` exports its spans over OTLP.

The cryostorm-run wheel is built once per session from this repository. Nothing here is skipped:
without the package index these tests fail and say so.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from conftest import PYTHON, ROOT, child_env
from otlp_receiver import ReceivedSpan, Receiver
from test_frameworks import otlp_env, wait_route_span
from test_workers import APPS, Server

PIP_TIMEOUT = 300  # s, one pip call (resolution with backtracking included)
INDEX_TROUBLE = ("Could not find a version", "No matching distribution", "NewConnectionError", "Failed to establish",
                 "Temporary failure in name resolution", "Network is unreachable", "Read timed out", "SSLError",
                 "ProxyError", "403 Client Error", "404 Client Error")
OTEL_DISTS = ("opentelemetry-api", "opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-grpc",
              "opentelemetry-instrumentation", "opentelemetry-distro", "opentelemetry-instrumentation-flask",
              "opentelemetry-instrumentation-wsgi", "flask", "gunicorn", "cryostorm-run")


def run(cmd: Sequence[str | Path], what: str, timeout: float = PIP_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run `cmd` to completion (bounded); a timeout fails the test naming `what`."""
    try:
        return subprocess.run([str(c) for c in cmd], env=child_env(), capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{what} did not finish within {timeout} s (is the package index slow or unreachable?): "
                    f"{(exc.stderr or b'')[-3000:]!r}")


def pip(python: Path | str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """`python -m pip ARGS`; failing, the test fails with pip's own words and, when they say the index
    could not be reached or had nothing to offer, a plain statement of that."""
    what = f"pip {' '.join(str(a) for a in args)}"
    result = run([python, "-m", "pip", "--no-input", *args], what)
    if result.returncode != 0:
        output = result.stdout + result.stderr
        lines = [ln for ln in output.splitlines() if not ln.startswith("WARNING: Location ")]  # local find-links noise
        index = ("the package index is unreachable or does not offer what was asked: these tests need it (not skipped)"
                 if any(t in output for t in INDEX_TROUBLE) else "pip could not resolve or install")
        pytest.fail(f"`{what}` exited {result.returncode}: {index}\n" + "\n".join(lines[-40:]))
    return result


def venv_pip(venv: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return pip(venv / "bin" / "python", *args)


def fresh_venv(path: Path) -> Path:
    result = run([PYTHON, "-m", "venv", path], f"python -m venv {path}", timeout=120)
    assert result.returncode == 0, result.stderr
    return path


def versions(venv: Path) -> dict[str, str | None]:
    code = ("import importlib.metadata as m, json, sys\n"
            "def v(d):\n"
            "    try: return m.version(d)\n"
            "    except m.PackageNotFoundError: return None\n"
            "print(json.dumps({d: v(d) for d in sys.argv[1:]}))")
    result = run([venv / "bin" / "python", "-c", code, *OTEL_DISTS], "reading installed versions", timeout=60)
    assert result.returncode == 0, result.stderr
    found: dict[str, str | None] = json.loads(result.stdout)
    return found


def assert_pip_check_clean(venv: Path) -> None:
    result = run([venv / "bin" / "python", "-m", "pip", "check"], "pip check", timeout=120)
    assert result.returncode == 0, f"pip check found broken requirements:\n{result.stdout}{result.stderr}"


def venv_env(venv: Path, extra: dict[str, str]) -> dict[str, str]:
    """The fresh venv's bin first on PATH (the launcher resolves the command like a shell)."""
    return {"PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}", **extra}


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cryostorm-run wheel, built once from this repository (the parent of tests/)."""
    out = tmp_path_factory.mktemp("wheel")
    pip(PYTHON, "wheel", "--no-deps", "-w", out, ROOT)  # its build backend (hatchling) comes from the index
    built = sorted(out.glob("cryostorm_run-*.whl"))
    assert len(built) == 1, built
    return built[0]


# -- Flask, resolved against the real index ------------------------------------------------------------

FLASK_INSTALL = ("flask", "opentelemetry-instrumentation-flask", "gunicorn")


@pytest.fixture(scope="module")
def flask_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = fresh_venv(tmp_path_factory.mktemp("flask") / "venv")
    venv_pip(venv, "install", wheel, *FLASK_INSTALL)  # exit 0: it resolved
    return venv


def test_flask_install_resolves_and_pip_check_is_clean(flask_venv: Path) -> None:
    assert_pip_check_clean(flask_venv)
    found = versions(flask_venv)
    print(f"VERSIONS flask venv: {found}")
    assert all(found[d] for d in OTEL_DISTS), f"not installed: {[d for d in OTEL_DISTS if not found[d]]}"
    # one consistent line: the SDK with its API, every contrib package with the instrumentation base
    assert found["opentelemetry-sdk"] == found["opentelemetry-api"], found
    contrib = {d: found[d] for d in OTEL_DISTS if d.startswith("opentelemetry-") and found[d] and "b" in str(found[d])}
    assert len(set(contrib.values())) == 1, f"contrib packages on different lines: {contrib}"


def test_pip_installs_cryostorm_byte_compiled_as_doctor_reports(flask_venv: Path) -> None:
    """pip compiles a wheel's modules when it installs (even with PYTHONDONTWRITEBYTECODE=1 in the
    environment): the start-up lines of doctor, run in the fresh venv, say so for cryostorm's own modules
    and for every package pip installed beside it (Flask and its instrumentation included)."""
    result = subprocess.run([str(flask_venv / "bin" / "cryostorm-run"), "doctor", "--json"],
                            env=child_env({"PYTHONDONTWRITEBYTECODE": "1"}), capture_output=True, text=True,
                            timeout=120, check=False)
    startup = [f for f in json.loads(result.stdout)["findings"] if f["section"] == "start-up"]
    assert [f["status"] for f in startup] == ["ok", "ok"], startup
    assert str(flask_venv) in startup[0]["message"] and "byte-compiled" in startup[0]["message"]
    assert startup[1]["message"].startswith("the environment's ") and str(flask_venv) in startup[1]["message"]


FLASK_SERVERS = {
    "flask-run": ["flask", "--app", "install_flask", "run", "--host", "127.0.0.1", "--port", "{port}"],
    "gunicorn": ["gunicorn", "--bind", "127.0.0.1:{port}", "-w", "2", "--no-control-socket", "install_flask:app"],
}


@pytest.mark.parametrize("server", list(FLASK_SERVERS))
def test_flask_app_traced_in_fresh_venv(
    flask_venv: Path, otlp_receiver: Receiver, tmp_path: Path, server: str
) -> None:
    argv = [str(flask_venv / "bin" / FLASK_SERVERS[server][0]), *FLASK_SERVERS[server][1:]]
    env = venv_env(flask_venv, otlp_env(otlp_receiver, "flask-shop"))
    launcher = str(flask_venv / "bin" / "cryostorm-run")
    with Server(argv, env, tmp_path, cwd=APPS, launcher=launcher) as srv:
        srv.wait_ready()
        response = srv.client.get(f"{srv.base}/hello/ada")
        assert response.status_code == 200, f"{response.status_code} {response.text[:500]}\n{srv.output()[-4000:]}"
        span = wait_route_span(otlp_receiver, "/hello/<name>", "flask-shop", srv.output)
        assert span.scope == "opentelemetry.instrumentation.flask", span.scope
        assert span.resource["process.pid"] == response.json()["pid"], span.resource


# -- a team's pinned SDK stays pinned -------------------------------------------------------------------


def test_pinned_sdk_is_kept_and_exports(wheel: Path, otlp_receiver: Receiver, tmp_path: Path) -> None:
    venv = fresh_venv(tmp_path / "venv")
    venv_pip(venv, "install", "opentelemetry-sdk==1.40.0", wheel)
    found = versions(venv)
    print(f"VERSIONS pinned venv: {found}")
    assert found["opentelemetry-sdk"] == "1.40.0", found
    assert found["cryostorm-run"], found
    assert_pip_check_clean(venv)

    env = venv_env(venv, otlp_env(otlp_receiver, "pinned-team"))
    result = subprocess.run(
        [str(venv / "bin" / "cryostorm-run"), "--", str(venv / "bin" / "python"), str(APPS / "traced.py")],
        env=child_env(env), capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr

    def both(spans: list[ReceivedSpan]) -> bool:
        return {"outer", "inner"} <= {s.name for s in spans}

    try:
        spans = otlp_receiver.wait_for_spans(both, timeout=30)
    except AssertionError as exc:
        pytest.fail(f"the program's spans did not arrive over OTLP: {exc}\nstderr:\n{result.stderr[-4000:]}")
    pid = int(result.stdout.split()[0])
    for span in (s for s in spans if s.name in {"outer", "inner"}):
        assert span.resource["service.name"] == "pinned-team", span.resource
        assert span.resource["process.pid"] == pid, span.resource


def test_an_install_with_no_deps_says_what_is_missing_never_a_traceback(wheel: Path, tmp_path: Path) -> None:
    """A team that keeps its pins installs cryostorm-run with --no-deps, then adds packages by hand."""
    venv = fresh_venv(tmp_path / "venv")
    venv_pip(venv, "install", "--no-deps", wheel)
    launcher, python = str(venv / "bin" / "cryostorm-run"), str(venv / "bin" / "python")

    def launch(*args: str) -> subprocess.CompletedProcess[str]:  # where no cryostorm.toml or pyproject.toml is
        return subprocess.run([launcher, *args], env=child_env(venv_env(venv, {})), capture_output=True, text=True,
                              timeout=60, check=False, cwd=tmp_path)

    for args in (["--", python, "-c", "pass"], ["check-config"], ["doctor"]):
        result = launch(*args)
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
        assert re.fullmatch(rf"cryostorm-run: cannot run: [a-z-]+, which it needs, is not installed in {venv} "
                            r"\(installed with --no-deps\?\): pip install '[a-z-]+[<>=!,.0-9a-z]+'\n",
                            result.stderr), result.stderr
    # the launcher's own packages and an SDK, but no OTLP exporter and no opentelemetry-instrumentation
    venv_pip(venv, "install", "pydantic>=2.7", "pydantic-settings>=2.4", "typer>=0.12", "rich>=13", "packaging",
             "python-dotenv", "opentelemetry-sdk==1.40.0")
    refused = launch("--exporter", "otlp", "--service-name", "svc", "--", python, "-c", "pass")
    assert refused.returncode == 2, refused.stderr
    assert ("  --exporter = 'otlp'\n    'otlp over grpc' needs a package that is not installed (pip install "
            "opentelemetry-exporter-otlp-proto-grpc 'opentelemetry-sdk==1.40.0')") in refused.stderr
    ran = launch("--exporter", "console", "--", python, str(APPS / "traced.py"))
    assert ran.returncode == 0, ran.stderr
    assert "Traceback" not in ran.stderr and '"name": "inner"' in ran.stderr, ran.stderr  # exported by its worker
    # an SDK older than cryostorm-run's range: said, with the command that puts it on a supported line
    venv_pip(venv, "install", "opentelemetry-sdk==1.39.0", "opentelemetry-api==1.39.0")
    old = launch("--exporter", "console", "--", python, "-c", "pass")
    assert ("cryostorm: OpenTelemetry packages disagree: opentelemetry-sdk 1.39.0 is not one cryostorm-run supports "
            "(>=1.40,<2), so what fails in it is unpredictable; put them on one line with one command, pip choosing "
            "the versions: pip install") in old.stderr, old.stderr
