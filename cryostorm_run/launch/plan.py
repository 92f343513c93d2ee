"""Plan purely, exec thinly: `plan_launch` computes what to run and with which environment;
`exec_plan` replaces the current process with it.

Example:
    >>> from cryostorm_run import TelemetrySettings
    >>> plan = plan_launch(TelemetrySettings(), ["python3", "-c", "pass"], {"PATH": "/usr/bin:/bin"})
    >>> plan.env["OTEL_TRACES_EXPORTER"]
    'console'
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Mapping, Sequence

from cryostorm_run.common.interpreter import hook_skipping_flags, is_interpreter_name, shebang

# Light on purpose: the `--` path with a cached plan imports this module and no more than the standard
# library's basics (no pydantic; no dataclasses, pathlib or shutil either: ~15 ms of every container start;
# nor typing, which brings re, enum and functools: ~8 ms more).
TYPE_CHECKING = False  # not typing's
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any, NamedTuple, NoReturn

    from cryostorm_run.config.loading import Loaded
    from cryostorm_run.config.model import TelemetryModel

else:
    from collections import namedtuple

    class _NamedTupleMeta(type):
        """`class X(NamedTuple)` at run time without typing: the same `collections.namedtuple` that
        typing.NamedTuple makes from the annotations and defaults (tests/test_plancache.py compares)."""

        def __new__(mcls, name: str, bases: tuple[type, ...], namespace: dict[str, object]) -> type:
            if not bases:  # NamedTuple itself
                return super().__new__(mcls, name, bases, namespace)
            fields = tuple(namespace.get("__annotations__", {}))
            defaults = [namespace[field] for field in fields if field in namespace]
            made: type = namedtuple(name, fields, defaults=defaults, module=str(namespace["__module__"]))
            made.__qualname__ = str(namespace.get("__qualname__", name))
            made.__doc__ = namespace.get("__doc__") or made.__doc__  # type: ignore[assignment]
            return made

    class NamedTuple(metaclass=_NamedTupleMeta):
        pass

EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127
REPORT_MODES = ("quiet", "line", "verbose")


class LaunchError(Exception):
    """The command cannot be started; `exit_code` follows the shell's conventions."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class LaunchPlan(NamedTuple):
    executable: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    instrumented: bool
    warnings: tuple[str, ...] = ()


class Prepared(NamedTuple):
    """What the validated settings decide for the program's environment, whatever the command:
    take `file_drop` out and set `file_put` (an OpenTelemetry configuration file's doing), then,
    when instrumented, take `drop` out and set `put`. Plain data, so `launch.plancache` can keep it."""

    enabled: bool
    drop: tuple[str, ...]
    put: tuple[tuple[str, str], ...]
    file_drop: tuple[str, ...] = ()
    file_put: tuple[tuple[str, str], ...] = ()
    warnings: tuple[str, ...] = ()  # the settings' warnings (advice), printed before exec
    files: tuple[str, ...] = ()  # files the settings name, found by the validation
    off: str = ""  # not enabled: the input that turned telemetry off, as the user wrote it (OTEL_SDK_DISABLED)


def prepare(settings: TelemetryModel, environ: Mapping[str, str]) -> Prepared:
    """The settings' part of a plan: what the program's environment loses and gets."""
    from cryostorm_run.config.inventory import MAPPED, READ
    from cryostorm_run.launch.envmap import program_defaults, programs_own, settings_env

    if not settings.enabled:
        return Prepared(False, (), ())
    theirs = programs_own(environ, settings)
    put = [(name, value) for name, value in settings_env(settings).items() if name not in theirs]
    put += [(name, value) for name, (value, _) in program_defaults(environ).items()]
    return Prepared(True, tuple(sorted(MAPPED | READ)), tuple(put))


def prepare_loaded(loaded: Loaded, environ: Mapping[str, str]) -> Prepared:
    """`prepare` for settings as loaded, with what an OpenTelemetry configuration file replaces (never
    reaches the program's SDK) and sets (its limits), and the warnings about the settings."""
    file_put = tuple((name, value) for name, (value, _) in loaded.file_env.items())
    prepared = prepare(loaded.settings, _file_stage(environ, tuple(loaded.dropped_env), file_put))
    from pathlib import Path

    files = sorted({str(v) for v in _leaves(loaded.settings.model_dump()) if isinstance(v, Path)})
    off = ""
    if not prepared.enabled:
        from cryostorm_run.config.sources import origin_of

        off = origin_of(("enabled",), loaded.origins).describe()
    return Prepared(prepared.enabled, prepared.drop, prepared.put, tuple(sorted(loaded.dropped_env)), file_put,
                    tuple(str(w) for w in loaded.warnings), tuple(files), off)


def _leaves(node: object) -> list[object]:
    if isinstance(node, dict):
        return [leaf for value in node.values() for leaf in _leaves(value)]
    if isinstance(node, (list, tuple)):
        return [leaf for value in node for leaf in _leaves(value)]
    return [node]


def _file_stage(environ: Mapping[str, str], drop: Sequence[str], put: Sequence[tuple[str, str]]) -> dict[str, str]:
    env = {k: v for k, v in environ.items() if k not in drop}
    env.update(put)
    return env


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
    from pathlib import Path

    return Path(_hook_dir())


def _hook_dir() -> str:
    return os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(__file__))), "hook", "pythonpath")


def _which(command: str, search_path: str) -> str | None:
    """`shutil.which` on POSIX (shutil itself imports zlib, bz2, lzma: not on the `--` path)."""
    if not search_path:
        return None
    for directory in search_path.split(os.pathsep):
        candidate = os.path.join(directory, command)
        if os.path.exists(candidate) and os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    return None


def resolve_command(command: str, search_path: str | None) -> str:
    """Find `command` as a shell would; raise LaunchError(127) if absent, (126) if not executable."""
    if os.sep in command or (os.altsep and os.altsep in command):
        if not os.path.exists(command):
            raise LaunchError(f"{command}: no such file", EXIT_NOT_FOUND)
        if os.path.isdir(command):
            raise LaunchError(f"{command}: is a directory, not a program", EXIT_NOT_EXECUTABLE)
        if not os.access(command, os.X_OK):
            raise LaunchError(f"{command}: permission denied (not an executable file; chmod +x it, or run it "
                              "with its interpreter: -- python script.py)", EXIT_NOT_EXECUTABLE)
        return command
    found = _which(command, search_path if search_path is not None else os.defpath)
    if found is not None:
        return found
    for directory in (search_path or os.defpath).split(os.pathsep):
        candidate = os.path.join(directory or ".", command)
        if os.path.isfile(candidate):
            raise LaunchError(f"{command}: permission denied (found {candidate}, not executable)", EXIT_NOT_EXECUTABLE)
    raise LaunchError(f"{command}: command not found (searched PATH)", EXIT_NOT_FOUND)


def _pythonpath(hook: str, current: str | None) -> str:
    """The hook's directory first, then the program's PYTHONPATH exactly as written, its empty entries too (the
    current directory, to Python: `/opt/lib:`, `a::b`); only the hook's own entry (a nested launcher's) is not
    repeated. An unset or empty PYTHONPATH adds nothing (`hook:` would add the current directory)."""
    kept = [p for p in current.split(os.pathsep) if not p or os.path.abspath(p) != hook] if current else []
    return os.pathsep.join([hook, *kept])


def plan_launch(
    settings: TelemetryModel,
    argv: Sequence[str],
    environ: Mapping[str, str],
    *,
    report: str = "line",
) -> LaunchPlan:
    """What to exec: the resolved program, its arguments and its complete environment."""
    return finish(prepare(settings, environ), argv, environ, report=report)


def finish(
    prepared: Prepared,
    argv: Sequence[str],
    environ: Mapping[str, str],
    *,
    report: str = "line",
) -> LaunchPlan:
    """`plan_launch` from the settings' part (`prepare`, or `launch.plancache`): everything that depends
    on the command and the moment (its path, PYTHONPATH, the launcher's PID) is decided here."""
    if not argv:
        raise LaunchError("no command given: cryostorm-run [OPTIONS] -- COMMAND [ARGS...]", 2)
    executable = resolve_command(argv[0], environ.get("PATH"))
    environ = _file_stage(environ, prepared.file_drop, prepared.file_put)
    env = dict(environ)
    if not prepared.enabled:
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
    for name in prepared.drop:  # absorbed into the settings; the child sees exactly the settings
        env.pop(name, None)
    for name in [k for k, v in env.items() if not v and k.startswith("OTEL_")]:  # passed on, but empty: unset, as
        del env[name]  # the specification reads it (the SDK would fail on some, e.g. OTEL_METRICS_EXEMPLAR_FILTER)
    env.update(prepared.put)
    command = os.path.basename(argv[0])
    if command in OTHER_AGENTS:  # `cryostorm-run -- opentelemetry-instrument python app.py`
        warning = (f"the command is {command}, another agent: the program runs under its bootstrap, not "
                   "cryostorm's hook (with cryostorm's settings as OTEL_* variables, but no cryostorm exit flush, "
                   f"loss report or worker handling); drop {command} from the command to have cryostorm instrument "
                   "the program")
        return LaunchPlan(executable, tuple(argv), env, instrumented=False, warnings=(*warnings, warning))
    hook = _hook_dir()
    env["PYTHONPATH"] = _pythonpath(hook, environ.get("PYTHONPATH"))
    env["_CRYOSTORM_HOOK_DIR"] = hook
    env["_CRYOSTORM_PREFIX"] = sys.prefix
    env["_CRYOSTORM_LAUNCHER_PID"] = str(os.getpid())  # exec keeps the PID: the hook knows the target
    env["_CRYOSTORM_REPORT"] = report if report in REPORT_MODES else "line"
    skipping, who = hook_skipping_flags(executable, argv[1:]), os.path.basename(executable)
    if skipping is None and not is_interpreter_name(executable) and (line := shebang(executable)):
        skipping = hook_skipping_flags(line[0], line[1:])  # `#!/usr/bin/python3 -I`: its interpreter's options
        who = f"{who} (its #! line runs {' '.join(line)}):"
    if skipping:
        warnings = (*warnings, f"{who} {skipping} runs without the site hook (PYTHONPATH "
                    "ignored or site not imported): the program will have NO telemetry; drop it, or instrument in "
                    "code with cryostorm_run.Telemetry")
    return LaunchPlan(executable, tuple(argv), env, instrumented=True, warnings=warnings)


def exec_plan(plan: LaunchPlan) -> NoReturn:
    """Replace this process with the planned program: same PID, its signals, its exit status.

    Python ignores SIGPIPE and SIGXFSZ in itself at start-up, and an ignored signal stays ignored through
    `exec`: the program (a shell entrypoint's `yes | head -1`, a C tool) would get EPIPE errors where it dies
    quietly when started directly. They get their default action back first, as `subprocess` gives its
    children (the launcher cannot see whether whoever started it ignored them)."""
    sys.stdout.flush()
    sys.stderr.flush()
    restored = _default_actions_back()
    env = dict(plan.env)
    if plan.instrumented:  # which stderr the program got: its children's start-up lines are said only there
        from cryostorm_run.hook.say import STDERR_VAR, stderr_identity

        env[STDERR_VAR] = stderr_identity()
    try:
        try:
            os.execve(plan.executable, list(plan.argv), env)
        except OSError as exc:
            if exc.errno != errno.ENOEXEC:
                raise
            # No #! line: a shell script, which execvp (env, nohup, timeout, tini, a shell) runs with /bin/sh
            os.execve("/bin/sh", ["/bin/sh", plan.executable, *plan.argv[1:]], env)
    except OSError as exc:
        for signum, action in restored:  # the launcher goes on to print its error: as Python started it
            _signals_module().signal(signum, action)
        raise LaunchError(f"{plan.argv[0]}: cannot execute: {exc.strerror}{_interpreter_missing(plan.executable)}",
                          EXIT_NOT_EXECUTABLE if exc.errno != 2 else EXIT_NOT_FOUND) from None


def _signals_module() -> Any:
    """`_signal`, the C module `signal` wraps, which CPython loads at start-up: `signal` imports enum (~3 ms of
    a start from a cached plan); the same functions and values, as plain integers (README, "Private
    attributes"). Not loaded (another Python): `signal`."""
    loaded = sys.modules.get("_signal")
    if loaded is not None:
        return loaded
    import signal

    return signal


def _default_actions_back() -> list[tuple[int, Any]]:
    """SIGPIPE, SIGXFZ and SIGXFSZ, where Python ignores them, back to their default action; what they were."""
    signals = _signals_module()
    restored = []
    for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ"):
        signum = getattr(signals, name, None)
        if signum is not None and signals.getsignal(signum) == signals.SIG_IGN:
            restored.append((signum, signals.signal(signum, signals.SIG_DFL)))
    return restored


def _interpreter_missing(executable: str) -> str:
    """For a script whose `#!` interpreter does not exist (execve says only "No such file or directory"): which."""
    try:
        with open(executable, "rb") as script:
            first = script.readline(256)
    except OSError:
        return ""
    if not first.startswith(b"#!"):
        return ""
    if first.rstrip(b"\n").endswith(b"\r"):  # saved with Windows line endings: the kernel looks for "sh\r"
        return (" (its #! line ends in a carriage return: the file has Windows line endings; convert it, e.g. "
                "dos2unix or sed -i 's/\\r$//')")
    interpreter = first[2:].strip().split(b" ")[0].decode("utf-8", "replace")
    return "" if os.path.exists(interpreter) else f" (its #! line names {interpreter}, which does not exist)"
