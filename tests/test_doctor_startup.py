"""`doctor`'s start-up section: are cryostorm's modules byte-compiled where they are installed?

Checked on real files, compiled by the real `compileall`, in a subprocess whose environment the test sets
(the finding depends on PYTHONDONTWRITEBYTECODE, which a developer's shell may set).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

from conftest import child_env

PROBE = ("import json, os, sys; from cryostorm_run.diagnose.startup import startup_finding, stale_modules; "
         "print(json.dumps([stale_modules(sys.argv[1]), startup_finding(sys.argv[1], os.environ)]))")


def _check(package: Path, **env: str) -> tuple[list[str], int, str, str, str]:
    environ = child_env(env)
    if "PYTHONDONTWRITEBYTECODE" not in env:
        environ.pop("PYTHONDONTWRITEBYTECODE", None)
    result = subprocess.run([sys.executable, "-c", PROBE, str(package)], env=environ, capture_output=True,
                            text=True, check=True, timeout=60)
    (stale, total), (status, message, fix) = json.loads(result.stdout)
    return stale, total, status, message, fix


def _package(tmp_path: Path) -> Path:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    for name in ("__init__.py", "a.py", "sub/__init__.py", "sub/b.py"):
        (package / name).write_text(f"NAME = {name!r}\n")
    return package


def test_modules_without_their_pyc_are_named_with_the_command_that_compiles_them(tmp_path: Path) -> None:
    """Break checked: `_fresh` answering True whatever the header -> the uncompiled package is "ok"."""
    package = _package(tmp_path)
    stale, total, status, message, fix = _check(package)
    assert (stale, total, status) == (["__init__.py", "a.py", "sub/__init__.py", "sub/b.py"], 4, "info")
    assert "4 of cryostorm's 4 modules are not byte-compiled" in message
    assert "the first start compiles and keeps them here" in message  # writable, bytecode allowed
    assert f"-m compileall -q {package}" in fix and "--compile-bytecode" in fix

    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True)
    assert _check(package)[:3] == ([], 4, "ok")

    # a source changed after it was compiled: its .pyc is stale (what the importer checks: mtime and size)
    changed = package / "sub" / "b.py"
    changed.write_text("NAME = 'changed, and longer'\n")
    os.utime(changed, (changed.stat().st_atime, changed.stat().st_mtime + 5))
    assert _check(package)[:3] == (["sub/b.py"], 4, "info")


def test_with_pythondontwritebytecode_every_start_compiles_again(tmp_path: Path) -> None:
    package = _package(tmp_path)
    stale, _, status, message, _ = _check(package, PYTHONDONTWRITEBYTECODE="1")
    assert status == "info" and len(stale) == 4
    assert "PYTHONDONTWRITEBYTECODE is set: every start compiles them again" in message


def test_doctor_has_a_start_up_section_and_it_never_makes_the_environment_unhealthy() -> None:
    result = subprocess.run([sys.executable, "-m", "cryostorm_run", "doctor", "--json"], env=child_env(),
                            capture_output=True, text=True, check=False, timeout=120)
    findings = json.loads(result.stdout)["findings"]
    startup = [f for f in findings if f["section"] == "start-up"]
    assert len(startup) >= 2 and {f["status"] for f in startup} <= {"ok", "info"}, startup
    assert "cryostorm's" in startup[0]["message"] and "modules" in startup[0]["message"]
    site = sysconfig.get_paths()["purelib"]
    assert any(f"packages in {site}" in f["message"] or f"packages are byte-compiled ({site})" in f["message"]
               for f in startup[1:]), startup


ENVIRONMENT_PROBE = ("import json, os, sys; from cryostorm_run.diagnose.startup import environment_finding, "
                     "uncompiled_packages; print(json.dumps([uncompiled_packages(sys.argv[1], sys.argv[2]), "
                     "environment_finding(sys.argv[1], sys.argv[2], os.environ)]))")


def _site(tmp_path: Path) -> Path:
    """A site-packages folder as installers leave it: packages, a single-file module, metadata, a .pth."""
    site = tmp_path / "site-packages"
    for name in ("uncompiled/__init__.py", "uncompiled/core.py", "compiled/__init__.py", "compiled/api.py",
                 "compiled/extra.py", "own/__init__.py", "own/cli.py"):
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_text("VALUE = 1\n")
    (site / "single.py").write_text("VALUE = 2\n")
    (site / "compiled" / "py2_template.py").write_text("print 'no compiler of this Python accepts this'\n")
    (site / "compiled-1.0.dist-info").mkdir()
    (site / "compiled-1.0.dist-info" / "METADATA").write_text("Name: compiled\n")
    (site / "extras.pth").write_text("import os\n")
    # as pip leaves a package: everything compiled that compiles (the template does not)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(site / "compiled")], check=False,
                   capture_output=True)
    return site


def _environment(site: Path, **env: str) -> tuple[list[str], int, str, str, str]:
    environ = child_env(env)
    if "PYTHONDONTWRITEBYTECODE" not in env:
        environ.pop("PYTHONDONTWRITEBYTECODE", None)
    result = subprocess.run([sys.executable, "-c", ENVIRONMENT_PROBE, str(site), str(site / "own")], env=environ,
                            capture_output=True, text=True, check=True, timeout=60)
    (found, total), (status, message, fix) = json.loads(result.stdout)
    return found, total, status, message, fix


def test_packages_installed_without_byte_compiling_are_named_not_a_few_uncompilable_files(tmp_path: Path) -> None:
    """uv without --compile-bytecode leaves every package without .pyc; pip compiles all but files no
    compiler accepts. Break checked: a package counted uncompiled on any stale file -> `compiled` named;
    cryostorm's own folder not skipped -> `own` named (it has its own line)."""
    site = _site(tmp_path)
    found, total, status, message, fix = _environment(site, PYTHONDONTWRITEBYTECODE="1")
    assert (found, total, status) == (["single", "uncompiled"], 3, "info")
    assert f"2 of the 3 packages in {site} were installed without byte-compiling (single, uncompiled)" in message
    assert "PYTHONDONTWRITEBYTECODE is set: every start compiles those the program imports again" in message
    assert f"-m compileall -q {site}" in fix and "UV_COMPILE_BYTECODE=1" in fix

    found, _, status, message, _ = _environment(site)  # bytecode may be written, the folder is writable
    assert status == "info" and "a container started from an image compiles them at every start" in message

    subprocess.run([sys.executable, "-m", "compileall", "-q", str(site)], check=False, capture_output=True)
    found, total, status, message, fix = _environment(site, PYTHONDONTWRITEBYTECODE="1")
    assert (found, total, status, fix) == ([], 3, "ok", "")
    assert message == f"the environment's 3 packages are byte-compiled ({site})"
