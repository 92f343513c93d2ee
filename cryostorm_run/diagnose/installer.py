"""The environment's own installer, driven for `bootstrap`: pip, or `uv pip` where there is no pip.

Three calls, the same for both: a dry run that asks the resolver what one install would do (nothing
is changed), the one install, and the check that every installed requirement is met (`pip check`).
The resolver always decides the versions: cryostorm only names requirements.

Example:
    >>> install_argv(Installer("pip", "/venv/bin/python"), ["flask"])
    ['/venv/bin/python', '-m', 'pip', 'install', '--no-input', 'flask']
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = ["INSTALLERS", "Installer", "Resolution", "check", "choose", "dry_run", "index_versions", "install",
           "install_argv", "shown"]

INSTALLERS = ("auto", "pip", "uv")
TIMEOUT = 900  # s: one resolution or install against a slow index, backtracking included

# What the resolvers say when the requirements cannot be met together (as opposed to a network error).
_NO_SOLUTION = ("ResolutionImpossible", "conflicting dependencies", "Could not find a version that satisfies",
                "No solution found when resolving dependencies")
_UV_CHANGE = re.compile(r"^\s*\+\s+([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)\s*$")


@dataclass(frozen=True)
class Installer:
    """`name` pip or uv; `python` the interpreter whose environment it installs into."""

    name: str
    python: str
    uv: str = "uv"  # the uv executable (name or path)
    why: str = ""

    def base(self) -> list[str]:
        if self.name == "uv":
            return [self.uv, "pip"]
        return [self.python, "-m", "pip"]

    def target(self) -> list[str]:
        return ["--python", self.python] if self.name == "uv" else []


@dataclass
class Resolution:
    """A dry run's answer: `ok`, or `impossible` (no set of versions meets the requirements), else an
    error (`output` says which); `versions`: what the install would put in place, by normalized name."""

    ok: bool
    impossible: bool = False
    versions: dict[str, str] = field(default_factory=dict)
    output: str = ""


def choose(requested: str, python: str, prefix: str, has_pip: bool,
           which: Callable[[str], str | None]) -> Installer | str:
    """The installer for the environment at `prefix` (whose interpreter is `python`), or why there is
    none. auto: uv in a uv-managed environment (pyvenv.cfg written by uv, or no pip while uv is on
    PATH), pip otherwise."""
    uv = which("uv")
    uv_made = _made_by_uv(prefix)
    if requested == "pip" or (requested == "auto" and has_pip and not (uv_made and uv)):
        if not has_pip:
            return f"there is no pip in {prefix}: use --installer uv, or install pip there (python -m ensurepip)"
        return Installer("pip", python, why="pip is installed there" if requested == "auto" else "--installer pip")
    if uv is None:
        why = "--installer uv was asked for" if requested == "uv" else f"there is no pip in {prefix}"
        return f"{why}, and there is no uv on PATH: install uv (https://docs.astral.sh/uv/) or pip there"
    reason = ("--installer uv" if requested == "uv" else "the environment was made by uv (pyvenv.cfg)" if uv_made
              else "there is no pip there; uv is on PATH")
    return Installer("uv", python, uv=uv, why=reason)


def _made_by_uv(prefix: str) -> bool:
    try:
        with open(os.path.join(prefix, "pyvenv.cfg"), encoding="utf-8") as fh:
            return any(line.split("=")[0].strip() == "uv" for line in fh)
    except OSError:
        return False


def install_argv(installer: Installer, requirements: Sequence[str]) -> list[str]:
    quiet = ["--no-input"] if installer.name == "pip" else []
    return [*installer.base(), "install", *installer.target(), *quiet, *requirements]


def shown(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


def _run(argv: Sequence[str], *, capture: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    try:
        if capture:
            return subprocess.run(list(argv), capture_output=True, text=True, timeout=TIMEOUT, env=env, check=False)
        # The installer's progress is for people: to stderr, stdout stays the requirement list's.
        return subprocess.run(list(argv), stdout=2, text=True, timeout=TIMEOUT, env=env, check=False)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(list(argv), 124, "", f"{argv[0]} did not finish within {TIMEOUT} s")
    except OSError as exc:
        return subprocess.CompletedProcess(list(argv), 127, "", f"{argv[0]} could not be started: {exc}")


def dry_run(installer: Installer, requirements: Sequence[str]) -> Resolution:
    """Ask the resolver, changing nothing (pip's `--dry-run --report`, uv's `--dry-run`)."""
    argv = install_argv(installer, requirements)
    extra = ["--dry-run", "--quiet", "--report", "-"] if installer.name == "pip" else ["--dry-run"]
    done = _run([*argv[:argv.index("install") + 1], *extra, *argv[argv.index("install") + 1:]], capture=True)
    output = done.stdout + done.stderr
    if done.returncode != 0:
        return Resolution(False, any(text in output for text in _NO_SOLUTION), output=_tail(output))
    versions: dict[str, str] = {}
    if installer.name == "pip":
        try:
            report = json.loads(done.stdout)
            for item in report.get("install", []):
                meta = item.get("metadata", {})
                versions[_normalize(meta["name"])] = meta["version"]
        except (ValueError, KeyError, TypeError, AttributeError):
            return Resolution(False, output=f"unreadable pip report: {_tail(output)}")
    else:
        for line in output.splitlines():
            match = _UV_CHANGE.match(line)
            if match:
                versions[_normalize(match.group(1))] = match.group(2)
    return Resolution(True, versions=versions, output=output)


def index_versions(installer: Installer, name: str) -> list[str] | None:
    """The releases of `name` on the index pip is configured with (`pip index versions --pre`), newest
    first; None when this pip cannot say (the command is pip's experimental one, from pip 21.2)."""
    if installer.name != "pip":
        return None
    done = _run([*installer.base(), "index", "versions", "--pre", "--no-input", name], capture=True)
    for line in done.stdout.splitlines():
        if line.startswith("Available versions:"):
            return [v.strip() for v in line.partition(":")[2].split(",") if v.strip()]
    return None


def install(installer: Installer, requirements: Sequence[str]) -> int:
    """The one install; its output goes to stderr as it comes. Returns the installer's exit status."""
    return _run(install_argv(installer, requirements), capture=False).returncode


def check(installer: Installer) -> tuple[bool, str]:
    """`pip check` / `uv pip check`: every installed package's requirements met?"""
    done = _run([*installer.base(), "check", *installer.target()], capture=True)
    return done.returncode == 0, (done.stdout + done.stderr).strip()


def _tail(output: str, lines: int = 12) -> str:
    """The resolver's own words, short: its first lines name the conflict, the last its conclusion."""
    kept = [ln for ln in output.strip().splitlines() if ln.strip() and not ln.startswith("WARNING: Location ")]
    if len(kept) <= lines:
        return "\n".join(kept)
    return "\n".join([*kept[:lines // 2], "  ...", *kept[-(lines // 2):]])


def _normalize(name: str) -> str:
    from cryostorm_run.common.otel_line import normalize

    return normalize(name)
