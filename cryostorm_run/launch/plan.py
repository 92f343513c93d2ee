"""Plan purely, exec thinly: `plan_launch` computes what to run and with which environment;
`exec_plan` replaces the current process with it.

Example:
    >>> from cryostorm_run import TelemetrySettings
    >>> plan = plan_launch(TelemetrySettings(), ["python3", "-c", "pass"], {"PATH": "/usr/bin:/bin"})
    >>> plan.env["OTEL_TRACES_EXPORTER"]
    'console'
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from cryostorm_run.common.interpreter import hook_skipping_flags
from cryostorm_run.config.inventory import MAPPED, READ
from cryostorm_run.config.model import TelemetryModel
from cryostorm_run.launch.envmap import program_defaults, settings_env

EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127
REPORT_MODES = ("quiet", "line", "verbose")


class LaunchError(Exception):
    """The command cannot be started; `exit_code` follows the shell's conventions."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class LaunchPlan:
    executable: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    instrumented: bool
    warnings: tuple[str, ...] = ()


# PYTHONPATH entries that belong to other agents' bootstraps (their own sitecustomize).
OTHER_AGENTS = {
    "opentelemetry-instrument": ("opentelemetry/instrumentation/auto_instrumentation",),
    "ddtrace-run": ("ddtrace/bootstrap",),
    "newrelic-admin": ("newrelic/bootstrap",),
}


def other_agent(pythonpath: str | None) -> tuple[str, str] | None:
    """(agent, entry) when another agent's bootstrap is on PYTHONPATH."""
    for entry in (pythonpath or "").split(os.pathsep):
        normalized = entry.replace(os.sep, "/").rstrip("/")
        for agent, markers in OTHER_AGENTS.items():
            if any(normalized.endswith(m) for m in markers):
                return agent, entry
    return None


def hook_dir() -> Path:
    """The directory holding the hook's `sitecustomize.py`, put first on the program's `PYTHONPATH`."""
    return Path(__file__).resolve().parent.parent / "hook" / "pythonpath"


def resolve_command(command: str, search_path: str | None) -> str:
    """Find `command` as a shell would; raise LaunchError(127) if absent, (126) if not executable."""
    if os.sep in command or (os.altsep and os.altsep in command):
        if not os.path.exists(command):
            raise LaunchError(f"{command}: no such file", EXIT_NOT_FOUND)
        if os.path.isdir(command) or not os.access(command, os.X_OK):
            raise LaunchError(f"{command}: permission denied (not an executable file)", EXIT_NOT_EXECUTABLE)
        return command
    found = shutil.which(command, path=search_path if search_path is not None else os.defpath)
    if found is not None:
        return found
    for directory in (search_path or os.defpath).split(os.pathsep):
        candidate = os.path.join(directory or ".", command)
        if os.path.isfile(candidate):
            raise LaunchError(f"{command}: permission denied (found {candidate}, not executable)", EXIT_NOT_EXECUTABLE)
    raise LaunchError(f"{command}: command not found (searched PATH)", EXIT_NOT_FOUND)


def _pythonpath(hook: str, current: str | None) -> str:
    kept = [p for p in (current or "").split(os.pathsep) if p and os.path.abspath(p) != hook]
    return os.pathsep.join([hook, *kept])


def plan_launch(
    settings: TelemetryModel,
    argv: Sequence[str],
    environ: Mapping[str, str],
    *,
    report: str = "line",
) -> LaunchPlan:
    """What to exec: the resolved program, its arguments and its complete environment."""
    if not argv:
        raise LaunchError("no command given: cryostorm-run [OPTIONS] -- COMMAND [ARGS...]", 2)
    executable = resolve_command(argv[0], environ.get("PATH"))
    env = dict(environ)
    if not settings.enabled:
        return LaunchPlan(executable, tuple(argv), env, instrumented=False)
    agent = other_agent(environ.get("PYTHONPATH"))
    if agent is not None:
        warning = (f"{agent[0]}'s bootstrap is already on PYTHONPATH ({agent[1]}); running the program "
                   "without cryostorm's hook so nothing is instrumented twice")
        return LaunchPlan(executable, tuple(argv), env, instrumented=False, warnings=(warning,))
    warnings: tuple[str, ...] = ()
    if environ.get("_CRYOSTORM_LAUNCHER_PID"):
        warnings = ("already running under cryostorm-run: the program is instrumented once, "
                    "with this (inner) invocation's settings",)
    for name in MAPPED | READ:  # absorbed into the settings; the child sees exactly the settings
        env.pop(name, None)
    env.update(settings_env(settings))
    env.update((name, value) for name, (value, _) in program_defaults(environ).items())
    hook = str(hook_dir())
    env["PYTHONPATH"] = _pythonpath(hook, environ.get("PYTHONPATH"))
    env["_CRYOSTORM_HOOK_DIR"] = hook
    env["_CRYOSTORM_PREFIX"] = sys.prefix
    env["_CRYOSTORM_LAUNCHER_PID"] = str(os.getpid())  # exec keeps the PID: the hook knows the target
    env["_CRYOSTORM_REPORT"] = report if report in REPORT_MODES else "line"
    skipping = hook_skipping_flags(executable, argv[1:])
    if skipping:
        warnings = (*warnings, f"{os.path.basename(executable)} {skipping} runs without the site hook (PYTHONPATH "
                    "ignored or site not imported): the program will have NO telemetry; drop it, or instrument in "
                    "code with cryostorm_run.Telemetry")
    return LaunchPlan(executable, tuple(argv), env, instrumented=True, warnings=warnings)


def exec_plan(plan: LaunchPlan) -> NoReturn:
    """Replace this process with the planned program: same PID, its signals, its exit status."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(plan.executable, list(plan.argv), dict(plan.env))
    except OSError as exc:
        raise LaunchError(f"{plan.argv[0]}: cannot execute: {exc.strerror}", EXIT_NOT_EXECUTABLE) from None
