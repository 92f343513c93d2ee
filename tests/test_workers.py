"""Pre-fork and multi-process servers under `cryostorm-run`: every worker process exports its own telemetry.

Each case runs a real server (uvicorn, gunicorn), a multiprocessing pool or a Python child under
the real launcher against the real OTLP receiver, and checks that spans and metrics arrive from
every worker pid, each with `service.name=workers` and its own `service.instance.id`. The cases
with a 60 s schedule delay can only receive spans through the exit flush of the worker.
Run with `-s` to see the `PIDS <case>: [...]` lines.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from conftest import CRYOSTORM_RUN, PYTHON, ROOT, child_env, run_launcher
from otlp_receiver import ReceivedSpan, Receiver

APPS = ROOT / "tests" / "apps"
DURATION_METRICS = {"http.server.request.duration", "http.server.duration"}
LONG_DELAY = 60_000  # ms: a span can then only reach the receiver through the exit flush


def otlp_env(rcv: Receiver, protocol: str = "grpc", delay_ms: int = 200) -> dict[str, str]:
    return {
        "CRYOSTORM_EXPORTER_TYPE": "otlp",
        "CRYOSTORM_COLLECTOR": rcv.grpc_endpoint if protocol == "grpc" else rcv.http_endpoint,
        "CRYOSTORM_OTLP__PROTOCOL": protocol,
        "CRYOSTORM_SERVICE__NAME": "workers",
        "CRYOSTORM_TRACING__EXPORT_CONFIG__SCHEDULE_DELAY_MILLIS": str(delay_ms),
        "CRYOSTORM_METRICS__EXPORT_INTERVAL_MILLIS": "500",
        "CRYOSTORM_SERVICE__ENVIRONMENT": "production",
    }


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class Server:
    """`cryostorm-run --quiet -- CMD` in its own session, output to a file, always stopped.
    `launcher`: another venv's cryostorm-run (tests/test_install.py)."""

    def __init__(
        self, cmd: list[str], env: dict[str, str], tmp_path: Path, cwd: Path | None = None,
        launcher: str = CRYOSTORM_RUN,
    ) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / "server.log"
        argv = [a.replace("{port}", str(self.port)) for a in cmd]
        with self.log.open("wb") as out:  # a file, not a pipe: the server can never block on it
            self.proc = subprocess.Popen(
                [launcher, "--quiet", "--", *argv], env=child_env(env), cwd=cwd,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.client = httpx.Client(timeout=20, limits=httpx.Limits(max_keepalive_connections=0))
        self.served: Counter[int] = Counter()  # worker pid -> requests it answered (all paths)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError, PermissionError):  # workers a failed test orphaned
            os.killpg(self.proc.pid, signal.SIGKILL)  # (the session is this server's alone)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def get_pid(self, path: str = "/work") -> int:
        response = self.client.get(self.base + path, headers={"Connection": "close"})
        assert response.status_code == 200, response.text
        pid = int(response.json()["pid"])
        self.served[pid] += 1
        return pid

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited early with {self.proc.returncode}: {self.output()}")
            try:
                self.get_pid("/health")
                return
            except httpx.TransportError:
                time.sleep(0.2)
        pytest.fail(f"server did not answer on {self.base} within {timeout} s: {self.output()}")

    def spread(self, workers: int = 2, max_requests: int = 200, clients: int = 4) -> set[int]:
        """Send /work requests over several connections until `workers` pids have answered."""
        pids: set[int] = set()
        with ThreadPoolExecutor(clients) as pool:
            for _ in range(0, max_requests, 20):
                pids.update(pool.map(lambda _: self.get_pid(), range(20)))
                if len(pids) >= workers:
                    return pids
        pytest.fail(f"only worker pid(s) {pids} answered {max_requests} requests: {self.output()}")

    def stop(self, timeout: float = 40) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)


def run_group(args: list[str], env: dict[str, str], timeout: float = 90) -> tuple[int, str, str]:
    """`cryostorm-run ARGS` to completion in its own session; on timeout the whole session is killed
    (children hung in a deadlock would otherwise outlive the test)."""
    proc = subprocess.Popen(
        [CRYOSTORM_RUN, *args], env=child_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{args} did not finish within {timeout} s; stdout {out!r}, stderr {err!r}")
    return proc.returncode, out, err


ByPid = dict[int, list[ReceivedSpan]]


def server_spans(spans: list[ReceivedSpan]) -> ByPid:
    """SERVER spans by process.pid. (Predicates get the span list: the receiver's lock is held.)"""
    by_pid: dict[int, list[ReceivedSpan]] = defaultdict(list)
    for span in spans:
        if span.kind == "SERVER":
            by_pid[span.resource["process.pid"]].append(span)
    return by_pid


def wait_server_spans(rcv: Receiver, check: Callable[[ByPid], bool], what: str) -> ByPid:
    """Wait until check(SERVER spans by pid) holds; on timeout say which pids/instance ids did arrive."""
    try:
        rcv.wait_for_spans(lambda s: check(server_spans(s)), timeout=30)
    except AssertionError:
        by_pid = server_spans(rcv.spans())
        got = {p: (len(v), {x.resource.get("service.instance.id") for x in v}) for p, v in by_pid.items()}
        pytest.fail(f"no {what} within 30 s; SERVER spans by process.pid (count, instance ids): {got}")
    return server_spans(rcv.spans())


def identities(spans: list[ReceivedSpan]) -> dict[int, str]:
    """pid -> service.instance.id; every span says service.name=workers, one instance id per pid, distinct."""
    ids: dict[int, set[str]] = defaultdict(set)
    for span in spans:
        assert span.resource["service.name"] == "workers", span.resource
        ids[span.resource["process.pid"]].add(span.resource["service.instance.id"])
    assert all(len(v) == 1 for v in ids.values()), f"several instance ids for one pid: {dict(ids)}"
    one = {pid: next(iter(v)) for pid, v in ids.items()}
    assert len(set(one.values())) == len(one), f"pids share a service.instance.id: {one}"
    return one


def check_metrics(rcv: Receiver, names: set[str], ids: dict[int, str], case: str) -> dict[str, list]:
    """Metrics `names` arrive from every instance in `ids`, each under the same pid as its spans."""
    wanted = set(ids.values())

    def from_all(ms: list) -> bool:
        return wanted <= {m.resource["service.instance.id"] for m in ms if m.name in names}

    metrics = [m for m in rcv.wait_for_metrics(from_all, timeout=30) if m.name in names]
    pid_of = {iid: pid for pid, iid in ids.items()}
    by_iid: dict[str, list] = defaultdict(list)
    for m in metrics:
        iid = m.resource["service.instance.id"]
        assert m.resource["service.name"] == "workers"
        if iid in pid_of:
            assert m.resource["process.pid"] == pid_of[iid], m.resource
        by_iid[iid].append(m)
    print(f"METRIC PIDS {case}: {sorted({m.resource['process.pid'] for m in metrics})}")
    return by_iid


def prove_every_worker_exports(rcv: Receiver, srv: Server, case: str) -> set[int]:
    """Load the server until 2 workers answered; their spans and duration metrics arrive."""
    srv.wait_ready()
    pids = srv.spread()
    by_pid = wait_server_spans(rcv, lambda got: pids <= set(got), f"spans from every worker pid {sorted(pids)}")
    spans = [s for ss in by_pid.values() for s in ss]
    ids = identities(spans)
    print(f"PIDS {case}: {sorted(ids)}")
    assert set(ids) == pids, f"spans came from pids {set(ids)}, requests were served by {pids}"
    check_metrics(rcv, DURATION_METRICS, ids, case)
    return pids


# -- servers ---------------------------------------------------------------------------------------

UVICORN = [PYTHON, "-m", "uvicorn", "workers_fastapi:app", "--host", "127.0.0.1", "--port", "{port}",
           "--app-dir", str(APPS)]
# --no-control-socket: gunicorn 27 otherwise shares ~/.gunicorn/gunicorn.ctl between concurrent test runs
GUNICORN = [PYTHON, "-m", "gunicorn", "--bind", "127.0.0.1:{port}", "--chdir", str(APPS), "-w", "2",
            "--no-control-socket"]


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_uvicorn_workers(otlp_receiver: Receiver, tmp_path: Path, protocol: str) -> None:
    with Server([*UVICORN, "--workers", "2"], otlp_env(otlp_receiver, protocol), tmp_path) as srv:
        pids = prove_every_worker_exports(otlp_receiver, srv, f"uvicorn --workers 2 ({protocol})")
        assert srv.proc.pid not in pids


def test_gunicorn_uvicorn_worker(otlp_receiver: Receiver, tmp_path: Path) -> None:
    cmd = [*GUNICORN, "-k", "uvicorn.workers.UvicornWorker", "workers_fastapi:app"]
    with Server(cmd, otlp_env(otlp_receiver), tmp_path) as srv:
        prove_every_worker_exports(otlp_receiver, srv, "gunicorn -k uvicorn.workers.UvicornWorker")
        assert srv.stop() == 0, srv.output()


@pytest.mark.parametrize("preload", [False, True], ids=["no-preload", "preload"])
def test_gunicorn_sync_flask(otlp_receiver: Receiver, tmp_path: Path, preload: bool) -> None:
    cmd = [*GUNICORN, *(["--preload"] if preload else []), "workers_flask:app"]
    with Server(cmd, otlp_env(otlp_receiver), tmp_path) as srv:
        prove_every_worker_exports(otlp_receiver, srv, f"gunicorn sync{' --preload' if preload else ''}")
        assert srv.stop() == 0, srv.output()


def test_uvicorn_reload_child_is_instrumented(otlp_receiver: Receiver, tmp_path: Path) -> None:
    app = tmp_path / "workers_fastapi.py"
    shutil.copy(APPS / "workers_fastapi.py", app)
    cmd = [*UVICORN[:-1], str(tmp_path), "--reload", "--reload-dir", str(tmp_path)]
    with Server(cmd, otlp_env(otlp_receiver), tmp_path, cwd=tmp_path) as srv:
        srv.wait_ready()
        first = srv.get_pid()
        wait_server_spans(otlp_receiver, lambda got: first in got, f"span from the first child {first}")
        deadline, second, bump = time.monotonic() + 60, first, 0
        while second == first:  # StatReload polls mtimes: touch until the child is replaced
            assert time.monotonic() < deadline, f"no reload within 60 s: {srv.output()}"
            bump += 1
            os.utime(app, (time.time() + bump, time.time() + bump))
            time.sleep(1)
            with contextlib.suppress(httpx.TransportError):
                second = srv.get_pid()
        by_pid = wait_server_spans(otlp_receiver, lambda got: second in got, f"span from the new child {second}")
        ids = identities([s for ss in by_pid.values() for s in ss])
        print(f"PIDS uvicorn --reload: {sorted(ids)} (before reload {first}, after {second})")
        assert {first, second} <= set(ids) and srv.proc.pid not in ids
        assert "Reloading" in srv.output() or "reload" in srv.output().lower()


# -- exit flush: recycled workers, SIGTERM ---------------------------------------------------------


def test_gunicorn_max_requests_recycled_worker_flushes(otlp_receiver: Receiver, tmp_path: Path) -> None:
    cmd = [*GUNICORN, "--max-requests", "5", "--max-requests-jitter", "0", "workers_flask:app"]
    with Server(cmd, otlp_env(otlp_receiver, delay_ms=LONG_DELAY), tmp_path) as srv:
        srv.wait_ready()
        for _ in range(12):  # one at a time: 13 requests (with /health) over 2 workers recycle one or more
            srv.get_pid()
        recycled = {p for p, n in srv.served.items() if n >= 5}
        assert recycled, f"no worker served 5 requests: {dict(srv.served)}"
        deadline = time.monotonic() + 30
        while [p for p in recycled if alive(p)] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [p for p in recycled if alive(p)], f"{recycled} served 5 requests but still run: {srv.output()}"
        want = {p: srv.served[p] for p in recycled}
        by_pid = wait_server_spans(
            otlp_receiver, lambda got: {p: len(got.get(p, [])) for p in recycled} == want, f"spans {want} (pid: count)"
        )
        print(f"PIDS gunicorn --max-requests 5: served {dict(srv.served)}, recycled {sorted(recycled)}, "
              f"received from {sorted(by_pid)}")
        identities([s for ss in by_pid.values() for s in ss])
        assert set(by_pid) == recycled, "a live worker exported before its 60 s schedule delay"


def test_sigterm_to_gunicorn_flushes_every_worker(otlp_receiver: Receiver, tmp_path: Path) -> None:
    cmd = [*GUNICORN, "workers_flask:app"]
    with Server(cmd, otlp_env(otlp_receiver, delay_ms=LONG_DELAY), tmp_path) as srv:
        srv.wait_ready()
        pids = srv.spread()
        assert otlp_receiver.spans() == [], "spans exported before SIGTERM: the test proves nothing"
        assert srv.stop() == 0, srv.output()
        want = dict(srv.served)
        by_pid = wait_server_spans(otlp_receiver, lambda got: {p: len(v) for p, v in got.items()} == want,
                                   f"spans {want} (pid: count)")
        ids = identities([s for ss in by_pid.values() for s in ss])
        print(f"PIDS gunicorn SIGTERM: {sorted(ids)} served {want}")
        assert set(ids) == pids
        assert not [p for p in pids if alive(p)], "a worker outlived gunicorn"


# -- multiprocessing pool, subprocess --------------------------------------------------------------


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_multiprocessing_pool_workers_flush_at_exit(otlp_receiver: Receiver, method: str) -> None:
    env = otlp_env(otlp_receiver, delay_ms=LONG_DELAY)  # batch processor: only the exit flush delivers
    code, stdout, stderr = run_group(["--quiet", "--", PYTHON, str(APPS / "workers_pool.py"), method], env)
    assert code == 0, stderr
    assert stderr == "", stderr
    out = json.loads(stdout)
    served = Counter(out["pids"])
    assert len(served) == 2, f"tasks were not spread: {served}"
    spans = otlp_receiver.wait_for_spans(lambda s: len([x for x in s if x.name == "task"]) >= 20, timeout=30)
    tasks = [s for s in spans if s.name == "task"]
    ids = identities(tasks)
    print(f"PIDS multiprocessing pool ({method}): {sorted(ids)} (main {out['main']})")
    assert Counter(s.resource["process.pid"] for s in tasks) == served
    assert sorted(s.attributes["task.index"] for s in tasks) == list(range(20))
    by_iid = check_metrics(otlp_receiver, {"workers.tasks"}, ids, f"pool ({method})")
    totals = {iid: max(p["value"] for m in ms for p in m.points) for iid, ms in by_iid.items()}
    assert {pid: totals[iid] for pid, iid in ids.items()} == served


def test_subprocess_child_exports_its_own_spans(otlp_receiver: Receiver) -> None:
    result = run_launcher(["--quiet", "--", PYTHON, str(APPS / "workers_subprocess.py")], otlp_env(otlp_receiver))
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    out = json.loads(result.stdout)
    spans = otlp_receiver.wait_for_spans(lambda s: {"parent", "child"} <= {x.name for x in s}, timeout=30)
    ids = identities(spans)
    print(f"PIDS subprocess: {sorted(ids)}")
    pid_of = {s.name: s.resource["process.pid"] for s in spans}
    assert pid_of == {"parent": out["main"], "child": out["child"]}
    assert out["main"] != out["child"]
