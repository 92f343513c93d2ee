"""A Python child that inherits an os.environ whose PYTHONPATH the program replaced runs without the hook:
it is told, once per command and reason, as a child started with its own env= is (tests/test_children.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import PYTHON, run_launcher

# The child's own code, run from the program's directory (its working directory) by `python -c "import probe"`.
PROBE = "import sys\nprint('hooked' if 'cryostorm_run.hook.bootstrap' in sys.modules else 'no hook')\n"
REPLACES = """
import os, subprocess, sys
probe = "import probe"
subprocess.run([sys.executable, "-c", probe], check=True)
os.environ["PYTHONPATH"] = os.pathsep.join([os.environ["PYTHONPATH"], sys.argv[1]])  # added to: kept
subprocess.run([sys.executable, "-c", probe], check=True)
os.environ["PYTHONPATH"] = sys.argv[1]  # replaced: the hook's directory is gone
subprocess.run([sys.executable, "-c", probe], check=True)
subprocess.run([sys.executable, "-c", probe], check=True)  # the same child: told once
subprocess.run([sys.executable, "-c", probe], env=os.environ, check=True)  # the same situation
print("parent done", flush=True)
"""
EXECS = """
import os, sys
del os.environ["PYTHONPATH"]
os.execv(sys.executable, [sys.executable, "-c", "import probe"])
"""
LOST_INHERITED = ("os.environ, which it inherits, has no PYTHONPATH entry for cryostorm's hook; add to PYTHONPATH "
                  "rather than replace it, or keep PYTHONPATH as the program got it")
ENV = {"CRYOSTORM_SERVICE__NAME": "kids", "CRYOSTORM_EXPORTER_TYPE": "none"}
TOLD = (f"cryostorm: child process '{os.path.basename(PYTHON)} -c import probe' will have no telemetry: "
        f"{LOST_INHERITED} (if that is meant: CRYOSTORM_CHILD_PROCESSES=none)")


def _run(tmp_path: Path, program: str, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "probe.py").write_text(PROBE)
    return run_launcher(["--quiet", "--", PYTHON, "-c", program, str(tmp_path)], {**ENV, **env}, cwd=tmp_path)


def test_a_child_inheriting_a_replaced_pythonpath_is_told_once(tmp_path: Path) -> None:
    done = _run(tmp_path, REPLACES)
    children = ["hooked", "hooked", "no hook", "no hook", "no hook"]
    assert (done.returncode, done.stdout.splitlines()) == (0, [*children, "parent done"]), done.stderr
    assert done.stderr.splitlines() == [TOLD], done.stderr


def test_an_exec_after_pythonpath_was_removed_is_told(tmp_path: Path) -> None:
    done = _run(tmp_path, EXECS)
    assert (done.returncode, done.stdout) == (0, "no hook\n"), done.stderr
    assert done.stderr.splitlines() == [TOLD], done.stderr


def test_nothing_is_said_when_children_are_meant_to_run_without_it(tmp_path: Path) -> None:
    # A PYTHONPATH of the program's own to add to: with none it gets exactly its own back (unset when unset).
    done = _run(tmp_path, REPLACES, CRYOSTORM_CHILD_PROCESSES="none", PYTHONPATH="/no/such/lib")
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert done.stdout.endswith("no hook\nparent done\n")
