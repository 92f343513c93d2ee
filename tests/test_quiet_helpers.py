"""Only processes that can emit announce themselves (issue 15): multiprocessing's helper interpreters
(resource tracker) are not instrumented and print nothing; the forkserver says what it is."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import CRYOSTORM_RUN, PYTHON, ROOT, child_env, run_launcher

PROGRAM = """
import multiprocessing as mp, os, sys

def child():
    print("child", os.getpid(), flush=True)

if __name__ == "__main__":
    mp.set_start_method(sys.argv[1])
    process = mp.Process(target=child)
    process.start()
    process.join()
"""
LINE = re.compile(r"^cryostorm: service=.* pid=(\d+) ", re.M)


@pytest.fixture
def program(tmp_path: Path) -> Path:
    path = tmp_path / "mp_program.py"
    path.write_text(PROGRAM)
    return path


def test_spawn_announces_the_program_and_its_worker_not_the_resource_tracker(program: Path) -> None:
    result = run_launcher(["--", PYTHON, str(program), "spawn"], {"CRYOSTORM_EXPORTER_TYPE": "none"})
    assert result.returncode == 0, result.stderr
    child_pid = re.search(r"^child (\d+)$", result.stdout, re.M).group(1)  # type: ignore[union-attr]
    lines = LINE.findall(result.stderr)
    assert len(lines) == 2 and child_pid in lines, result.stderr  # the program and its worker
    assert "process=" not in result.stderr


def test_forkserver_says_what_it_is(program: Path) -> None:
    result = run_launcher(["--", PYTHON, str(program), "forkserver"], {"CRYOSTORM_EXPORTER_TYPE": "none"})
    assert result.returncode == 0, result.stderr
    lines = LINE.findall(result.stderr)
    assert len(lines) == 2, result.stderr  # the program and the forkserver; no resource tracker
    assert result.stderr.count(" process=multiprocessing.forkserver") == 1


def test_verbose_names_the_helper_it_left_alone(program: Path) -> None:
    result = run_launcher(["--verbose", "--", PYTHON, str(program), "spawn"], {"CRYOSTORM_EXPORTER_TYPE": "none"})
    assert result.returncode == 0, result.stderr
    assert re.search(r"^cryostorm: pid=\d+ ppid=\d+ process=multiprocessing.resource_tracker: not instrumented",
                     result.stderr, re.M), result.stderr


def test_uvicorn_two_workers_print_three_lines() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [CRYOSTORM_RUN, "--", PYTHON, "-m", "uvicorn", "workers_fastapi:app", "--workers", "2", "--port", str(port),
         "--log-level", "warning"],
        cwd=ROOT / "tests" / "apps", env=child_env({"CRYOSTORM_EXPORTER_TYPE": "none"}),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        pids: set[str] = set()
        while len(pids) < 2 and time.monotonic() < deadline:  # both workers answer
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    pids.add(response.read().decode())
            except OSError:
                time.sleep(0.2)
        assert len(pids) == 2
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    lines = LINE.findall(stderr)
    assert len(lines) == 3, stderr  # the supervisor and two workers
