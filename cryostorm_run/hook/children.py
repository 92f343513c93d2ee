"""A Python child that will run without cryostorm's hook is told, once, before it starts.

The hook reaches every Python process of the program through PYTHONPATH. A child started with an
environment of its own (`subprocess.run([...], env={"A": "1"})`, `os.execve(..., env)`) whose
PYTHONPATH lacks the hook's directory, one that inherits an `os.environ` whose PYTHONPATH the program
replaced (`os.environ["PYTHONPATH"] = "/some/dir"`), or an interpreter started with `-E`/`-I`/`-S`, runs
with no telemetry, and nothing would say so. `subprocess.Popen` and `os.execv`/`os.execve` are wrapped (not
an audit hook: a Python audit hook runs on every audited event of the program, `sys._getframe` of
each log call included, which made a logging call ~1.8x slower here) to print one line per child
command and reason. Only children of this environment's interpreter count: another interpreter
steps aside anyway. With `child_processes=none` children are meant to run without it: nothing is said.

Example line:
    cryostorm: child process 'python worker.py' will have no telemetry: its env= has no PYTHONPATH entry
    for cryostorm's hook; pass the environment on (env={**os.environ, ...}) or keep PYTHONPATH as the
    program got it (if that is meant: CRYOSTORM_CHILD_PROCESSES=none)
"""

from __future__ import annotations

import os
import sys

from cryostorm_run.common.interpreter import hook_skipping_flags, is_interpreter_name

TYPE_CHECKING = False  # not typing's: the hook keeps typing out of every process
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any

_TOLD: set[tuple[str, str]] = set()


def _ours(program: str, env: Mapping[str, str] | None) -> str | None:
    """The child's interpreter when it is this environment's (the program itself, or a script whose
    `#!` names it), else None."""
    import shutil

    path = program if os.sep in program else shutil.which(program, path=(env or os.environ).get("PATH"))
    if path is None:
        return None
    here = os.path.dirname(os.path.abspath(sys.executable))
    interpreter = path
    if not is_interpreter_name(path):
        try:
            with open(path, "rb") as fh:
                first = fh.readline(256)
        except OSError:
            return None
        if not first.startswith(b"#!"):
            return None
        interpreter = first[2:].decode(errors="replace").split()[0] if first[2:].split() else ""
        if not is_interpreter_name(interpreter):
            return None
    # The same bin directory: this venv (a venv's python links to its base interpreter, another environment).
    return interpreter if os.path.dirname(os.path.abspath(interpreter)) == here else None


def _has_hook(env: Mapping[str, str], hook_dir: str) -> bool:
    return hook_dir in {os.path.abspath(p) for p in str(env.get("PYTHONPATH", "")).split(os.pathsep) if p}


def lost_reason(argv: Sequence[str], executable: str | None, env: Mapping[str, str] | None,
                hook_dir: str, inherited: Mapping[str, str] | None = None) -> str | None:
    """Why a child started so would run without the hook (None: it runs it, or is not ours). `inherited`:
    the environment a child started without `env=` gets (`os.environ` at the time of the call)."""
    if not argv and not executable:
        return None
    program = str(executable or argv[0])
    if os.path.basename(program) == "cryostorm-run":
        return None  # a nested launcher puts the hook back for its own program
    flags = hook_skipping_flags(program, [str(a) for a in argv[1:]])
    reason = None
    if flags:
        reason = f"it is started with {flags}, which skips the site hook; drop {flags}"
    elif env is not None:
        if not _has_hook(env, hook_dir):
            reason = ("its env= has no PYTHONPATH entry for cryostorm's hook; pass the environment on "
                      "(env={**os.environ, ...}) or keep PYTHONPATH as the program got it")
    elif inherited is not None and not _has_hook(inherited, hook_dir):
        reason = ("os.environ, which it inherits, has no PYTHONPATH entry for cryostorm's hook; add to PYTHONPATH "
                  "rather than replace it, or keep PYTHONPATH as the program got it")
    if reason is None or _ours(program, env) is None:
        return None
    return reason


def _check(argv: Any, executable: Any, env: Any, hook_dir: str, warn: Callable[[str], None]) -> bool:
    """Told if the child will run without the hook; True when it is a Python child of this environment that
    runs it (its telemetry is buffered in it: a SIGKILL from the program loses it, see `_watch_popen`)."""
    try:
        if not isinstance(argv, (str, bytes, os.PathLike, list, tuple)):
            return False  # an iterator (a generator, `map(str, cmd)`) is the program's to consume, once: not looked at
        if isinstance(argv, (str, bytes, os.PathLike)):
            import shlex

            argv = shlex.split(os.fsdecode(argv)) if isinstance(argv, (str, bytes)) else [os.fspath(argv)]
        argv = [os.fsdecode(a) if isinstance(a, (bytes, os.PathLike)) else str(a) for a in argv]
        executable = os.fsdecode(executable) if executable is not None else None
        if env is os.environ:  # passed on as it is: what the child would inherit anyway
            env = None
        env = {os.fsdecode(k): os.fsdecode(v) for k, v in env.items()} if env is not None else None
        reason = lost_reason(argv, executable, env, hook_dir, os.environ if env is None else None)
        if reason is None:
            return bool(argv) and _ours(str(executable or argv[0]), env) is not None
        command = " ".join([os.path.basename(argv[0]), *argv[1:]])
        key = (os.path.basename(argv[0]), reason)
        if key in _TOLD:
            return False
        _TOLD.add(key)
        from cryostorm_run.common.shown import quoted  # here: its patterns cost every process at start-up

        warn(f"child process {quoted(command)} will have no telemetry: {reason} (if that is meant: "
             "CRYOSTORM_CHILD_PROCESSES=none)")
    except Exception:  # never stand between the program and its child
        pass
    return False


def watch(hook_dir: str, warn: Callable[[str], None], when_imported: Callable[[str, Any], None]) -> None:
    """Wrap `os.execv`/`os.execve` now and `subprocess.Popen` once subprocess is imported (through
    `when_imported`, the hook's post-import finder: the hook itself does not import subprocess)."""
    hook_dir = os.path.abspath(hook_dir)
    when_imported("subprocess", lambda subprocess: _watch_popen(subprocess, hook_dir, warn))
    _watch_exec(hook_dir, warn)


def _watch_popen(subprocess: Any, hook_dir: str, warn: Callable[[str], None]) -> None:
    """Children that lose the hook are told. And a hooked Python child the program kills with SIGKILL
    (`Popen.kill()`: `subprocess.run` on a timeout or an exception, a dev server's autoreloader on SIGTERM) loses
    what it had not exported: nothing can flush after SIGKILL, or count it, so the program's side says so."""
    import weakref

    hooked: weakref.WeakSet[Any] = weakref.WeakSet()
    popen_init, send_signal = subprocess.Popen.__init__, subprocess.Popen.send_signal
    if getattr(popen_init, "cryostorm", False):
        return

    def __init__(self: Any, args: Any, *more: Any, **kwargs: Any) -> None:
        # Popen(args, bufsize, executable, stdin, stdout, stderr, preexec_fn, close_fds, shell, cwd, env, ...)
        executable = kwargs.get("executable", more[1] if len(more) > 1 else None)
        env = kwargs.get("env", more[9] if len(more) > 9 else None)
        ours = _check(args, executable, env, hook_dir, warn)
        popen_init(self, args, *more, **kwargs)
        if ours:
            hooked.add(self)

    def send_signal_(self: Any, sig: int) -> None:
        if sig == getattr(signal_module(), "SIGKILL", None) and self in hooked and self.returncode is None:
            hooked.discard(self)
            with_args = self.args if isinstance(self.args, (list, tuple)) else [self.args]
            command = " ".join([os.path.basename(os.fsdecode(with_args[0])), *map(os.fsdecode, with_args[1:])])
            from cryostorm_run.common.shown import quoted

            warn(f"the program killed its Python child {quoted(command)} (pid {self.pid}) with SIGKILL: whatever "
                 "telemetry that child had not exported yet is lost, and cannot be counted")
        return send_signal(self, sig)  # type: ignore[no-any-return]

    wrappers: tuple[tuple[Any, Any], ...] = ((__init__, popen_init), (send_signal_, send_signal))
    for wrapper, original in wrappers:
        wrapper.cryostorm = True
        wrapper.__wrapped__ = original
    subprocess.Popen.__init__, subprocess.Popen.send_signal = __init__, send_signal_


def signal_module() -> Any:
    """`signal` as loaded (subprocess imports it): never an import of ours on the program's thread."""
    return sys.modules.get("signal")


def _watch_exec(hook_dir: str, warn: Callable[[str], None]) -> None:
    """`os.execv(path, argv, /)` and `os.execve(path, argv, env)` (whose arguments may be passed by name too): the
    wrapper takes whatever the original takes and passes the call on as made; a call the original refuses is
    not checked, and raises the original's own error."""
    for name in ("execv", "execve"):
        original = getattr(os, name, None)
        if original is not None and not getattr(original, "cryostorm", False):
            setattr(os, name, _exec_wrapper(original, name == "execve", hook_dir, warn))


def _exec_wrapper(original: Any, with_env: bool, hook_dir: str, warn: Callable[[str], None]) -> Any:
    def exec_(*args: Any, **kwargs: Any) -> Any:
        called = _exec_arguments(args, kwargs, with_env)
        if called is not None:
            _check(*called, hook_dir, warn)
        return original(*args, **kwargs)

    exec_.cryostorm = True  # type: ignore[attr-defined]
    exec_.__wrapped__ = original  # type: ignore[attr-defined]
    return exec_


def _exec_arguments(args: tuple[Any, ...], kwargs: dict[str, Any], with_env: bool) -> tuple[Any, Any, Any] | None:
    """(argv, path, env) of an `os.execv`/`os.execve` call the original takes as to its arguments' names and
    number, else None."""
    if not with_env:
        return (args[1], args[0], None) if len(args) == 2 and not kwargs else None
    names = ("path", "argv", "env")
    bound = dict(zip(names, args, strict=False))
    if len(args) > len(names) or set(bound) & set(kwargs) or {*bound, *kwargs} != set(names):
        return None
    bound.update(kwargs)
    return bound["argv"], bound["path"], bound["env"]
