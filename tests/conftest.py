"""Shared fixtures: a clean environment, the real OTLP receiver, and running the real launcher."""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pytest
from otlp_receiver import otlp_receiver  # noqa: F401  (re-exported fixture)

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BIN = Path(sys.executable).parent
CRYOSTORM_RUN = str(BIN / "cryostorm-run")
# The launchers the suite runs share one plan cache of their own, never the developer's (~/.cache).
PLAN_CACHE = tempfile.mkdtemp(prefix="cryostorm-plan-cache-")
atexit.register(shutil.rmtree, PLAN_CACHE, ignore_errors=True)
# The Ctrl-C tests send SIGINT to their children. A suite started in the background by a script
# (`pytest &`) ignores SIGINT, and an ignored signal stays ignored through exec: every child would
# shrug off the Ctrl-C it is sent and the test would time out. The children get the default instead.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


UNDER_MUTMUT = "MUTANT_UNDER_TEST" in os.environ  # mutmut sets it in every process it starts, before any import
if UNDER_MUTMUT:  # a failing example is reported unshrunk: only killed-or-not counts there
    from hypothesis import Phase, settings

    settings.register_profile("mutation", phases=(Phase.explicit, Phase.reuse, Phase.generate))
    settings.load_profile("mutation")


def examples(count: int) -> int:
    """A property test's number of examples: a tenth (at least 20) under mutmut (`tox -e mutation`), where each
    surviving mutant runs every test that reaches it; the suite itself always runs `count`."""
    return max(20, count // 10) if UNDER_MUTMUT else count


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CRYOSTORM_*/OTEL_* variable of the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.upper().startswith(("CRYOSTORM_", "OTEL_", "_CRYOSTORM_")) or name == "PYTHONPATH":
            monkeypatch.delenv(name, raising=False)


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test process's (cleaned) environment plus `extra`, with the venv's bin first on PATH."""
    env = {k: v for k, v in os.environ.items()
           if not k.upper().startswith(("CRYOSTORM_", "OTEL_", "_CRYOSTORM_")) and k != "PYTHONPATH"}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("CRYOSTORM_SHUTDOWN_TIMEOUT_MILLIS", "5000")
    env.setdefault("CRYOSTORM_PLAN_CACHE", PLAN_CACHE)
    for name in ("no_proxy", "NO_PROXY"):  # a machine's proxy (for the package index) never carries the receivers'
        env[name] = ",".join(filter(None, ["127.0.0.1,localhost,::1", env.get(name, "")]))
    env.update(extra or {})
    return env


def told_lost(stderr: str, item: str) -> bool:
    """Whether the exit lines tell `item` ("1 span") as not delivered: given up on (`cryostorm: 1 span not
    delivered: ...`), or still queued or cut short at the deadline (`... not fully flushed ...: 1 log record,
    1 span not confirmed delivered`). Which one depends on the exit path (Python 3.12's shuts each queue down
    in turn: the first one's export is cut short, the next ones' never begin) and on which queue goes first."""
    if f"cryostorm: {item} not delivered" in stderr:
        return True
    unconfirmed = re.search(r"not fully flushed within [^:]*: ([^;(]*) not confirmed delivered", stderr)
    return unconfirmed is not None and item in unconfirmed.group(1).split(", ")


def run_launcher(
    args: Sequence[str],
    env: Mapping[str, str] | None = None,
    *,
    cwd: Path | str | None = None,
    timeout: float = 60,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the installed `cryostorm-run` console script for real."""
    return subprocess.run(
        [CRYOSTORM_RUN, *args],
        env=child_env(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        check=False,
    )


def tls_files(folder: Path, names: Iterable[str]) -> dict[str, Path]:
    """Real PEM files, one per name: a private key for a name with "key" in it, else its certificate (a CA
    certificate too: it is self-signed). One key pair for all, so any certificate goes with any key; each file
    starts with its name (text before a PEM block is read past), so the files still differ."""
    from otlp_receiver import make_self_signed_cert

    cert, key = (Path(p).read_text() for p in make_self_signed_cert(folder / ".pair"))
    files = {}
    for name in names:
        files[name] = folder / f"{name}.pem"
        files[name].write_text(f"{name} file\n" + (key if "key" in name else cert))
    return files


def drain_pty(leader: int) -> bytes:
    """Everything written to a pseudo-terminal until its other end is closed (then EIO); closes `leader`."""
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the terminal's other end is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return b"".join(chunks)
