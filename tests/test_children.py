"""A Python child that loses the hook (its own env= without it, or -E/-I/-S) is told, once (issue 14)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from conftest import BIN, PYTHON, run_launcher

from cryostorm_run.hook.children import lost_reason
from cryostorm_run.launch.plan import hook_dir

HOOK = str(hook_dir())
LOST_ENV = ("its env= has no PYTHONPATH entry for cryostorm's hook; pass the environment on (env={**os.environ, ...}) "
            "or keep PYTHONPATH as the program got it")

PROGRAM = """
import os, subprocess, sys
bare = {"PATH": os.environ["PATH"]}
subprocess.run([sys.executable, "-c", "print('own env')"], env=bare, check=True)
subprocess.run([sys.executable, "-c", "print('own env')"], env=bare, check=True)  # the same child: told once
subprocess.run([sys.executable, "-I", "-c", "print('isolated')"], check=True)
subprocess.run([sys.executable, "-c", "print('inherits')"], check=True)
subprocess.run([sys.executable, "-c", "print('passes it on')"], env={**os.environ, "X": "1"}, check=True)
subprocess.run([sys.argv[1], "-c", "print('another environment')"], env=bare, check=True)
subprocess.run("echo shell", shell=True, env=bare, check=True)
print("parent done", flush=True)
"""
OUT = "own env\nown env\nisolated\ninherits\npasses it on\nanother environment\nshell\nparent done\n"


@pytest.fixture
def program(tmp_path: Path) -> list[str]:
    script = tmp_path / "children.py"
    script.write_text(PROGRAM)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "python3").symlink_to(sys.executable)  # an interpreter outside this environment's bin
    return ["--quiet", "--", PYTHON, str(script), str(elsewhere / "python3")]


def test_a_child_that_loses_the_hook_is_told_once(program: list[str]) -> None:
    done = run_launcher(program, {"CRYOSTORM_SERVICE__NAME": "kids", "CRYOSTORM_EXPORTER_TYPE": "none"})
    assert (done.returncode, done.stdout) == (0, OUT), done.stderr
    python = os.path.basename(PYTHON)  # the program's sys.executable, as the child is started
    assert done.stderr.splitlines() == [
        f"cryostorm: child process '{python} -c print('own env')' will have no telemetry: {LOST_ENV} "
        "(if that is meant: CRYOSTORM_CHILD_PROCESSES=none)",
        f"cryostorm: child process '{python} -I -c print('isolated')' will have no telemetry: it is started with -I, "
        "which skips the site hook; drop -I (if that is meant: CRYOSTORM_CHILD_PROCESSES=none)",
    ], done.stderr


def test_nothing_is_said_when_children_are_meant_to_run_without_it(program: list[str]) -> None:
    env = {"CRYOSTORM_SERVICE__NAME": "kids", "CRYOSTORM_EXPORTER_TYPE": "none", "CRYOSTORM_CHILD_PROCESSES": "none"}
    done = run_launcher(program, env)
    assert (done.returncode, done.stdout, done.stderr) == (0, OUT, "")


def test_lost_reason_for_console_scripts_exec_and_flags(tmp_path: Path) -> None:
    script = tmp_path / "tool"
    script.write_text(f"#!{sys.executable}\nprint('hi')\n")
    script.chmod(0o755)
    bare = {"PATH": os.environ["PATH"]}
    kept = {"PYTHONPATH": HOOK}
    assert lost_reason([str(script)], None, bare, HOOK) == LOST_ENV  # a console script of this environment
    assert lost_reason([str(script)], None, kept, HOOK) is None
    assert lost_reason([str(BIN / "python"), "app.py"], None, None, HOOK) is None  # inherits the environment
    assert lost_reason(["python", "-E", "app.py"], str(BIN / "python"), None, HOOK) == (
        "it is started with -E, which skips the site hook; drop -E")
    assert lost_reason(["sh", "-c", "true"], "/bin/sh", bare, HOOK) is None  # not Python
    assert lost_reason([str(BIN / "cryostorm-run"), "--", "python"], None, bare, HOOK) is None  # puts it back


CAPTURING = """
import json, os, subprocess, sys
code = "import json, sys; print(json.dumps({'pid': __import__('os').getpid()}))"
answer = subprocess.check_output([sys.executable, "-c", code], stderr=subprocess.STDOUT, text=True)
print("parsed", sorted(json.loads(answer)), flush=True)
captured = subprocess.run([sys.executable, "-c", "print('captured')"], capture_output=True, text=True, check=True)
print("its stderr", repr(captured.stderr), flush=True)
inheriting = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], stdout=subprocess.PIPE,
                            text=True, check=True)
print("inherits", flush=True)
with open(sys.argv[1], "a") as pids:
    pids.write(inheriting.stdout)
"""


def test_a_child_whose_stderr_the_parent_reads_gets_no_start_up_line(tmp_path: Path) -> None:
    """A parent that reads a Python child's output (`check_output(..., stderr=STDOUT)`, `capture_output=True`)
    gets what the child wrote, as without cryostorm: the child's start-up line would have become part of it (a
    JSON answer no longer parsed). A child writing to the stderr cryostorm-run was started with still says it."""
    import subprocess

    script, pids = tmp_path / "capturing.py", tmp_path / "pids"
    script.write_text(CAPTURING)

    def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
        from conftest import child_env

        return subprocess.run([*argv, PYTHON, str(script), str(pids)], capture_output=True, text=True, timeout=60,
                              env=child_env({"CRYOSTORM_SERVICE__NAME": "kids"}), check=False)

    bare = run([])
    launched = run([str(BIN / "cryostorm-run"), "--"])
    expected = "parsed ['pid']\nits stderr ''\ninherits\n"
    assert (launched.returncode, launched.stdout) == (bare.returncode, bare.stdout) == (0, expected), launched.stderr
    _, inheriting_pid = pids.read_text().split()
    starts = [line for line in launched.stderr.splitlines() if line.startswith("cryostorm: service=kids ")]
    assert len(starts) == 2, launched.stderr  # the program's, and the child that writes where it does
    assert f" pid={inheriting_pid} " in starts[1], launched.stderr


KILLING = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"],
                         stdout=subprocess.PIPE, text=True)
child.stdout.readline()  # its hook has run
child.kill()
other = subprocess.Popen(["sleep", "60"])
other.kill()
print("killed", child.wait(), other.wait(), flush=True)
"""


def test_a_python_child_the_program_kills_with_sigkill_is_told_as_lost() -> None:
    """Nothing flushes after SIGKILL, and nothing in the child can count what it loses: the program's side says
    so (a dev server's autoreloader does this on SIGTERM; subprocess.run on a timeout). Not for other children."""
    result = run_launcher(["--quiet", "--", PYTHON, "-c", KILLING])
    assert (result.returncode, result.stdout) == (0, "killed -9 -9\n"), result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cryostorm: the program killed its Python child 'python"), lines
    assert lines[0].endswith("with SIGKILL: whatever telemetry that child had not exported yet is lost, and cannot "
                             "be counted"), lines


EXEC_BY_NAME = """
import os, sys
probe = "import sys; print('cryostorm_run.hook.bootstrap' in sys.modules)"
for call in ("os.execv(path=sys.executable, argv=[sys.executable])", "os.execve(sys.executable, [sys.executable])",
             "os.execve(sys.executable, [sys.executable], {}, env={})", "os.execv(sys.executable, [], {})"):
    try:
        eval(call)
    except TypeError as exc:
        print(type(exc).__name__, exc, flush=True)
if os.fork() == 0:
    os.execve(sys.executable, [sys.executable, "-c", probe], env=dict(os.environ))
print("waited", os.waitstatus_to_exitcode(os.wait()[1]), flush=True)
os.execve(argv=[sys.executable, "-c", probe], env={"PATH": os.environ["PATH"]}, path=sys.executable)
"""


def test_exec_takes_the_arguments_by_name_as_the_original_does() -> None:
    """`os.execve(path=..., argv=..., env=...)` / `os.execve(p, a, env=...)` exec as without cryostorm (a child
    that loses the hook so is told); a call the original refuses raises its very error."""
    import subprocess

    from conftest import child_env

    env = {"CRYOSTORM_SERVICE__NAME": "kids", "CRYOSTORM_EXPORTER_TYPE": "none"}
    bare = subprocess.run([PYTHON, "-c", EXEC_BY_NAME], env=child_env(env), capture_output=True, text=True,
                          timeout=60, check=False)
    done = run_launcher(["--quiet", "--", PYTHON, "-c", EXEC_BY_NAME], env)
    errors = bare.stdout.splitlines()[:4]
    assert [line.split()[0] for line in errors] == ["TypeError"] * 4, bare
    assert (bare.returncode, bare.stdout.splitlines()[4:]) == (0, ["False", "waited 0", "False"]), bare
    assert (done.returncode, done.stdout.splitlines()) == (0, [*errors, "True", "waited 0", "False"]), done.stderr
    python = os.path.basename(PYTHON)
    assert done.stderr.splitlines() == [
        f"cryostorm: child process '{python} -c import sys; print('cryostorm_run.hook.bootstrap' in sys.modules)' "
        "will have no telemetry: "
        f"{LOST_ENV} (if that is meant: CRYOSTORM_CHILD_PROCESSES=none)"], done.stderr


ONE_SHOT_ARGV = """
import subprocess, sys
done = subprocess.run((a for a in [sys.executable, "-c", "print('from a generator')"]))
print(done.returncode, type(done.args).__name__, list(done.args), flush=True)
print(subprocess.check_call(map(str, [sys.executable, "-c", "print('from map')"])), flush=True)
bare = {"PATH": "/usr/bin:/bin"}
print(subprocess.run(iter([sys.executable, "-c", "print('own env')"]), env=bare).returncode, flush=True)
"""


def test_a_one_shot_iterable_as_argv_is_left_to_subprocess() -> None:
    """`subprocess.run(<generator>)`, `check_call(map(str, cmd))`: the check never consumes the program's iterable
    (was IndexError in subprocess: the child got an empty argv); what subprocess returns is the same, and such a
    child is not looked at (nothing said even when it loses the hook)."""
    import subprocess

    from conftest import child_env

    env = {"CRYOSTORM_SERVICE__NAME": "kids", "CRYOSTORM_EXPORTER_TYPE": "none"}
    bare = subprocess.run([PYTHON, "-c", ONE_SHOT_ARGV], env=child_env(env), capture_output=True, text=True,
                          timeout=60, check=False)
    done = run_launcher(["--quiet", "--", PYTHON, "-c", ONE_SHOT_ARGV], env)
    expected = "from a generator\n0 generator []\nfrom map\n0\nown env\n0\n"
    assert (bare.returncode, bare.stdout, bare.stderr) == (0, expected, ""), bare
    assert (done.returncode, done.stdout, done.stderr) == (0, expected, "")
