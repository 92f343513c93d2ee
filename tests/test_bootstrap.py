"""`cryostorm-run bootstrap`: requirements on the installed line, usage errors, and, for real, fresh
pip and uv environments with a Flask + requests + SQLAlchemy app bootstrapped against the package index.

The "done when" of the issue: `bootstrap --install` makes one installer call, `pip check` (or
`uv pip check`) is clean after it, a second run does nothing, and the app under that environment's
`cryostorm-run` exports spans of all three libraries to a real OTLP receiver. The timings printed
here (`BOOTSTRAP ...`) are the ones quoted in the change's note.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import BIN, PYTHON, child_env, run_launcher
from otlp_receiver import ReceivedSpan, Receiver
from test_frameworks import otlp_env, statement
from test_install import pip, run, venv_env, wheel  # noqa: F401  (wheel: the session's fixture)

from cryostorm_run.diagnose import installer as inst
from cryostorm_run.diagnose.bootstrap import line_pins, missing, moved_line, on_line
from cryostorm_run.diagnose.doctor import Dist

TABLE = [
    {"library": "flask >= 1.0", "instrumentation": "opentelemetry-instrumentation-flask==0.66b2"},
    {"library": "requests ~= 2.0", "instrumentation": "opentelemetry-instrumentation-requests==0.66b2"},
    {"library": "sqlalchemy >= 1.0.0, < 2.1.0", "instrumentation": "opentelemetry-instrumentation-sqlalchemy==0.66b2"},
    {"library": "redis >= 2.6", "instrumentation": "opentelemetry-instrumentation-redis==0.66b2"},
]
OWN_REQUIRES = ("opentelemetry-api<2,>=1.40", "opentelemetry-instrumentation<1,>=0.61b0", "rich>=13")


def dists(**versions: str) -> dict[str, Dist]:
    found = {name.replace("_", "-"): Dist(name.replace("_", "-"), v) for name, v in versions.items()}
    found["cryostorm-run"] = Dist("cryostorm-run", "0.1.0", OWN_REQUIRES)
    return found


# -- what is needed, on which line ------------------------------------------------------------------


def test_missing_names_each_uninstrumented_library_it_supports() -> None:
    have = dists(flask="3.1.3", requests="2.32.0", sqlalchemy="2.1.9", opentelemetry_instrumentation_requests="0.66b2")
    needed, notes = missing(have, TABLE)
    assert needed == ["opentelemetry-instrumentation-flask"]  # requests has it; redis is not installed
    assert notes == ["sqlalchemy 2.1.9 is left out: opentelemetry-instrumentation-sqlalchemy of this line supports "
                     "sqlalchemy<2.1.0,>=1.0.0"]
    have["opentelemetry-instrumentation-flask"] = Dist("opentelemetry-instrumentation-flask", "0.66b1")
    assert missing(have, TABLE)[0] == []  # idempotent: installed is enough (doctor judges its line)


def test_requirements_keep_the_installed_line_without_inventing_versions() -> None:
    have = dists(flask="3.1.3", opentelemetry_api="1.45.2", opentelemetry_instrumentation="0.66b2")
    assert on_line(["opentelemetry-instrumentation-flask"], "0.66b2") == [
        "opentelemetry-instrumentation-flask>=0.66b2,<0.66b3"]  # that line's release or its post releases
    assert on_line(["x"], "0.61b0") == ["x>=0.61b0,<0.61b1"]
    # the pins are what is installed, OpenTelemetry packages only
    assert line_pins(have) == ["opentelemetry-api==1.45.2", "opentelemetry-instrumentation==0.66b2"]


def test_moving_the_line_keeps_cryostorms_ranges_and_moves_contrib_together() -> None:
    have = dists(opentelemetry_api="1.45.2", opentelemetry_instrumentation="0.66b2",
                 opentelemetry_instrumentation_requests="0.66b2")
    needed = ["opentelemetry-instrumentation-flask"]
    assert moved_line(have, needed, None) == [  # doctor's fix: names, cryostorm-run's own ranges
        "opentelemetry-api<2,>=1.40", "opentelemetry-instrumentation<1,>=0.61b0", "opentelemetry-instrumentation-flask",
        "opentelemetry-instrumentation-requests"]
    assert moved_line(have, needed, "0.66b1") == [  # ... with every contrib package on the line tried
        "opentelemetry-api<2,>=1.40",
        "opentelemetry-instrumentation<1,>=0.61b0", "opentelemetry-instrumentation>=0.66b1,<0.66b2",
        "opentelemetry-instrumentation-flask>=0.66b1,<0.66b2",
        "opentelemetry-instrumentation-requests>=0.66b1,<0.66b2"]


def test_the_environments_own_installer_is_chosen(tmp_path: Path) -> None:
    def which(found: str | None) -> object:
        return lambda name: found if name == "uv" else None

    py = str(tmp_path / "bin" / "python")
    chosen = inst.choose("auto", py, str(tmp_path), True, which("/usr/bin/uv"))  # type: ignore[arg-type]
    assert isinstance(chosen, inst.Installer) and chosen.name == "pip"
    assert inst.install_argv(chosen, ["flask"]) == [py, "-m", "pip", "install", "--no-input", "flask"]
    chosen = inst.choose("auto", py, str(tmp_path), False, which("/usr/bin/uv"))  # type: ignore[arg-type]
    assert isinstance(chosen, inst.Installer) and chosen.name == "uv"  # no pip there
    assert inst.install_argv(chosen, ["flask"]) == ["/usr/bin/uv", "pip", "install", "--python", py, "flask"]
    (tmp_path / "pyvenv.cfg").write_text("home = /usr/bin\nuv = 0.13.9\n")
    chosen = inst.choose("auto", py, str(tmp_path), True, which("/usr/bin/uv"))  # type: ignore[arg-type]
    assert isinstance(chosen, inst.Installer) and chosen.name == "uv"  # made by uv, even with a pip inside
    refused = inst.choose("auto", py, str(tmp_path), False, which(None))  # type: ignore[arg-type]
    assert isinstance(refused, str) and "no uv on PATH" in refused
    refused = inst.choose("pip", py, str(tmp_path), False, which("/usr/bin/uv"))  # type: ignore[arg-type]
    assert isinstance(refused, str) and "no pip" in refused


# -- usage errors: exit 2, the flag named, the fix given ---------------------------------------------------


@pytest.mark.parametrize(("args", "expected"), [
    (["--installer", "conda"], ["--installer = 'conda'", "allowed: auto, pip, uv"]),
    (["--dry-run"], ["--dry-run", "needs --install"]),
    (["--", "/bin/sh", "-c", "true"], ["/bin/sh is not a Python program", "bootstrap -- PYTHON"]),
])
def test_usage_errors_exit_2_naming_the_fix(args: list[str], expected: list[str]) -> None:
    result = run_launcher(["bootstrap", *args])
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert all(text in result.stderr for text in expected), result.stderr
    assert "Traceback" not in result.stderr


def test_a_command_that_does_not_exist_exits_127() -> None:
    result = run_launcher(["bootstrap", "--", "no-such-program-here"])
    assert result.returncode == 127, result.stderr
    assert "no-such-program-here" in result.stderr and "Traceback" not in result.stderr


# -- done when: fresh pip and uv environments, the real index, the real receiver ------------------------

APP = '''
import http.server, threading
import flask, requests, sqlalchemy

class Stock(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"3")
    def log_message(self, *args):
        pass

stock = http.server.HTTPServer(("127.0.0.1", 0), Stock)
threading.Thread(target=stock.serve_forever, daemon=True).start()
engine = sqlalchemy.create_engine("sqlite://")
app = flask.Flask(__name__)

@app.route("/orders/<int:order_id>")
def order(order_id):
    left = requests.get(f"http://127.0.0.1:{stock.server_port}/stock", timeout=5).text
    with engine.connect() as db:
        total = db.execute(sqlalchemy.text("SELECT 40 + 2 AS total")).scalar()
    return {"order": order_id, "stock": left, "total": total}

print(app.test_client().get("/orders/7").get_json())
'''
APP_PACKAGES = ("flask", "requests", "sqlalchemy<2.1")  # the current lines' instrumentation supports <2.1
UV = shutil.which("uv", path=str(BIN)) or "uv"


def make_venv(kind: str, path: Path, built: Path) -> Path:
    if kind == "pip":
        assert run([PYTHON, "-m", "venv", path], "python -m venv", timeout=120).returncode == 0
        pip(path / "bin" / "python", "install", "-q", built, *APP_PACKAGES)
    else:
        made = run([UV, "venv", "-q", "--python", PYTHON, path], "uv venv", timeout=120)
        assert made.returncode == 0, made.stderr
        done = run([UV, "pip", "install", "-q", "--python", path / "bin" / "python", built, *APP_PACKAGES],
                   "uv pip install", timeout=600)
        assert done.returncode == 0, done.stderr
        assert not (path / "bin" / "pip").exists()  # a uv environment: no pip inside
    return path


def app_env(venv: Path, extra: dict[str, str]) -> dict[str, str]:
    """The venv's bin first on PATH, then uv's (as in a Dockerfile that installed uv), then the rest."""
    env = child_env(venv_env(venv, extra))
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{Path(UV).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return env


def bootstrap(venv: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run([str(venv / "bin" / "cryostorm-run"), "bootstrap", "--install"],
                            env=app_env(venv, {}), capture_output=True, text=True, timeout=900, check=False)
    return result, time.monotonic() - started


def installer_calls(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("cryostorm: running (")]


@pytest.mark.parametrize("kind", ["pip", "uv"])
def test_bootstrap_installs_once_checks_clean_is_idempotent_and_the_app_is_traced(
    kind: str, wheel: Path, tmp_path: Path, otlp_receiver: Receiver,  # noqa: F811
) -> None:
    started = time.monotonic()
    venv = make_venv(kind, tmp_path / "venv", wheel)
    made = time.monotonic() - started

    first, first_s = bootstrap(venv)
    print(f"BOOTSTRAP {kind} first run ({first_s:.1f} s, exit {first.returncode}):\n{first.stderr}")
    assert first.returncode == 0, first.stderr
    [call] = installer_calls(first.stderr)  # one installer call, the environment's own
    assert call.startswith(f"cryostorm: running ({kind}: "), call
    assert f"{kind} check: no broken requirements" in first.stderr
    checked = run([venv / "bin" / "python", "-m", "pip", "check"] if kind == "pip"
                  else [UV, "pip", "check", "--python", venv / "bin" / "python"], "check", timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    second, second_s = bootstrap(venv)
    print(f"BOOTSTRAP {kind} second run ({second_s:.1f} s, exit {second.returncode}):\n{second.stderr}")
    assert second.returncode == 0, second.stderr
    assert installer_calls(second.stderr) == [] and "nothing to install" in second.stderr, second.stderr

    (tmp_path / "shop.py").write_text(APP)
    env = app_env(venv, otlp_env(otlp_receiver, f"shop-{kind}"))
    ran = subprocess.run([str(venv / "bin" / "cryostorm-run"), "--", str(venv / "bin" / "python"), "shop.py"],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert ran.returncode == 0 and "'total': 42" in ran.stdout, ran.stdout + ran.stderr

    def all_three(spans: list[ReceivedSpan]) -> bool:
        return {"opentelemetry.instrumentation.flask", "opentelemetry.instrumentation.requests"} <= {
            s.scope for s in spans} and any("SELECT 40 + 2" in statement(s) for s in spans)

    try:
        spans = otlp_receiver.wait_for_spans(all_three, timeout=30)
    except AssertionError:
        got = [(s.scope, s.kind, s.name) for s in otlp_receiver.spans()]
        pytest.fail(f"not every library's spans arrived: {got}\n{ran.stderr[-3000:]}")
    server = next(s for s in spans if s.scope == "opentelemetry.instrumentation.flask")
    assert server.kind == "SERVER" and server.attributes.get("http.route") == "/orders/<int:order_id>", server
    client = next(s for s in spans if s.scope == "opentelemetry.instrumentation.requests")
    assert client.kind == "CLIENT" and client.trace_id == server.trace_id, client
    query = next(s for s in spans if "SELECT 40 + 2" in statement(s))
    assert query.kind == "CLIENT" and query.scope == "opentelemetry.instrumentation.sqlalchemy", query
    assert query.trace_id == server.trace_id, query
    print(f"BOOTSTRAP {kind}: venv with the app in {made:.0f} s, first run {first_s:.1f} s, second {second_s:.1f} s")


def uv_venv(path: Path, built: Path, *packages: str) -> Path:
    assert run([UV, "venv", "-q", "--python", PYTHON, path], "uv venv", timeout=120).returncode == 0
    done = run([UV, "pip", "install", "-q", "--python", path / "bin" / "python", built, *packages], "uv pip install",
               timeout=600)
    assert done.returncode == 0, done.stderr
    return path


def run_bootstrap(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(venv / "bin" / "cryostorm-run"), "bootstrap", *args], env=app_env(venv, {}),
                          capture_output=True, text=True, timeout=300, check=False)


def test_the_installed_line_is_kept_when_it_has_every_instrumentation(wheel: Path, tmp_path: Path) -> None:  # noqa: F811
    """A team on the floor line (SDK 1.40.0 / contrib 0.61b0, for which requests' and click's
    instrumentations were released): the requirements stay on that line."""
    venv = uv_venv(tmp_path / "venv", wheel, "opentelemetry-sdk==1.40.0", "requests", "click")
    listed = run_bootstrap(venv)
    assert listed.returncode == 0, listed.stderr
    requirements = listed.stdout.splitlines()
    assert {"opentelemetry-instrumentation-click>=0.61b0,<0.61b1", "opentelemetry-instrumentation-requests>=0.61b0,"
            "<0.61b1", "opentelemetry-sdk==1.40.0", "opentelemetry-instrumentation==0.61b0"} <= set(requirements)
    assert "on the installed line (api 1.40.0 / contrib 0.61b0)" in listed.stderr, listed.stderr
    assert installer_calls(listed.stderr) == []  # listing installs nothing


def test_keep_line_refuses_to_move_a_line_that_lacks_an_instrumentation(wheel: Path, tmp_path: Path) -> None:  # noqa: F811
    """1.45.2 / 0.66b2 has no Flask instrumentation (the index has 0.66b1, then nothing newer)."""
    venv = uv_venv(tmp_path / "venv", wheel, "opentelemetry-sdk==1.45.2", "opentelemetry-instrumentation==0.66b2",
                   "flask")
    refused = run_bootstrap(venv, "--install", "--keep-line")
    assert refused.returncode == 1, refused.stderr
    assert refused.stdout == "" and installer_calls(refused.stderr) == []
    lacking = "opentelemetry-instrumentation-click, opentelemetry-instrumentation-flask"
    assert (f"the installed OpenTelemetry line (api 1.45.2 / contrib 0.66b2) has no release of {lacking}"
            in refused.stderr), refused.stderr
    assert "--keep-line: nothing installed" in refused.stderr and " pip install " in refused.stderr
    shown = run([UV, "pip", "show", "--python", venv / "bin" / "python", "opentelemetry-instrumentation-flask"], "show")
    assert shown.returncode != 0, shown.stdout  # nothing was installed
