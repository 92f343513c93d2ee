"""Side-by-side benchmark of cryostorm-run against opentelemetry-instrument (the anchor); throughput also
against ddtrace-run.

    .venv/bin/python bench/run.py            # full run (~10 min on 2 cores), writes bench/results/
    .venv/bin/python bench/run.py --quick    # short run (~2 min), results get a "-quick" suffix
    .venv/bin/python bench/run.py --explore  # also the burst exploration of cryostorm's batch settings
    .venv/bin/python bench/run.py --only faults  # collector down/slow: latency and memory (~8 min)

Stdlib only. See bench/README.md for what each measure means and how the ratios are computed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import glob
import http.client
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
APPS = BENCH / "apps"
WORK = BENCH / ".work"
RESULTS = BENCH / "results"
ANCHOR_VENV = WORK / "anchor-venv"
DDTRACE_VENV = WORK / "ddtrace-venv"
PROJECT_VENV = ROOT / ".venv"
# --reference VENV: an earlier cryostorm-run (its own venv) measured in the same throughput rounds, so a
# regression is told from a machine that is faster or slower than on the day of an older results file
REFERENCE: dict[str, Path] = {}

SDK_VERSION = "1.45.2"
CONTRIB_VERSION = "0.66b2"
DDTRACE_VERSION = "4.16.0"
INSTRUMENTATIONS = [f"opentelemetry-instrumentation-{name}=={CONTRIB_VERSION}"
                    for name in ("fastapi", "requests", "httpx", "logging")]
APP_PACKAGES = ["fastapi", "uvicorn", "requests", "httpx"]
ANCHOR_REQUIREMENTS = [f"opentelemetry-distro=={CONTRIB_VERSION}", f"opentelemetry-exporter-otlp=={SDK_VERSION}",
                       *INSTRUMENTATIONS, *APP_PACKAGES]
PROJECT_REQUIREMENTS = [*INSTRUMENTATIONS, *APP_PACKAGES]
DDTRACE_REQUIREMENTS = [f"ddtrace=={DDTRACE_VERSION}", *APP_PACKAGES]
FREEZE_PATTERN = re.compile(r"opentelemetry|fastapi|uvicorn|ddtrace", re.IGNORECASE)

BURST_SPANS = 100_000
SERVICE = "bench"
LOCAL = "127.0.0.1"
DROP_LINE = re.compile(r"cryostorm: (\d+) spans? dropped")
EXPLORE_BATCH_SIZES = (512, 1024, 2048)
EXPLORE_QUEUE_SIZES = (16384, 32768)
# faults: nothing listens on the discard port (binding it needs root), so connections are refused
COLLECTOR_DOWN = f"http://{LOCAL}:9"
SLOW_DELAY_S = 2.0  # the slow sink answers every export request after this long
FAULT_P99_TARGET = 1.10  # p99 with the collector down/slow over p99 with it up
STEADY_RATE = 1000  # spans/s of bench/apps/steady.py
RSS_BASE_AT_S = 5.0  # RSS growth is measured from this sample on
RSS_BOUND_MB = 150.0  # MB = 10**6 bytes; the default queue holds 16,384 spans
LOSS_LINE = re.compile(r"^cryostorm: (\d+) ([a-z][a-z ]*?) (dropped because|not delivered: the exporter gave up)",
                       re.MULTILINE)
UNFLUSHED_LINE = re.compile(r"^cryostorm: telemetry not fully flushed within [0-9.]+ s[^:]*: (.*?) "
                            r"not (?:confirmed )?delivered",
                            re.MULTILINE)


@dataclass(frozen=True)
class Profile:
    """How much of everything a run does."""

    name: str
    startup_warmup: int
    startup_runs: int
    rss_runs: int
    wrk_warmup_s: int
    wrk_duration_s: int
    rounds: int
    burst_runs: int
    explore_runs: int
    faults_rounds: int
    steady_s: int


FULL = Profile("full", startup_warmup=3, startup_runs=20, rss_runs=10, wrk_warmup_s=3, wrk_duration_s=15,
               rounds=3, burst_runs=3, explore_runs=3, faults_rounds=4, steady_s=60)
QUICK = Profile("quick", startup_warmup=2, startup_runs=5, rss_runs=3, wrk_warmup_s=2, wrk_duration_s=5,
                rounds=1, burst_runs=1, explore_runs=1, faults_rounds=1, steady_s=20)


def log(message: str) -> None:
    print(message, flush=True)


# --------------------------------------------------------------------------- parsing helpers (tested)

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def duration_ms(text: str) -> float:
    """wrk's duration notation ('812.00us', '1.23ms', '2.01s', '1.00m') in milliseconds."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*(us|ms|s|m|h)\s*", text)
    if not match:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse_wrk(output: str) -> dict[str, Any]:
    """req/s, total requests, latency percentiles (ms, with --latency), and errors from wrk's report."""
    result: dict[str, Any] = {"errors": 0, "non_2xx": 0, "percentiles_ms": {}}
    match = re.search(r"Requests/sec:\s*([0-9.]+)", output)
    if not match:
        raise ValueError(f"no Requests/sec in wrk output:\n{output}")
    result["rps"] = float(match.group(1))
    match = re.search(r"(\d+) requests in ([0-9.]+\w+)", output)
    if match:
        result["requests"] = int(match.group(1))
        result["duration_ms"] = duration_ms(match.group(2))
    distribution = output.split("Latency Distribution", 1)
    if len(distribution) == 2:
        for pct, value in re.findall(r"^\s*(\d+(?:\.\d+)?)%\s+([0-9.]+\w+)\s*$", distribution[1], re.MULTILINE):
            result["percentiles_ms"][pct] = duration_ms(value)
    result["p99_ms"] = result["percentiles_ms"].get("99")
    match = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if match:
        result["errors"] = sum(int(g) for g in match.groups())
    match = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if match:
        result["non_2xx"] = int(match.group(1))
    return result


def ready_ports(line: str) -> dict[str, int]:
    """The sink's 'READY grpc=<port> http=<port>[ dd=<port>]' line as {"grpc": .., "http": ..[, "dd": ..]}."""
    match = re.fullmatch(r"READY grpc=(?P<grpc>\d+) http=(?P<http>\d+)(?: dd=(?P<dd>\d+))?\s*", line)
    if not match:
        raise ValueError(f"unexpected sink greeting: {line!r}")
    return {name: int(port) for name, port in match.groupdict().items() if port is not None}


def parse_ready(line: str) -> tuple[int, int]:
    """The sink's gRPC and HTTP ports from its READY line."""
    ports = ready_ports(line)
    return ports["grpc"], ports["http"]


def reported_drops(stderr: str) -> int | None:
    """Spans cryostorm reported as dropped on stderr at exit (None: no report line)."""
    found = [int(n) for n in DROP_LINE.findall(stderr)]
    return sum(found) if found else None


def is_exit_report(line: str) -> bool:
    """A line of cryostorm's loss report at exit (not one of the SDK's log lines it prefixes too)."""
    return bool(LOSS_LINE.match(line) or UNFLUSHED_LINE.match(line)
                or line.startswith("cryostorm: the collector rejected"))


def parse_loss_report(stderr: str) -> dict[str, Any]:
    """cryostorm's exit report on stderr: per kind of item (spans, log records), how many were dropped
    (queue full), failed (the exporter gave up on them) and left unflushed at the shutdown deadline.

    `lines`: the report's lines; `other_lines`: how many other 'cryostorm: ...' lines (the SDK's
    warnings and errors, e.g. export retries) were printed."""
    ours = [line for line in stderr.splitlines() if line.startswith("cryostorm:")]
    report: dict[str, Any] = {"dropped": {}, "failed": {}, "unflushed": {},
                              "lines": [line for line in ours if is_exit_report(line)],
                              "other_lines": sum(1 for line in ours if not is_exit_report(line))}
    for count, kind, what in LOSS_LINE.findall(stderr):
        bucket = report["dropped" if what.startswith("dropped") else "failed"]
        bucket[kind] = bucket.get(kind, 0) + int(count)
    for listing in UNFLUSHED_LINE.findall(stderr):
        for count, kind in re.findall(r"(\d+) ([a-z][a-z ]*?)(?:,|$)", listing):
            report["unflushed"][kind] = report["unflushed"].get(kind, 0) + int(count)
    return report


def vm_status_kb(status: str, key: str = "VmRSS") -> int | None:
    """A memory line of /proc/<pid>/status ('VmRSS:    12345 kB') in KiB."""
    match = re.search(rf"^{key}:\s*(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) if match else None


def rss_growth(samples: Sequence[tuple[float, int]], base_at_s: float = RSS_BASE_AT_S) -> dict[str, Any]:
    """RSS samples (seconds since start, KiB) -> the RSS at `base_at_s` (first sample at or after it),
    the maximum of all samples and the growth (maximum - base); None where there is no base sample."""
    later = [kb for t, kb in samples if t >= base_at_s]
    base = later[0] if later else None
    peak = max((kb for _, kb in samples), default=None)
    growth = peak - base if base is not None and peak is not None else None
    return {"base_kb": base, "max_kb": peak, "growth_kb": growth,
            "growth_mb": None if growth is None else growth * 1024 / 1e6}


def fault_ratios(medians: dict[str, dict[str, Any]], metric: str = "p99_ms") -> dict[str, float | None]:
    """For every '<launcher>-<state>' key other than '<launcher>-up': its metric over '<launcher>-up'."""
    out: dict[str, float | None] = {}
    for key, values in medians.items():
        launcher, _, state = key.rpartition("-")
        if state != "up" and f"{launcher}-up" in medians:
            out[key] = ratio(values.get(metric), medians[f"{launcher}-up"].get(metric))
    return out


def median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def ratio(ours: float | None, anchor: float | None) -> float | None:
    if ours is None or anchor is None or anchor == 0:
        return None
    return ours / anchor


@dataclass(frozen=True)
class Goal:
    name: str
    value: float | None
    op: str  # "<=", ">=", "<" or ">"
    target: float
    detail: str = ""

    @property
    def passed(self) -> bool:
        if self.value is None:
            return False
        return {"<=": self.value <= self.target, ">=": self.value >= self.target,
                "<": self.value < self.target, ">": self.value > self.target}[self.op]

    def as_dict(self) -> dict[str, Any]:
        return {"goal": self.name, "value": self.value, "op": self.op, "target": self.target,
                "pass": self.passed, "detail": self.detail}


def fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], markdown: bool = False) -> str:
    cells = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    if markdown:
        lines = ["| " + " | ".join(cells[0]) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in cells[1:]]
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# --------------------------------------------------------------------------- environment & setup


def clean_env() -> dict[str, str]:
    """This process's environment without anything that would configure any of the launchers."""
    return {k: v for k, v in os.environ.items()
            if not k.upper().startswith(("OTEL_", "CRYOSTORM_", "_CRYOSTORM_", "DD_", "_DD_"))
            and k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONSTARTUP")}


def run(cmd: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 600,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(cmd), env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"command failed ({result.returncode}): {shlex.join(cmd)}\n{result.stdout}\n{result.stderr}")
    return result


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def missing_requirements(python: Path, requirements: Sequence[str]) -> list[str]:
    """Requirements (name or name==version) not satisfied by `python -m pip freeze`."""
    frozen: dict[str, str] = {}
    for line in run([str(python), "-m", "pip", "freeze", "--all"]).stdout.splitlines():
        if "==" in line:
            name, version = line.split("==", 1)
            frozen[_norm(name)] = version.strip()
    missing = []
    for req in requirements:
        name, _, version = req.partition("==")
        have = frozen.get(_norm(name))
        if have is None or (version and have != version):
            missing.append(req)
    return missing


def ensure_venvs() -> None:
    base_python = getattr(sys, "_base_executable", None) or sys.executable
    project_python = PROJECT_VENV / "bin" / "python"
    if not project_python.exists():
        raise SystemExit(f"project venv not found at {PROJECT_VENV} (see README.md: python3 -m venv .venv ...)")
    for venv, label in ((ANCHOR_VENV, "anchor"), (DDTRACE_VENV, "ddtrace")):
        if not (venv / "bin" / "python").exists():
            log(f"creating the {label} venv {venv} with {base_python}")
            WORK.mkdir(parents=True, exist_ok=True)
            run([base_python, "-m", "venv", str(venv)])
    for python, reqs, label in ((ANCHOR_VENV / "bin" / "python", ANCHOR_REQUIREMENTS, "anchor"),
                                (DDTRACE_VENV / "bin" / "python", DDTRACE_REQUIREMENTS, "ddtrace"),
                                (project_python, PROJECT_REQUIREMENTS, "project")):
        missing = missing_requirements(python, reqs)
        if missing:
            log(f"installing into the {label} venv: {' '.join(missing)}")
            run([str(python), "-m", "pip", "install", "-q", *missing], timeout=1800)
        missing = missing_requirements(python, reqs)
        if missing:
            raise SystemExit(f"{label} venv still misses {missing}")
    compile_packages([project_python, *([REFERENCE["venv"] / "bin" / "python"] if "venv" in REFERENCE else [])])
    for tool in ("hyperfine", "wrk"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found on PATH (Debian: apt-get install {tool})")
    if not Path("/usr/bin/time").exists():
        raise SystemExit("/usr/bin/time not found (Debian: apt-get install time)")


def compile_packages(pythons: Sequence[Path]) -> None:
    """Byte-compile cryostorm_run where each venv imports it from, as installing a wheel does: an editable
    install's source tree may have no `__pycache__` (e.g. with PYTHONDONTWRITEBYTECODE=1 in the shell, which
    every variant inherits), and compiling ~40 modules at every start is not what pip users pay (2026-12-01:
    `python -c pass` under cryostorm-run took 56.1 ms without them, 34.4 ms with them)."""
    for python in pythons:
        where = run([str(python), "-c", "import cryostorm_run, os; print(os.path.dirname(cryostorm_run.__file__))"])
        run([str(python), "-m", "compileall", "-q", where.stdout.strip()], timeout=300)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOCAL, 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- the sink


class Sink:
    """bench/sink.py (with its fake Datadog agent) in a subprocess: count/reset over its stdin/stdout."""

    def __init__(self, python: Path, log_path: Path, delay_s: float = 0.0) -> None:
        self._stderr = log_path.open("w")
        delay = ["--delay", str(delay_s)] if delay_s else []
        self.proc = subprocess.Popen([str(python), str(BENCH / "sink.py"), "--dd-port", "0", *delay],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True,
                                     bufsize=1, env=clean_env())
        assert self.proc.stdout is not None
        ports = ready_ports(self.proc.stdout.readline())
        if "dd" not in ports:
            raise RuntimeError("the sink started without its fake Datadog agent")
        self.grpc_port, self.http_port, self.dd_port = ports["grpc"], ports["http"], ports["dd"]

    @property
    def grpc(self) -> str:
        return f"http://{LOCAL}:{self.grpc_port}"

    @property
    def http(self) -> str:
        return f"http://{LOCAL}:{self.http_port}"

    @property
    def dd(self) -> str:
        return f"http://{LOCAL}:{self.dd_port}"

    def _ask(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the sink died (exit {self.proc.poll()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def reset(self) -> None:
        self._ask("reset")

    def count(self, settle_s: float = 0.3, timeout_s: float = 10.0) -> dict[str, Any]:
        """Counters once they stop moving (an exporter may still be mid-request)."""
        deadline = time.monotonic() + timeout_s
        last = self._ask("count")
        while time.monotonic() < deadline:
            time.sleep(settle_s)
            now = self._ask("count")
            if now == last:
                return now
            last = now
        return last

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._ask("quit")
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            self.proc.wait(10)
        self._stderr.close()


# --------------------------------------------------------------------------- other work on the machine


def _cpu_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot, from /proc/stat."""
    values = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def pid_cpu_s(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


class CpuMonitor:
    """How much CPU *other* programs used: before a measurement (gate) and during it (watch).

    Busy time of all CPUs (/proc/stat) minus the CPU time of this harness, its waited-for children
    (servers, launchers, wrk, hyperfine and their descendants) and the sink. Loopback networking
    done in interrupt context counts as "foreign" too, so a few % is the floor.
    """

    def __init__(self, threshold_pct: float = 15.0, max_wait_s: float = 60.0) -> None:
        self.threshold_pct = threshold_pct
        self.max_wait_s = max_wait_s
        self.sink_pid: int | None = None
        self.helper_pids: list[int] = []  # more long-lived processes of the harness (the slow sink)
        self.gates: list[dict[str, Any]] = []

    def _own_cpu_s(self, pids: Sequence[int]) -> float:
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        running = sum(pid_cpu_s(pid) for pid in (self.sink_pid, *self.helper_pids, *pids))  # not waited for yet
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime + running

    def _snapshot(self, pids: Sequence[int] = ()) -> tuple[int, int, float]:
        busy, total = _cpu_ticks()
        return busy, total, self._own_cpu_s(pids)

    def _foreign_pct(self, start: tuple[int, int, float], pids: Sequence[int] = ()) -> float:
        busy, total, own = self._snapshot(pids)
        tick = os.sysconf("SC_CLK_TCK")
        if total <= start[1]:
            return 0.0
        foreign_s = (busy - start[0]) / tick - (own - start[2])
        return max(0.0, 100.0 * foreign_s / ((total - start[1]) / tick))

    def gate(self, label: str) -> None:
        """Wait (up to max_wait_s) until other programs use less than threshold_pct of the CPUs."""
        waited = 0.0
        while True:
            start = self._snapshot()
            time.sleep(1.0)
            busy = self._foreign_pct(start)
            if busy <= self.threshold_pct or waited >= self.max_wait_s:
                break
            if waited == 0:
                log(f"  (machine busy: {busy:.0f} % CPU used by other programs; waiting up to "
                    f"{self.max_wait_s:.0f} s before {label})")
            time.sleep(4.0)
            waited += 5.0
        self.gates.append({"before": label, "foreign_cpu_pct": round(busy, 1), "waited_s": waited})

    @contextlib.contextmanager
    def watch(self, into: dict[str, Any], pids: Sequence[int] = ()) -> Iterator[None]:
        """Stores foreign_cpu_pct (other programs' share of all CPUs during the block) into `into`.

        `pids`: own processes that run through the whole block and are not waited for inside it.
        """
        start = self._snapshot(pids)
        try:
            yield
        finally:
            into["foreign_cpu_pct"] = round(self._foreign_pct(start, pids), 1)


MONITOR = CpuMonitor()


# --------------------------------------------------------------------------- variants


@dataclass
class Variant:
    """One way of running a command: bare, under the anchor, under cryostorm-run or under ddtrace-run."""

    key: str  # bare-anchor, bare, anchor, cryostorm, ddtrace
    label: str
    venv: Path
    prefix: list[str]
    env: dict[str, str] = field(default_factory=dict)

    def bin(self, tool: str) -> str:
        return str(self.venv / "bin" / tool)

    def argv(self, program: str, *args: str) -> list[str]:
        return [*self.prefix, self.bin(program), *args]

    def full_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = clean_env()
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env.update(self.env)
        env.update(extra or {})
        return env

    def shown(self, program: str, *args: str, extra: dict[str, str] | None = None) -> str:
        """The command as a shell line (the variables this harness sets, then the argv)."""
        settings = {**self.env, **(extra or {})}
        return shlex.join([*(f"{k}={v}" for k, v in sorted(settings.items())), *self.argv(program, *args)])

    def env_argv(self, program: str, *args: str, extra: dict[str, str] | None = None) -> list[str]:
        """argv that sets its own environment through /usr/bin/env (hyperfine has no per-command env)."""
        env = self.full_env(extra)
        return ["/usr/bin/env", "-i", *(f"{k}={v}" for k, v in sorted(env.items())), *self.argv(program, *args)]


def bare(venv: Path, key: str, label: str) -> Variant:
    return Variant(key, label, venv, [])


def anchor(endpoint: str, *, protocol: str = "grpc", metrics: bool = True, logs: bool = True) -> Variant:
    env = {
        "OTEL_SERVICE_NAME": SERVICE,
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "otlp" if metrics else "none",
        "OTEL_LOGS_EXPORTER": "otlp" if logs else "none",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
    }
    if protocol != "grpc":
        env["OTEL_EXPORTER_OTLP_PROTOCOL"] = protocol
    return Variant("anchor", "opentelemetry-instrument", ANCHOR_VENV,
                   [str(ANCHOR_VENV / "bin" / "opentelemetry-instrument")], env)


def cryostorm(endpoint: str, *, protocol: str = "grpc", metrics: bool = True, logs: bool = True,
              extra: dict[str, str] | None = None) -> Variant:
    env = {
        "CRYOSTORM_SERVICE__NAME": SERVICE,
        "CRYOSTORM_EXPORTER_TYPE": "otlp",
        "CRYOSTORM_COLLECTOR": endpoint,
    }
    if protocol != "grpc":
        env["CRYOSTORM_OTLP__PROTOCOL"] = protocol
    if not metrics:
        env["CRYOSTORM_METRICS__ENABLED"] = "false"
    if not logs:
        env["CRYOSTORM_LOGGING__ENABLED"] = "false"
    env.update(extra or {})
    return Variant("cryostorm", "cryostorm-run", PROJECT_VENV,
                   [str(PROJECT_VENV / "bin" / "cryostorm-run"), "--quiet", "--"], env)


def ddtrace(agent_url: str) -> Variant:
    """ddtrace-run with its defaults, sending to the sink's fake Datadog agent."""
    return Variant("ddtrace", "ddtrace-run", DDTRACE_VENV, [str(DDTRACE_VENV / "bin" / "ddtrace-run")],
                   {"DD_TRACE_AGENT_URL": agent_url, "DD_SERVICE": SERVICE})


# --------------------------------------------------------------------------- measures


def peak_rss_kb(argv: list[str], env: dict[str, str],
                timeout: float = 300) -> tuple[int, subprocess.CompletedProcess[str]]:
    """Peak RSS (KiB) of a command and its exec'd successors, from GNU time's %M."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss", dir=WORK) as out:
        result = subprocess.run(["/usr/bin/time", "-o", out.name, "-f", "%M", *argv], env=env, capture_output=True,
                                text=True, timeout=timeout, check=False)
        text = Path(out.name).read_text().strip().splitlines()
    if result.returncode != 0:
        raise RuntimeError(f"failed ({result.returncode}): {shlex.join(argv)}\n{result.stderr[-2000:]}")
    return int(text[-1]), result


def startup_parts(ours: Variant, args: tuple[str, ...]) -> dict[str, list[str]]:
    """Commands for issue 17's start-up parts (hyperfine names -> argv): cryostorm without its plan cache
    (a container's very first start), the launcher alone (its program is /bin/true) and the hook alone
    (`python -c pass` with exactly the environment the launcher hands the program), and /bin/true."""
    cold = ours.env_argv("python", *args, extra={"CRYOSTORM_PLAN_CACHE": "off"})
    launcher = [*ours.env_argv("python", *args)[: -len(args) - 1], "/bin/true"]
    dumped = run([*ours.prefix, "/usr/bin/env", "-0"], env=ours.full_env())
    handed = dict(item.split("=", 1) for item in dumped.stdout.split("\0") if "=" in item)
    if not handed.get("PYTHONPATH"):
        raise RuntimeError(f"cryostorm-run handed its program no PYTHONPATH: {dumped.stderr[-500:]}")
    hook = ["/usr/bin/env", "-i", *(f"{k}={v}" for k, v in sorted(handed.items())), ours.bin("python"), *args]
    return {"cryostorm-no-cache": cold, "launcher-alone": launcher, "hook-alone": hook,
            "true": ["/bin/true"]}


def measure_startup(sink: Sink, profile: Profile, record: dict[str, Any]) -> dict[str, Any]:
    log("\n== startup: python -c pass ==")
    variants = [
        bare(ANCHOR_VENV, "bare-anchor", "python (anchor venv)"),
        anchor(sink.grpc),
        bare(PROJECT_VENV, "bare", "python (project venv)"),
        cryostorm(sink.grpc),
    ]
    args = ("-c", "pass")
    for v in variants:  # one checked run each: a broken variant must not be timed
        result = run(v.argv("python", *args), env=v.full_env())
        if result.stderr.strip():
            log(f"  note: {v.label} wrote to stderr: {result.stderr.strip()[:300]}")
    ours = variants[3]
    parts = startup_parts(ours, args)
    export = WORK / "startup-hyperfine.json"
    cmd = ["hyperfine", "-N", "--style", "basic", "--warmup", str(profile.startup_warmup),
           "--runs", str(profile.startup_runs), "--export-json", str(export)]
    for v in variants:
        cmd += ["-n", v.key, shlex.join(v.env_argv("python", *args))]
    for key, argv in parts.items():
        cmd += ["-n", key, shlex.join(argv)]
    log(f"  hyperfine: {len(variants)} commands, warmup {profile.startup_warmup}, runs {profile.startup_runs}")
    out: dict[str, Any] = {"hyperfine": {}, "rss_kb": {}}
    MONITOR.gate("startup hyperfine")
    with MONITOR.watch(out.setdefault("hyperfine_cpu", {})):
        subprocess.run(cmd, check=True, timeout=1800, stdout=subprocess.DEVNULL)
    data = json.loads(export.read_text())
    times = {r["command"]: r for r in data["results"]}
    for key, r in times.items():
        out["hyperfine"][key] = {k: r[k] * 1000 for k in ("median", "mean", "stddev", "min", "max")}
        out["hyperfine"][key]["runs"] = len(r["times"])
    log(f"  peak RSS: {profile.rss_runs} runs each under /usr/bin/time -f %M")
    samples: dict[str, list[int]] = {v.key: [] for v in variants}
    MONITOR.gate("startup RSS")
    with MONITOR.watch(out.setdefault("rss_cpu", {})):
        for _ in range(profile.rss_runs):
            for v in variants:
                samples[v.key].append(peak_rss_kb(v.argv("python", *args), v.full_env())[0])
    for key, values in samples.items():
        out["rss_kb"][key] = {"median": statistics.median(values), "samples": values}
    ms = {k: v["median"] for k, v in out["hyperfine"].items()}
    rss = {k: v["median"] for k, v in out["rss_kb"].items()}
    out["overhead_ms"] = {"anchor": ms["anchor"] - ms["bare-anchor"], "cryostorm": ms["cryostorm"] - ms["bare"]}
    out["extra_rss_kb"] = {"anchor": rss["anchor"] - rss["bare-anchor"], "cryostorm": rss["cryostorm"] - rss["bare"]}
    out["overhead_ratio"] = ratio(out["overhead_ms"]["cryostorm"], out["overhead_ms"]["anchor"])
    # issue 17's parts: the launcher alone (exec'ing /bin/true) and the hook alone (python -c pass with the
    # environment the launcher gives the program), each over bare python; and the first run (no plan cache)
    out["launcher_over_bare_ms"] = ms["launcher-alone"] - ms["true"] - ms["bare"]
    out["hook_over_bare_ms"] = ms["hook-alone"] - ms["bare"]
    out["cold_overhead_ms"] = ms["cryostorm-no-cache"] - ms["bare"]
    out["cold_overhead_ratio"] = ratio(out["cold_overhead_ms"], out["overhead_ms"]["anchor"])
    out["extra_rss_ratio"] = ratio(out["extra_rss_kb"]["cryostorm"], out["extra_rss_kb"]["anchor"])
    record["startup"] = [v.shown("python", *args) for v in variants]
    record["startup_hyperfine"] = shlex.join([*cmd[:9], "-n", "<name>", "/usr/bin/env -i <env> <command>", "..."])
    log(f"  overhead: anchor {fmt(out['overhead_ms']['anchor'], 1)} ms, cryostorm "
        f"{fmt(out['overhead_ms']['cryostorm'], 1)} ms, ratio {fmt(out['overhead_ratio'])}; extra RSS: anchor "
        f"{out['extra_rss_kb']['anchor'] / 1024:.1f} MiB, cryostorm {out['extra_rss_kb']['cryostorm'] / 1024:.1f} "
        f"MiB, ratio {fmt(out['extra_rss_ratio'])}")
    return out


def wait_ready(proc: subprocess.Popen[str], port: int, timeout_s: float = 60) -> int:
    """Poll GET /hello until it answers 200; returns the number of requests that reached the app."""
    deadline = time.monotonic() + timeout_s
    sent = 0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it was ready")
        try:
            conn = http.client.HTTPConnection(LOCAL, port, timeout=5)
            conn.request("GET", "/hello")
            status = conn.getresponse().status
            conn.close()
        except OSError:
            time.sleep(0.1)
            continue
        sent += 1
        if status == 200:
            return sent
        time.sleep(0.1)
    raise RuntimeError(f"server on port {port} not ready within {timeout_s} s")


def wrk(url: str, seconds: int, latency: bool) -> dict[str, Any]:
    cmd = ["wrk", "-t2", "-c32", f"-d{seconds}s", *(["--latency"] if latency else []), url]
    result = run(cmd, timeout=seconds + 60)
    parsed = parse_wrk(result.stdout)
    parsed["command"] = shlex.join(cmd)
    return parsed


def vm_hwm_kb(pid: int) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return None


def stop_server(proc: subprocess.Popen[str]) -> None:
    """SIGTERM, as a container stop sends; SIGKILL if it has not ended a minute later."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def one_throughput_run(v: Variant, sink: Sink, profile: Profile) -> dict[str, Any]:
    port = free_port()
    args = ("--app-dir", str(APPS), "--host", LOCAL, "--port", str(port), "--no-access-log",
            "--log-level", "warning", "hello_app:app")
    MONITOR.gate(f"throughput {v.key}")
    sink.reset()
    cpu: dict[str, Any] = {}
    stderr_path = WORK / f"server-{v.key}.stderr"
    with stderr_path.open("w") as err:
        proc = subprocess.Popen(v.argv("uvicorn", *args), env=v.full_env(), stdout=subprocess.DEVNULL,
                                stderr=err, text=True)
        try:
            probes = wait_ready(proc, port)
            url = f"http://{LOCAL}:{port}/hello"
            warm = wrk(url, profile.wrk_warmup_s, latency=False)
            with MONITOR.watch(cpu, pids=(proc.pid,)):
                main = wrk(url, profile.wrk_duration_s, latency=True)
            server_rss = vm_hwm_kb(proc.pid)
        finally:
            stopping = time.monotonic()
            stop_server(proc)
            exit_s = time.monotonic() - stopping
    counts = sink.count()
    requests = probes + warm.get("requests", 0) + main.get("requests", 0)
    stderr = stderr_path.read_text()
    return {
        "rps": main["rps"], "p99_ms": main["p99_ms"], "percentiles_ms": main["percentiles_ms"],
        "requests_measured": main.get("requests"), "requests_total": requests,
        "errors": main["errors"] + warm["errors"], "non_2xx": main["non_2xx"] + warm["non_2xx"],
        "spans_at_sink": counts["spans"], "spans_per_request": counts["spans"] / requests if requests else None,
        # ddtrace: traces (not spans) its payloads announced to the fake agent
        "dd_traces_at_agent": counts.get("dd_traces", 0), "dd_payloads": counts.get("dd_payloads", 0),
        "dd_traces_per_request": counts.get("dd_traces", 0) / requests if requests else None,
        "logs_at_sink": counts["logs"], "metric_points_at_sink": counts["metrics_points"],
        "server_peak_rss_kb": server_rss, "exit_code": proc.returncode, "wrk": main["command"],
        "server_stderr_tail": stderr[-1500:], "foreign_cpu_pct": cpu.get("foreign_cpu_pct"),
        "exit_after_sigterm_s": round(exit_s, 2), "loss": parse_loss_report(stderr),
    }


def measure_throughput(sink: Sink, profile: Profile, record: dict[str, Any]) -> dict[str, Any]:
    log(f"\n== throughput: FastAPI GET /hello, wrk -t2 -c32 -d{profile.wrk_duration_s}s, {profile.rounds} round(s) ==")
    variants = [bare(PROJECT_VENV, "bare", "uvicorn (bare)"), anchor(sink.grpc), cryostorm(sink.grpc),
                ddtrace(sink.dd)]
    if "venv" in REFERENCE:
        variants.append(reference(cryostorm(sink.grpc)))
    runs: dict[str, list[dict[str, Any]]] = {v.key: [] for v in variants}
    for round_no in range(profile.rounds):
        order = variants[round_no % len(variants):] + variants[:round_no % len(variants)]
        for v in order:
            r = one_throughput_run(v, sink, profile)
            runs[v.key].append(r)
            per_request = (f"traces/req at the fake agent {fmt(r['dd_traces_per_request'])} "
                           f"({r['dd_traces_at_agent']:,} traces in {r['dd_payloads']:,} payloads)"
                           if v.key == "ddtrace" else f"spans/req {fmt(r['spans_per_request'])}")
            log(f"  round {round_no + 1} {v.key:<9} {r['rps']:>9,.0f} req/s  p99 {fmt(r['p99_ms'])} ms  "
                f"{per_request}  errors {r['errors']}  non-2xx {r['non_2xx']}  "
                f"other programs' CPU {r['foreign_cpu_pct']} %")
            if v.key == "ddtrace" and (r["dd_traces_per_request"] or 0) < 0.9:
                log(f"  note: ddtrace-run delivered {r['dd_traces_at_agent']:,} traces for {r['requests_total']:,} "
                    f"requests to the fake agent; see {WORK.relative_to(ROOT)}/server-ddtrace.stderr")
    out: dict[str, Any] = {"runs": runs, "median": {}}
    for key, rs in runs.items():
        out["median"][key] = {m: median([r[m] for r in rs]) for m in
                              ("rps", "p99_ms", "spans_per_request", "dd_traces_per_request", "server_peak_rss_kb")}
        out["median"][key]["foreign_cpu_pct_max"] = max((r["foreign_cpu_pct"] or 0.0) for r in rs)
    med = out["median"]
    out["rps_ratio"] = ratio(med["cryostorm"]["rps"], med["anchor"]["rps"])
    out["p99_ratio"] = ratio(med["cryostorm"]["p99_ms"], med["anchor"]["p99_ms"])
    out["rps_ratio_ddtrace"] = ratio(med["cryostorm"]["rps"], med["ddtrace"]["rps"])
    out["anchor_vs_bare"] = ratio(med["anchor"]["rps"], med["bare"]["rps"])
    out["cryostorm_vs_bare"] = ratio(med["cryostorm"]["rps"], med["bare"]["rps"])
    out["ddtrace_vs_bare"] = ratio(med["ddtrace"]["rps"], med["bare"]["rps"])
    if "reference" in med:
        out["rps_ratio_reference"] = ratio(med["cryostorm"]["rps"], med["reference"]["rps"])
        out["reference_venv"] = str(REFERENCE["venv"])
    record["throughput"] = [v.shown("uvicorn", "--app-dir", "bench/apps", "--host", LOCAL, "--port", "<free port>",
                                    "--no-access-log", "--log-level", "warning", "hello_app:app") for v in variants]
    record["throughput_load"] = (f"wrk -t2 -c32 -d{profile.wrk_warmup_s}s <url> (warmup, discarded); "
                                 f"wrk -t2 -c32 -d{profile.wrk_duration_s}s --latency http://127.0.0.1:<port>/hello")
    return out


def one_burst(v: Variant, sink: Sink) -> dict[str, Any]:
    MONITOR.gate(f"burst {v.key}")
    sink.reset()
    cpu: dict[str, Any] = {}
    with MONITOR.watch(cpu):
        rss, result = peak_rss_kb(v.argv("python", str(APPS / "burst.py"), str(BURST_SPANS)), v.full_env())
    counts = sink.count()
    stats = json.loads(result.stdout.strip().splitlines()[-1])
    delivered = counts["spans"]
    return {
        "creation_s": stats["seconds"], "rate": stats["rate"], "delivered": delivered,
        "delivered_pct": 100.0 * delivered / BURST_SPANS, "peak_rss_kb": rss,
        "reported_dropped": reported_drops(result.stderr) if v.key in ("cryostorm", "reference") else None,
        "export_requests": counts["requests"], "rejected_requests": counts["rejected"],
        "stderr_tail": result.stderr[-800:], "foreign_cpu_pct": cpu["foreign_cpu_pct"],
    }


def burst_variants(sink: Sink, protocol: str, extra: dict[str, str] | None = None) -> tuple[Variant, Variant]:
    endpoint = sink.grpc if protocol == "grpc" else sink.http
    ours_extra = {"CRYOSTORM_SHUTDOWN_TIMEOUT_MILLIS": "60000", **(extra or {})}
    return (anchor(endpoint, protocol=protocol, metrics=False, logs=False),
            cryostorm(endpoint, protocol=protocol, metrics=False, logs=False, extra=ours_extra))


def reference(ours: Variant) -> Variant:
    """The earlier cryostorm of `--reference VENV`, run exactly as `ours` (same settings)."""
    return Variant("reference", f"cryostorm-run from {REFERENCE['venv']}", REFERENCE["venv"],
                   [str(REFERENCE["venv"] / "bin" / "cryostorm-run"), "--quiet", "--"], ours.env)


def summarize_bursts(rs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "rate": median([r["rate"] for r in rs]),
        "delivered_pct": median([r["delivered_pct"] for r in rs]),
        "delivered_pct_min": min(r["delivered_pct"] for r in rs),
        "peak_rss_kb": median([r["peak_rss_kb"] for r in rs]),
        "reported_dropped": [r["reported_dropped"] for r in rs],
        "foreign_cpu_pct_max": max(r["foreign_cpu_pct"] for r in rs),
    }


def measure_burst(sink: Sink, profile: Profile, record: dict[str, Any]) -> dict[str, Any]:
    log(f"\n== burst: {BURST_SPANS:,} spans, default batch settings, {profile.burst_runs} run(s) ==")
    out: dict[str, Any] = {}
    record["burst"] = []
    for protocol in ("grpc", "http/protobuf"):
        variants = burst_variants(sink, protocol)
        if "venv" in REFERENCE:  # the earlier cryostorm in the same runs: a regression told from a faster anchor
            variants = (*variants, reference(variants[1]))
        record["burst"] += [v.shown("python", "bench/apps/burst.py", str(BURST_SPANS)) for v in variants]
        runs: dict[str, list[dict[str, Any]]] = {v.key: [] for v in variants}
        for i in range(profile.burst_runs):
            for v in variants:
                r = one_burst(v, sink)
                runs[v.key].append(r)
                log(f"  {protocol:<13} run {i + 1} {v.key:<9} {r['rate']:>9,.0f} spans/s  delivered "
                    f"{r['delivered_pct']:6.2f} %  peak RSS {r['peak_rss_kb'] / 1024:.0f} MiB  "
                    f"other CPU {r['foreign_cpu_pct']} %"
                    + (f"  reported dropped {r['reported_dropped']}" if r["reported_dropped"] is not None else ""))
        summary = {key: summarize_bursts(rs) for key, rs in runs.items()}
        out[protocol] = {"runs": runs, "median": summary,
                         "rate_ratio": ratio(summary["cryostorm"]["rate"], summary["anchor"]["rate"])}
        if "reference" in summary:
            out[protocol]["rate_ratio_reference"] = ratio(summary["cryostorm"]["rate"], summary["reference"]["rate"])
            out[protocol]["reference_venv"] = str(REFERENCE["venv"])
    return out


def measure_forced_drops(sink: Sink, profile: Profile, record: dict[str, Any]) -> dict[str, Any]:
    """Limits that force drops: cryostorm must report the number dropped on stderr at exit."""
    extra = {"CRYOSTORM_TRACING__EXPORT_CONFIG__MAX_QUEUE_SIZE": "2048",
             "CRYOSTORM_TRACING__EXPORT_CONFIG__MAX_BLOCK_MILLIS": "0"}
    log(f"\n== forced drops: cryostorm with max_queue_size=2048, max_block_millis=0 (gRPC), "
        f"{profile.burst_runs} run(s) ==")
    v = burst_variants(sink, "grpc", extra)[1]
    record["forced_drops"] = v.shown("python", "bench/apps/burst.py", str(BURST_SPANS))
    runs = []
    for i in range(profile.burst_runs):
        r = one_burst(v, sink)
        r["lost"] = BURST_SPANS - r["delivered"]
        r["stderr_lines"] = [line for line in r["stderr_tail"].splitlines() if line.startswith("cryostorm:")]
        runs.append(r)
        log(f"  run {i + 1}: delivered {r['delivered']:,}, lost {r['lost']:,}, reported dropped "
            f"{r['reported_dropped']}; stderr: {r['stderr_lines']}")
    return {
        "runs": runs,
        # never silent: every run that lost spans printed a drop report
        "all_reported": all(r["reported_dropped"] is not None for r in runs if r["lost"]),
        "any_lost": any(r["lost"] for r in runs),
        "exact": all((r["reported_dropped"] or 0) == r["lost"] for r in runs),
    }


def measure_explore(sink: Sink, profile: Profile, record: dict[str, Any]) -> dict[str, Any]:
    log(f"\n== burst exploration: cryostorm batch_size x max_queue_size, {profile.explore_runs} run(s) each ==")
    configs = [(b, q) for b in EXPLORE_BATCH_SIZES for q in EXPLORE_QUEUE_SIZES]
    out: dict[str, Any] = {}
    for protocol in ("grpc", "http/protobuf"):
        runs: dict[str, list[dict[str, Any]]] = {"anchor": [], **{f"{b}/{q}": [] for b, q in configs}}
        for i in range(profile.explore_runs):
            a = burst_variants(sink, protocol)[0]
            r = one_burst(a, sink)
            runs["anchor"].append(r)
            log(f"  {protocol:<13} run {i + 1} anchor      {r['rate']:>9,.0f} spans/s  {r['delivered_pct']:6.2f} %  "
                f"RSS {r['peak_rss_kb'] / 1024:.0f} MiB  other CPU {r['foreign_cpu_pct']} %")
            for b, q in configs:
                extra = {"CRYOSTORM_TRACING__EXPORT_CONFIG__BATCH_SIZE": str(b),
                         "CRYOSTORM_TRACING__EXPORT_CONFIG__MAX_QUEUE_SIZE": str(q)}
                r = one_burst(burst_variants(sink, protocol, extra)[1], sink)
                runs[f"{b}/{q}"].append(r)
                log(f"  {protocol:<13} run {i + 1} {b:>4}/{q:<6} {r['rate']:>9,.0f} spans/s  "
                    f"{r['delivered_pct']:6.2f} %  RSS {r['peak_rss_kb'] / 1024:.0f} MiB  "
                    f"dropped {r['reported_dropped']}  other CPU {r['foreign_cpu_pct']} %")
        out[protocol] = {"runs": runs, "median": {k: summarize_bursts(rs) for k, rs in runs.items()}}
    record["explore"] = ("as burst, cryostorm with CRYOSTORM_TRACING__EXPORT_CONFIG__BATCH_SIZE in "
                         f"{EXPLORE_BATCH_SIZES} x CRYOSTORM_TRACING__EXPORT_CONFIG__MAX_QUEUE_SIZE in "
                         f"{EXPLORE_QUEUE_SIZES}")
    return out


def ensure_collector_down() -> None:
    """COLLECTOR_DOWN must refuse connections, or the 'down' variants would measure something else."""
    port = int(COLLECTOR_DOWN.rsplit(":", 1)[1])
    with socket.socket() as sock:
        sock.settimeout(2)
        try:
            sock.connect((LOCAL, port))
        except ConnectionRefusedError:
            return
        except OSError as exc:
            raise SystemExit(f"cannot check {COLLECTOR_DOWN} ({exc}); the 'collector down' variants need a "
                             "refused connection there") from exc
    raise SystemExit(f"something listens on {COLLECTOR_DOWN}; the 'collector down' variants need nothing there")


def one_steady_run(v: Variant, seconds: int, rate: int = STEADY_RATE) -> dict[str, Any]:
    """bench/apps/steady.py under a launcher; RSS sampled every second from /proc/<pid>/status.

    Both launchers exec the program, so the Popen pid is the program itself once it runs.
    """
    MONITOR.gate(f"faults memory {v.key}")
    argv = v.argv("python", str(APPS / "steady.py"), str(rate), str(seconds))
    stderr_path = WORK / f"steady-{v.key}.stderr"
    samples: list[tuple[float, int]] = []
    hwm: int | None = None
    cpu: dict[str, Any] = {}
    with stderr_path.open("w") as err:
        start = time.monotonic()
        proc = subprocess.Popen(argv, env=v.full_env(), stdout=subprocess.PIPE, stderr=err, text=True)
        with MONITOR.watch(cpu, pids=(proc.pid,)):
            deadline, tick = start + seconds + 120, 1
            while True:
                try:
                    proc.wait(max(0.0, start + tick - time.monotonic()))
                    break
                except subprocess.TimeoutExpired:
                    pass
                with contextlib.suppress(OSError):
                    status = Path(f"/proc/{proc.pid}/status").read_text()
                    rss = vm_status_kb(status)
                    if rss is not None:
                        samples.append((round(time.monotonic() - start, 2), rss))
                    hwm = vm_status_kb(status, "VmHWM") or hwm
                tick += 1
                if time.monotonic() > deadline:
                    proc.kill()
                    proc.wait()
                    break
        ended = time.time()
        stdout = proc.stdout.read() if proc.stdout else ""
        if proc.stdout:
            proc.stdout.close()
    stderr = stderr_path.read_text()
    if proc.returncode != 0 or not stdout.strip():
        raise RuntimeError(f"{v.label} steady.py failed ({proc.returncode}): {shlex.join(argv)}\n{stderr[-2000:]}")
    stats = json.loads(stdout.strip().splitlines()[-1])
    return {
        **rss_growth(samples), "peak_hwm_kb": hwm, "samples": samples, "spans": stats["spans"],
        "rate": stats["rate"], "max_lag_ms": stats["max_lag_ms"],
        "exit_after_last_statement_s": round(ended - stats["end_unix"], 2), "exit_code": proc.returncode,
        "loss": parse_loss_report(stderr), "stderr_bytes": len(stderr), "stderr_lines": stderr.count("\n"),
        "stderr_tail": stderr[-1500:],
        "foreign_cpu_pct": cpu.get("foreign_cpu_pct"),
    }


def measure_faults(sink: Sink, profile: Profile, record: dict[str, Any]) -> dict[str, Any]:
    """The program is never hurt: FastAPI latency with the collector up/down/slow, memory with it down."""
    log(f"\n== faults: FastAPI GET /hello with the collector up / down ({COLLECTOR_DOWN}) / slow "
        f"({SLOW_DELAY_S:g} s), wrk -t2 -c32 -d{profile.wrk_duration_s}s, {profile.faults_rounds} round(s) ==")
    ensure_collector_down()
    slow = Sink(PROJECT_VENV / "bin" / "python", WORK / "sink-slow.stderr", delay_s=SLOW_DELAY_S)
    MONITOR.helper_pids.append(slow.proc.pid)
    try:
        variants = [
            (dataclasses.replace(cryostorm(sink.grpc), key="cryostorm-up"), sink),
            (dataclasses.replace(cryostorm(COLLECTOR_DOWN), key="cryostorm-down"), sink),
            (dataclasses.replace(cryostorm(slow.grpc), key="cryostorm-slow"), slow),
            (dataclasses.replace(anchor(sink.grpc), key="anchor-up"), sink),
            (dataclasses.replace(anchor(COLLECTOR_DOWN), key="anchor-down"), sink),
        ]
        runs: dict[str, list[dict[str, Any]]] = {v.key: [] for v, _ in variants}
        for round_no in range(profile.faults_rounds):
            for v, counted_by in (variants if round_no % 2 == 0 else variants[::-1]):
                r = one_throughput_run(v, counted_by, profile)
                runs[v.key].append(r)
                log(f"  round {round_no + 1} {v.key:<14} {r['rps']:>7,.0f} req/s  p99 {fmt(r['p99_ms'])} ms  "
                    f"spans at sink {r['spans_at_sink']:,}  exit {r['exit_after_sigterm_s']} s after SIGTERM  "
                    f"errors {r['errors'] + r['non_2xx']}  other CPU {r['foreign_cpu_pct']} %")
    finally:
        slow.close()
        MONITOR.helper_pids.remove(slow.proc.pid)
    out: dict[str, Any] = {"runs": runs, "median": {}, "slow_delay_s": SLOW_DELAY_S, "collector_down": COLLECTOR_DOWN}
    for key, rs in runs.items():
        out["median"][key] = {m: median([r[m] for r in rs]) for m in
                              ("rps", "p99_ms", "spans_at_sink", "exit_after_sigterm_s", "server_peak_rss_kb")}
        out["median"][key]["foreign_cpu_pct_max"] = max((r["foreign_cpu_pct"] or 0.0) for r in rs)
    out["p99_ratio"] = fault_ratios(out["median"], "p99_ms")
    out["rps_ratio"] = fault_ratios(out["median"], "rps")
    log("  p99 / collector up: " + ", ".join(f"{k} {fmt(v)}" for k, v in out["p99_ratio"].items()))

    log(f"\n== faults: memory, {STEADY_RATE:,} spans/s for {profile.steady_s} s with the collector down ==")
    memory: dict[str, Any] = {}
    steady = [dataclasses.replace(cryostorm(COLLECTOR_DOWN), key="cryostorm-down"),
              dataclasses.replace(anchor(COLLECTOR_DOWN), key="anchor-down")]
    for v in steady:
        r = one_steady_run(v, profile.steady_s)
        memory[v.key] = r
        log(f"  {v.key:<14} RSS at {RSS_BASE_AT_S:g} s {fmt(mb(r['base_kb']), 1)} MB, "
            f"max {fmt(mb(r['max_kb']), 1)} MB, growth {fmt(r['growth_mb'], 1)} MB; {r['rate']:,.0f} spans/s "
            f"(max lag {r['max_lag_ms']:.0f} ms); "
            f"exit {r['exit_after_last_statement_s']} s after its last statement; "
            f"cryostorm report: {[line for line in r['loss']['lines'] if is_exit_report(line)] or 'none'}")
    out["memory"] = {"rate": STEADY_RATE, "seconds": profile.steady_s, "base_at_s": RSS_BASE_AT_S,
                     "bound_mb": RSS_BOUND_MB, "runs": memory}

    record["faults"] = [v.shown("uvicorn", "--app-dir", "bench/apps", "--host", LOCAL, "--port", "<free port>",
                                "--no-access-log", "--log-level", "warning", "hello_app:app")
                        .replace(f"{LOCAL}:{slow.grpc_port}", f"{LOCAL}:<slow sink grpc>") for v, _ in variants]
    record["faults_slow_sink"] = (f".venv/bin/python bench/sink.py --dd-port 0 --delay {SLOW_DELAY_S:g}"
                                  "  # <slow sink grpc>")
    record["faults_load"] = record.get("throughput_load") or (
        f"wrk -t2 -c32 -d{profile.wrk_warmup_s}s <url> (warmup, discarded); "
        f"wrk -t2 -c32 -d{profile.wrk_duration_s}s --latency http://127.0.0.1:<port>/hello")
    record["faults_memory"] = [v.shown("python", "bench/apps/steady.py", str(STEADY_RATE), str(profile.steady_s))
                               for v in steady]
    return out


def mb(kib: float | None) -> float | None:
    """KiB (as /proc reports them) in MB (10**6 bytes)."""
    return None if kib is None else kib * 1024 / 1e6


# --------------------------------------------------------------------------- goals & report


def evaluate(results: dict[str, Any]) -> list[Goal]:
    goals: list[Goal] = []
    s = results.get("startup")
    if s:
        goals.append(Goal("startup overhead, cryostorm / anchor", s["overhead_ratio"], "<=", 0.15,
                          f"{fmt(s['overhead_ms']['cryostorm'], 1)} ms vs {fmt(s['overhead_ms']['anchor'], 1)} ms "
                          "(plan cache warm, as after `RUN cryostorm-run check-config`)"))
        if "cold_overhead_ratio" in s:
            goals.append(Goal("startup overhead without the plan cache, cryostorm / anchor",
                              s["cold_overhead_ratio"], "<=", 0.5,
                              f"{fmt(s['cold_overhead_ms'], 1)} ms vs {fmt(s['overhead_ms']['anchor'], 1)} ms"))
            goals.append(Goal("launcher alone, ms over bare python", s["launcher_over_bare_ms"], "<=", 40,
                              "cryostorm-run --quiet -- /bin/true, minus /bin/true and python -c pass"))
            goals.append(Goal("hook alone in a child, ms over bare python", s["hook_over_bare_ms"], "<=", 60,
                              "python -c pass with the environment cryostorm-run hands its program"))
        goals.append(Goal("extra peak RSS at startup, cryostorm / anchor", s["extra_rss_ratio"], "<=", 0.3,
                          f"{s['extra_rss_kb']['cryostorm'] / 1024:.1f} MiB vs "
                          f"{s['extra_rss_kb']['anchor'] / 1024:.1f} MiB"))
    t = results.get("throughput")
    if t:
        m = t["median"]
        goals.append(Goal("FastAPI /hello req/s, cryostorm / anchor", t["rps_ratio"], ">=", 1.5,
                          f"{fmt(m['cryostorm']['rps'], 0)} vs {fmt(m['anchor']['rps'], 0)} req/s"))
        goals.append(Goal("FastAPI /hello p99 latency, cryostorm / anchor", t["p99_ratio"], "<=", 1.0,
                          f"{fmt(m['cryostorm']['p99_ms'])} vs {fmt(m['anchor']['p99_ms'])} ms"))
        if "rps_ratio_reference" in t:
            goals.append(Goal("FastAPI /hello req/s, cryostorm / the reference cryostorm (no regression)",
                              t["rps_ratio_reference"], ">=", 0.95,
                              f"{fmt(m['cryostorm']['rps'], 0)} vs {fmt(m['reference']['rps'], 0)} req/s; reference: "
                              f"{t['reference_venv']}"))
        goals.append(Goal("FastAPI /hello req/s, cryostorm / bare python", t["cryostorm_vs_bare"], ">=", 0.65,
                          f"{fmt(m['cryostorm']['rps'], 0)} vs {fmt(m['bare']['rps'], 0)} req/s"))
        goals.append(Goal("FastAPI /hello p99 latency, cryostorm / bare python",
                          ratio(m["cryostorm"]["p99_ms"], m["bare"]["p99_ms"]), "<=", 1.5,
                          f"{fmt(m['cryostorm']['p99_ms'])} vs {fmt(m['bare']['p99_ms'])} ms"))
        if "ddtrace" in m:  # measured since ddtrace-run joined the throughput measure
            goals.append(Goal("FastAPI /hello req/s, cryostorm / ddtrace-run", t.get("rps_ratio_ddtrace"), ">=", 1.0,
                              f"{fmt(m['cryostorm']['rps'], 0)} vs {fmt(m['ddtrace']['rps'], 0)} req/s; ddtrace "
                              f"traces/req at the fake agent {fmt(m['ddtrace'].get('dd_traces_per_request'))}"))
    b = results.get("burst")
    if b:
        for protocol, label in (("grpc", "gRPC"), ("http/protobuf", "HTTP")):
            m = b[protocol]["median"]
            goals.append(Goal(f"burst {label}: % delivered by cryostorm (worst run)",
                              m["cryostorm"]["delivered_pct_min"], ">=", 100.0,
                              f"median {fmt(m['cryostorm']['delivered_pct'])} %, anchor median "
                              f"{fmt(m['anchor']['delivered_pct'])} %"))
            goals.append(Goal(f"burst {label}: creation rate, cryostorm / anchor", b[protocol]["rate_ratio"], ">=", 1.0,
                              f"{fmt(m['cryostorm']['rate'], 0)} vs {fmt(m['anchor']['rate'], 0)} spans/s"))
            if "rate_ratio_reference" in b[protocol]:
                goals.append(Goal(f"burst {label}: creation rate, cryostorm / the reference cryostorm (no regression)",
                                  b[protocol]["rate_ratio_reference"], ">=", 0.95,
                                  f"{fmt(m['cryostorm']['rate'], 0)} vs {fmt(m['reference']['rate'], 0)} spans/s, "
                                  f"reference delivered {fmt(m['reference']['delivered_pct'])} %; reference: "
                                  f"{b[protocol]['reference_venv']}"))
    f = results.get("forced_drops")
    if f:
        detail = "; ".join(f"lost {r['lost']:,} / reported {r['reported_dropped']}" for r in f["runs"])
        goals.append(Goal("forced drops reported on stderr at exit (not silent)",
                          1.0 if f["any_lost"] and f["all_reported"] else 0.0, ">=", 1.0, detail))
        goals.append(Goal("forced drops: reported number == spans missing at the sink",
                          1.0 if f["any_lost"] and f["exact"] else 0.0, ">=", 1.0, detail))
    x = results.get("faults")
    if x:
        m, r = x["median"], x["p99_ratio"]
        for state, label in (("down", "collector down"), ("slow", f"collector slow ({x['slow_delay_s']:g} s)")):
            context = f"; anchor down / up {fmt(r.get('anchor-down'))}" if state == "down" else ""
            goals.append(Goal(f"{label}: FastAPI p99, cryostorm {state} / up", r.get(f"cryostorm-{state}"), "<=",
                              FAULT_P99_TARGET,
                              f"{fmt(m[f'cryostorm-{state}']['p99_ms'])} vs {fmt(m['cryostorm-up']['p99_ms'])} ms"
                              + context))
        mem = x["memory"]
        ours, theirs = mem["runs"]["cryostorm-down"], mem["runs"].get("anchor-down") or {}
        goals.append(Goal(f"collector down, {mem['seconds']} s at {mem['rate']:,} spans/s: cryostorm RSS growth (MB)",
                          ours["growth_mb"], "<", mem["bound_mb"],
                          f"{fmt(mb(ours['base_kb']), 1)} -> max {fmt(mb(ours['max_kb']), 1)} MB; anchor growth "
                          f"{fmt(theirs.get('growth_mb'), 1)} MB"))
    return goals


def machine_info() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {"hostname": socket.gethostname(), "nproc": os.cpu_count(), "cpu_model": cpu,
            "memory_mib": mem_kb // 1024 if mem_kb else None, "kernel": platform.release(),
            "machine": platform.machine()}


def environment_info() -> dict[str, Any]:
    def freeze(python: Path) -> list[str]:
        out = run([str(python), "-m", "pip", "freeze"]).stdout.splitlines()
        return [line for line in out if FREEZE_PATTERN.search(line)]

    def first_line(cmd: list[str]) -> str:
        r = run(cmd, check=False)
        return (r.stdout or r.stderr).strip().splitlines()[0] if (r.stdout or r.stderr).strip() else "?"

    anchor_py, project_py = ANCHOR_VENV / "bin" / "python", PROJECT_VENV / "bin" / "python"
    ddtrace_py = DDTRACE_VENV / "bin" / "python"
    return {
        "python": {"anchor": first_line([str(anchor_py), "-VV"]), "cryostorm": first_line([str(project_py), "-VV"]),
                   "ddtrace": first_line([str(ddtrace_py), "-VV"])},
        "packages": {"anchor": freeze(anchor_py), "cryostorm": freeze(project_py), "ddtrace": freeze(ddtrace_py)},
        "cryostorm_version": first_line([str(PROJECT_VENV / "bin" / "cryostorm-run"), "--version"]),
        "tools": {"hyperfine": first_line(["hyperfine", "--version"]), "wrk": first_line(["wrk", "-v"])},
        "commit": commit_measured(),
    }


def commit_measured() -> str:
    """The commit of the code measured, and what differed from it (results are committed with it)."""
    head = run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], check=False).stdout.strip() or "unknown"
    status = ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"]
    changed = run(status, check=False).stdout.split("\n")
    files = sorted(line[3:] for line in changed if line.strip())
    return f"{head} (changed since: {', '.join(files)})" if files else f"{head} (clean)"


def render_faults(x: dict[str, Any] | None, markdown: bool) -> list[tuple[str, str]]:
    """The faults measure as (title, table) sections."""
    out: list[tuple[str, str]] = []
    if not x:
        return out
    rows = []
    for key, m in x["median"].items():
        rs = x["runs"][key]
        launcher, _, state = key.rpartition("-")
        lines = sorted({line for r in rs for line in r.get("loss", {}).get("lines", []) if is_exit_report(line)})
        rows.append([launcher, state, fmt(m["rps"], 0), " / ".join(fmt(r["rps"], 0) for r in rs),
                     fmt(m["p99_ms"]), " / ".join(fmt(r["p99_ms"]) for r in rs),
                     fmt(x["p99_ratio"].get(key)) if state != "up" else "-",
                     " / ".join(f"{r['spans_at_sink']:,}" for r in rs),
                     " / ".join(fmt(r.get("exit_after_sigterm_s"), 1) for r in rs),
                     sum(r["errors"] + r["non_2xx"] for r in rs),
                     " / ".join(str(r.get("foreign_cpu_pct")) for r in rs),
                     " / ".join(lines) if launcher == "cryostorm" else "-"])
    body = table(["launcher", "collector", "req/s (median)", "req/s per round", "p99 ms (median)",
                  "p99 ms per round", "p99 / up", "spans at sink", "exit after SIGTERM s", "errors",
                  "other CPU % per round", "cryostorm stderr at exit"], rows, markdown)
    body += (f"\n\ncollector down = `{x['collector_down']}` (connection refused); slow = `bench/sink.py --delay "
             f"{x['slow_delay_s']:g}` (every export answered after {x['slow_delay_s']:g} s); req/s / up: "
             + ", ".join(f"{k} {fmt(v)}" for k, v in x["rps_ratio"].items()))
    out.append(("Faults: FastAPI `GET /hello` with the collector up, down and slow (OTLP gRPC)", body))
    mem = x["memory"]
    rows = []
    for key, r in mem["runs"].items():
        loss = r["loss"]
        if key.startswith("cryostorm"):
            report = " / ".join(line for line in loss["lines"] if is_exit_report(line)) or "(nothing)"
        else:
            report = f"{r['stderr_lines']:,} lines ({r['stderr_bytes']:,} bytes), tail in the JSON"
        rows.append([key, fmt(mb(r["base_kb"]), 1), fmt(mb(r["max_kb"]), 1), fmt(r["growth_mb"], 1),
                     fmt(mb(r["peak_hwm_kb"]), 1), fmt(r["rate"], 0), fmt(r["max_lag_ms"], 0),
                     fmt(r["exit_after_last_statement_s"], 1), r["foreign_cpu_pct"], report])
    body = table(["variant", f"RSS at {mem['base_at_s']:g} s MB", "RSS max MB", "growth MB", "VmHWM MB",
                  "spans/s achieved", "max lag ms", "exit after last statement s", "other CPU %",
                  "stderr at exit"], rows, markdown)
    body += (f"\n\nMB = 10^6 bytes; RSS (`VmRSS`) sampled every second; growth = max - RSS at "
             f"{mem['base_at_s']:g} s; bound: growth < {mem['bound_mb']:g} MB (cryostorm's default queue holds "
             "16,384 spans)")
    out.append((f"Faults: memory, {mem['rate']:,} spans/s for {mem['seconds']} s with the collector down", body))
    return out


def render_throughput(t: dict[str, Any], markdown: bool) -> tuple[str, str]:
    """The throughput measure as (title, table); results from before ddtrace-run was measured have no ddtrace."""
    rows = []
    for key, m in t["median"].items():
        rs = t["runs"][key]
        per_request = m.get("dd_traces_per_request") if key == "ddtrace" else m["spans_per_request"]
        rows.append([key, fmt(m["rps"], 0), " / ".join(fmt(r["rps"], 0) for r in rs), fmt(m["p99_ms"]),
                     " / ".join(fmt(r["p99_ms"]) for r in rs), fmt(per_request),
                     fmt((m["server_peak_rss_kb"] or 0) / 1024, 0), sum(r["errors"] + r["non_2xx"] for r in rs),
                     " / ".join(str(r.get("foreign_cpu_pct")) for r in rs)])
    has_dd = "ddtrace" in t["median"]
    per_request_header = "spans/req at sink" + (" (ddtrace: traces/req at the fake agent)" if has_dd else "")
    body = table(["variant", "req/s (median)", "req/s per round", "p99 ms (median)", "p99 ms per round",
                  per_request_header, "server peak RSS MiB", "errors", "other CPU % per round"], rows, markdown)
    dd_vs_bare = f", ddtrace {fmt(t.get('ddtrace_vs_bare'))}x" if has_dd else ""
    dd_ratio = f"; cryostorm / ddtrace-run: req/s {fmt(t.get('rps_ratio_ddtrace'))}" if has_dd else ""
    body += (f"\n\nreq/s vs bare: anchor {fmt(t['anchor_vs_bare'])}x, cryostorm {fmt(t['cryostorm_vs_bare'])}x"
             f"{dd_vs_bare}; cryostorm / anchor: req/s {fmt(t['rps_ratio'])}, p99 {fmt(t['p99_ratio'])}{dd_ratio}")
    if has_dd:
        body += ("\n\nddtrace-run (its defaults) sends to a fake Datadog agent in the sink, which counts the "
                 "traces each payload announces (`X-Datadog-Trace-Count`), not spans")
    title = "uvicorn 1 worker, OTLP gRPC to the sink" + ("; ddtrace-run to a fake Datadog agent" if has_dd else "")
    return f"Throughput (FastAPI `GET /hello`, {title})", body


def render(results: dict[str, Any], goals: list[Goal], markdown: bool) -> str:  # noqa: PLR0912
    """All measures as tables; the goals come first in Markdown (the verdict), last on the console."""
    parts: list[str] = []

    def section(title: str, body: str) -> None:
        parts.append(f"\n### {title}\n\n{body}" if markdown else f"\n{title}\n{body}")

    def goals_section() -> None:
        rows = [[g.name, fmt(g.value, 3), f"{g.op} {g.target:g}", "PASS" if g.passed else "FAIL", g.detail]
                for g in goals]
        against = "; faults: cryostorm with the collector down or slow / up" if results.get("faults") else ""
        if "ddtrace" in (results.get("throughput") or {}).get("median", {}):
            against += "; ddtrace-run where named"
        section(f"Goals (ratios: cryostorm-run / opentelemetry-instrument, same run{against})",
                table(["goal", "value", "target", "result", "detail"], rows, markdown))

    if goals and markdown:
        goals_section()

    s = results.get("startup")
    if s:
        h, rss = s["hyperfine"], s["rss_kb"]
        rows = [[k, fmt(h[k]["median"], 1), fmt(h[k]["stddev"], 1), h[k]["runs"],
                 fmt(rss[k]["median"] / 1024, 1) if k in rss else "-"]
                for k in ("bare-anchor", "anchor", "bare", "cryostorm", "cryostorm-no-cache", "launcher-alone",
                          "hook-alone", "true") if k in h]
        body = table(["variant", "median ms", "stddev ms", "runs", "peak RSS MiB"], rows, markdown)
        body += (f"\n\noverhead: anchor {fmt(s['overhead_ms']['anchor'], 1)} ms, cryostorm "
                 f"{fmt(s['overhead_ms']['cryostorm'], 1)} ms -> ratio {fmt(s['overhead_ratio'])}; extra peak RSS: "
                 f"anchor {s['extra_rss_kb']['anchor'] / 1024:.1f} MiB, cryostorm "
                 f"{s['extra_rss_kb']['cryostorm'] / 1024:.1f} MiB -> ratio {fmt(s['extra_rss_ratio'])}")
        if "launcher_over_bare_ms" in s:
            body += (f"\n\nparts (issue 17): launcher alone {fmt(s['launcher_over_bare_ms'], 1)} ms over bare python; "
                     f"hook alone in a child {fmt(s['hook_over_bare_ms'], 1)} ms over bare python; without the plan "
                     f"cache (a first start) {fmt(s['cold_overhead_ms'], 1)} ms overhead. `cryostorm` runs with the "
                     "plan cache warm (hyperfine's warm-up runs warm it, as `RUN cryostorm-run check-config` does in "
                     "an image)")
        if "hyperfine_cpu" in s:
            body += (f"\n\nother programs' share of the CPUs: {s['hyperfine_cpu']['foreign_cpu_pct']} % during "
                     f"hyperfine, {s['rss_cpu']['foreign_cpu_pct']} % during the RSS runs")
        section("Startup (`python -c pass`, OTLP gRPC configured)", body)
    t = results.get("throughput")
    if t:
        section(*render_throughput(t, markdown))
    b = results.get("burst")
    if b:
        rows = []
        for protocol in ("grpc", "http/protobuf"):
            for key in b[protocol]["median"]:  # anchor, cryostorm (and reference, when measured)
                m = b[protocol]["median"][key]
                rs = b[protocol]["runs"][key]
                dropped = [d for d in m["reported_dropped"] if d is not None] if key != "anchor" else "-"
                rows.append([protocol, key, fmt(m["rate"], 0), " / ".join(fmt(r["rate"], 0) for r in rs),
                             fmt(m["delivered_pct"]), " / ".join(fmt(r["delivered_pct"]) for r in rs),
                             fmt(m["peak_rss_kb"] / 1024, 0), dropped or "none", m["foreign_cpu_pct_max"]])
        body = table(["protocol", "launcher", "spans/s (median)", "spans/s per run", "delivered % (median)",
                      "delivered % per run", "peak RSS MiB", "reported dropped", "other CPU % (max)"], rows, markdown)
        section(f"Burst ({BURST_SPANS:,} spans, default batch settings)", body)
    f = results.get("forced_drops")
    if f:
        rows = [[i + 1, f"{r['delivered']:,}", f"{r['lost']:,}", r["reported_dropped"],
                 " / ".join(r["stderr_lines"]) or "(nothing)"] for i, r in enumerate(f["runs"])]
        section("Forced drops (cryostorm, max_queue_size=2048, max_block_millis=0, gRPC)",
                table(["run", "delivered", "lost", "reported dropped", "cryostorm stderr"], rows, markdown))
    e = results.get("explore")
    if e:
        rows = []
        for protocol, data in e.items():
            for key, m in data["median"].items():
                dropped = [d for d in m["reported_dropped"] if d is not None]
                rows.append([protocol, key, fmt(m["rate"], 0), fmt(m["delivered_pct"]), fmt(m["delivered_pct_min"]),
                             fmt(m["peak_rss_kb"] / 1024, 0), dropped or "none", m["foreign_cpu_pct_max"]])
        section("Burst exploration (cryostorm batch_size/max_queue_size; anchor = opentelemetry-instrument defaults)",
                table(["protocol", "config", "spans/s (median)", "delivered % (median)", "delivered % (worst)",
                       "peak RSS MiB", "reported dropped", "other CPU % (max)"], rows, markdown))
    for title, body in render_faults(results.get("faults"), markdown):
        section(title, body)
    if goals and not markdown:
        goals_section()
    return "\n".join(parts)


def loadavg_text(loads: dict[str, Any]) -> str:
    def one(triple: Sequence[float]) -> str:
        return "/".join(f"{x:.2f}" for x in triple)

    parts = []
    for name, value in loads.items():
        if isinstance(value, dict):
            parts.append(f"{name} {one(value['before'])} -> {one(value['after'])}")
        else:
            parts.append(f"{name} {one(value)}")
    return "; ".join(parts) or "n/a"


def foreign_values(node: Any) -> list[float]:
    """Every foreign_cpu_pct recorded anywhere in the results (one per measurement)."""
    if isinstance(node, dict):
        own = [float(node["foreign_cpu_pct"])] if node.get("foreign_cpu_pct") is not None else []
        return own + [v for key, child in node.items() if key != "quiet_gates" for v in foreign_values(child)]
    if isinstance(node, list):
        return [v for child in node for v in foreign_values(child)]
    return []


def during_text(results: dict[str, Any]) -> str:
    values = foreign_values({k: v for k, v in results.items() if k != "quiet_gates"})
    if not values:
        return "other programs' CPU during the measurements: not recorded"
    busy = [v for v in values if v > MONITOR.threshold_pct]
    return (f"other programs' CPU *during* the {len(values)} measurements: median {statistics.median(values):.1f} %, "
            f"max {max(values):.1f} %; {len(busy)} of them above {MONITOR.threshold_pct:g} % (see the per-run "
            "columns)")


def gates_text(gates: list[dict[str, Any]]) -> str:
    if not gates:
        return "no quiet gate recorded"
    busy = [g for g in gates if g["foreign_cpu_pct"] > MONITOR.threshold_pct]
    waited = sum(g["waited_s"] for g in gates)
    return (f"other programs' CPU before each of {len(gates)} measurements: median "
            f"{statistics.median(g['foreign_cpu_pct'] for g in gates):.1f} %, max "
            f"{max(g['foreign_cpu_pct'] for g in gates):.1f} %; waited {waited:.0f} s in total for the machine to "
            f"calm down; {len(busy)} measurement(s) started with other programs above {MONITOR.threshold_pct:g} %")


def scrub(value: Any, ports: dict[str, int]) -> Any:
    """Commands as anyone would type them: paths relative to the repository, the sink's ports named."""
    if isinstance(value, str):
        value = value.replace(f"{ROOT}/", "")
        for name, port in ports.items():
            value = value.replace(f"{LOCAL}:{port}", f"{LOCAL}:<sink {name}>")
        return value
    if isinstance(value, list):
        return [scrub(v, ports) for v in value]
    if isinstance(value, dict):
        return {k: scrub(v, ports) for k, v in value.items()}
    return value


def free_stem(directory: Path, stem: str) -> str:
    """`stem`, or `stem-2`, `stem-3`, ...: a second run on the same day and host never overwrites the first's
    results (which may be committed with the commit they measured)."""
    taken = {path.stem for path in directory.glob(f"{glob.escape(stem)}*")}
    n = 1
    while (candidate := stem if n == 1 else f"{stem}-{n}") in taken:
        n += 1
    return candidate


def write_results(results: dict[str, Any], goals: list[Goal], suffix: str) -> tuple[Path, Path]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    results = {**results, "commands": scrub(results["commands"], results.get("sink_ports", {}))}
    host = re.sub(r"[^A-Za-z0-9_.-]+", "-", results["machine"]["hostname"] or "") or "machine"
    stem = free_stem(RESULTS, f"{results['date'][:10]}-{host}{suffix}")
    json_path, md_path = RESULTS / f"{stem}.json", RESULTS / f"{stem}.md"
    json_path.write_text(json.dumps({**results, "goals": [g.as_dict() for g in goals]}, indent=2) + "\n")
    m, env = results["machine"], results["environment"]
    dd = "dd" in results.get("sink_ports", {})
    lines = [
        f"# cryostorm-run vs opentelemetry-instrument — {results['date']}",
        "",
        f"Mode: **{results['profile']['name']}** (`{results['invocation']}`), run time "
        f"{results['elapsed_s'] / 60:.1f} min. Raw numbers: [`{json_path.name}`]({json_path.name}).",
        "",
        "## Machine and versions",
        "",
        f"- machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['memory_mib']} MiB RAM, Linux {m['kernel']} "
        f"{m['machine']}, hostname `{m['hostname']}`",
        f"- Python: anchor venv `{env['python']['anchor']}`; project venv `{env['python']['cryostorm']}`",
        f"- {env['cryostorm_version']}; {env['tools']['hyperfine']}; {env['tools']['wrk']}",
        *([f"- measured at commit {env['commit']}"] if env.get("commit") else []),
        "- load average (1/5/15 min) at start and around each section (other work on the machine shows up "
        "here): " + loadavg_text(results.get("loadavg", {})),
        f"- {gates_text(results.get('quiet_gates', []))}",
        f"- {during_text(results)}",
        f"- anchor venv (`bench/.work/anchor-venv`): {', '.join(env['packages']['anchor'])}",
        f"- project venv (`.venv`): {', '.join(env['packages']['cryostorm'])}",
        *([f"- ddtrace venv (`bench/.work/ddtrace-venv`, `{env['python']['ddtrace']}`): "
           f"{', '.join(env['packages']['ddtrace'])}"] if "ddtrace" in env["packages"] else []),
        "",
        "## Results",
        render(results, goals, markdown=True),
        "",
        "## Commands",
        "",
        f"Each variant runs with a clean environment (no `OTEL_*`/`CRYOSTORM_*`{'/`DD_*`' if dd else ''}/"
        "`PYTHONPATH` inherited) plus the variables shown; `<sink grpc>`/`<sink http>` are the local sink's loopback "
        f"ports{', `<sink dd>` its fake Datadog agent' if dd else ''}.",
        "",
        "```",
        *[f"{name}: {cmd}" if isinstance(cmd, str) else f"{name}:\n  " + "\n  ".join(cmd)
          for name, cmd in results["commands"].items()],
        "```",
        "",
    ]
    md_path.write_text("\n".join(lines))
    return md_path, json_path


@contextlib.contextmanager
def started_sink() -> Iterator[Sink]:
    sink = Sink(PROJECT_VENV / "bin" / "python", WORK / "sink.stderr")
    try:
        yield sink
    finally:
        sink.close()


def rerender(json_path: Path) -> int:
    results = json.loads(json_path.read_text())
    results.pop("goals", None)
    if "sink_ports" not in results:  # older files: recover the sink's ports from the recorded commands
        ports: dict[str, int] = {}
        for cmd in json.dumps(results["commands"]).split('"'):
            match = re.search(r"(?:COLLECTOR|ENDPOINT)=http://127\.0\.0\.1:(\d+)", cmd)
            if match:
                ports.setdefault("http" if "http/protobuf" in cmd else "grpc", int(match.group(1)))
        results["sink_ports"] = ports
    stem = json_path.name.removesuffix(".json")
    host = re.sub(r"[^A-Za-z0-9_.-]+", "-", results["machine"]["hostname"] or "") or "machine"
    suffix = stem.removeprefix(f"{results['date'][:10]}-{host}")
    md_path, json_out = write_results(results, evaluate(results), suffix)
    log(f"rewrote {md_path} and {json_out}")
    return 0


def own_measure(distant_collector: bool) -> int:
    """The distant-collector and soak measures: their own modules, their own results files."""
    import distant
    import soak

    return distant.main([]) if distant_collector else soak.main([])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="cryostorm-run vs opentelemetry-instrument, side by side (throughput also vs ddtrace-run)")
    parser.add_argument("--quick", action="store_true", help="short run: fewer runs, shorter wrk")
    parser.add_argument("--explore", action="store_true",
                        help="also explore cryostorm's burst batch settings (batch_size x max_queue_size)")
    parser.add_argument("--faults", action="store_true",
                        help="also the faults measure (collector down/slow: latency and memory, ~8 min)")
    parser.add_argument("--only", default="",
                        help="comma-separated subset of: startup,throughput,burst,explore,faults")
    parser.add_argument("--rounds", type=int, help="throughput rounds (default: 3 full, 1 quick)")
    parser.add_argument("--no-write", action="store_true", help="print only; do not write bench/results/")
    parser.add_argument("--busy-threshold", type=float, default=15.0,
                        help="before each measurement wait while other programs use more than this %% of the CPUs")
    parser.add_argument("--render", metavar="JSON", type=Path,
                        help="rewrite the .md (and tidy the .json) of an earlier run from its .json; measures nothing")
    parser.add_argument("--distant", action="store_true",
                        help="only the distant-collector measure (bench/distant.py: sink answering after 50 ms, "
                        "200 ms, 2 s; ~12 min)")
    parser.add_argument("--soak", action="store_true",
                        help="only the soak measure (bench/soak.py: 10 min per launcher, collector flapping)")
    parser.add_argument("--reference", metavar="VENV", type=Path,
                        help="also measure the cryostorm-run installed in VENV (e.g. an earlier commit's) in the "
                        "throughput rounds: no regression is shown against it in the same run")
    parser.add_argument("--max-wait", type=float, default=60.0,
                        help="longest wait (s) for the machine to calm down before each measurement (0: never)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)

    if args.render or args.distant or args.soak:
        return rerender(args.render) if args.render else own_measure(args.distant)
    profile = QUICK if args.quick else FULL
    if args.rounds:
        profile = Profile(**{**profile.__dict__, "rounds": args.rounds})
    sections = [s for s in args.only.split(",") if s] or ["startup", "throughput", "burst"]
    sections += [flag for flag in ("explore", "faults") if getattr(args, flag) and flag not in sections]
    unknown = set(sections) - {"startup", "throughput", "burst", "explore", "faults"}
    if unknown:
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")

    if args.reference:
        if not (args.reference / "bin" / "cryostorm-run").exists():
            parser.error(f"--reference {args.reference}: no bin/cryostorm-run in that venv")
        REFERENCE["venv"] = args.reference.resolve()
    started = time.monotonic()
    MONITOR.threshold_pct, MONITOR.max_wait_s = args.busy_threshold, args.max_wait
    WORK.mkdir(parents=True, exist_ok=True)
    ensure_venvs()
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "invocation": shlex.join(["python", "bench/run.py", *(argv if argv is not None else sys.argv[1:])]),
        "profile": profile.__dict__,
        "sections": sections,
        "machine": machine_info(),
        "environment": environment_info(),
        "commands": {},
        # 1/5/15-min load averages around each section: a busy neighbour shows up here
        "loadavg": {"start": os.getloadavg()},
    }
    log(f"machine: {results['machine']}")
    record: dict[str, Any] = results["commands"]
    steps: dict[str, Callable[[Sink], Any]] = {
        "startup": lambda sink: measure_startup(sink, profile, record),
        "throughput": lambda sink: measure_throughput(sink, profile, record),
        "burst": lambda sink: measure_burst(sink, profile, record),
        "explore": lambda sink: measure_explore(sink, profile, record),
        "faults": lambda sink: measure_faults(sink, profile, record),
    }
    with started_sink() as sink:
        MONITOR.sink_pid = sink.proc.pid
        results["sink_ports"] = {"grpc": sink.grpc_port, "http": sink.http_port, "dd": sink.dd_port}
        log(f"sink: gRPC {sink.grpc}, HTTP {sink.http}, fake Datadog agent {sink.dd}")
        for name in sections:
            before = os.getloadavg()
            results[name] = steps[name](sink)
            if name == "burst":
                results["forced_drops"] = measure_forced_drops(sink, profile, record)
            results["loadavg"][name] = {"before": before, "after": os.getloadavg()}
    results["elapsed_s"] = time.monotonic() - started
    results["quiet_gates"] = MONITOR.gates
    goals = evaluate(results)
    log("\n==================== results ====================")
    log(render(results, goals, markdown=False))
    log(f"\n{gates_text(MONITOR.gates)}\n{during_text(results)}")
    if not args.no_write:
        main_sections = {"startup", "throughput", "burst"}
        suffix = ("-quick" if args.quick else "") + ("" if main_sections <= set(sections) else "-" + "+".join(sections))
        md_path, json_path = write_results(results, goals, suffix)
        log(f"\nwrote {md_path.relative_to(ROOT)} and {json_path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
