"""Promises that a mutation sample found unguarded (issue 21): each test here fails when its promise breaks.

Every test runs the real launcher (and, where it matters, the real hook in a real interpreter and the
real OTLP receiver). The break each one was checked against is named in its docstring.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import CRYOSTORM_RUN, PYTHON, ROOT, child_env, run_launcher, tls_files
from otlp_receiver import ReceivedSpan, Receiver

from cryostorm_run.launch.plan import hook_dir

APPS = ROOT / "tests" / "apps"
HOOK_DIR = str(hook_dir())
REPORT = "cryostorm: service="


def otlp_env(rcv: Receiver, protocol: str = "grpc", **extra: str) -> dict[str, str]:
    port = rcv.grpc_port if protocol == "grpc" else rcv.http_port
    return {"CRYOSTORM_EXPORTER_TYPE": "otlp", "CRYOSTORM_COLLECTOR": f"http://127.0.0.1:{port}",
            "CRYOSTORM_OTLP__PROTOCOL": protocol, "CRYOSTORM_SERVICE__NAME": "promises",
            "CRYOSTORM_SERVICE__ENVIRONMENT": "production", **extra}


def report_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(REPORT)]


def reported_pids(stderr: str) -> list[int]:
    """The pid of each process that printed the hook's start-up line."""
    return [int(word[4:]) for line in report_lines(stderr) for word in line.split() if word.startswith("pid=")]


# -- configuration refused before anything runs ---------------------------------------------------


@pytest.mark.parametrize("given", ["CLIENT_CERTIFICATE_FILE", "CLIENT_KEY_FILE"])
def test_only_one_half_of_the_client_certificate_pair_is_refused(tmp_path: Path, given: str) -> None:
    """Break checked: OtlpConfig._check's pair test removed -> exit 0 and the program ran."""
    pem = tmp_path / "half.pem"
    pem.write_text("not read: the pair check comes first\n")
    marker = tmp_path / "program-ran"
    result = run_launcher(["--", PYTHON, str(APPS / "touch_marker.py"), str(marker)],
                          {f"CRYOSTORM_OTLP__{given}": str(pem)})
    assert result.returncode == 2, result.stderr
    assert not marker.exists(), "the program ran with half a client certificate pair"
    assert f"CRYOSTORM_OTLP__{given}" in result.stderr
    assert "client_certificate_file and client_key_file must be set together" in result.stderr
    assert "Traceback" not in result.stderr


def test_both_halves_of_the_client_certificate_pair_are_accepted(tmp_path: Path) -> None:
    """The control of the test above: the same files, both given, start the program."""
    cert, key = tls_files(tmp_path, ("client-cert", "client-key")).values()  # real PEM: the launcher reads them
    marker = tmp_path / "program-ran"
    result = run_launcher(["--quiet", "--", PYTHON, str(APPS / "touch_marker.py"), str(marker)],
                          {"CRYOSTORM_OTLP__CLIENT_CERTIFICATE_FILE": str(cert),
                           "CRYOSTORM_OTLP__CLIENT_KEY_FILE": str(key)})
    assert result.returncode == 0, result.stderr
    assert marker.exists()


@pytest.mark.parametrize("signal_", ["TRACING", "LOGGING"])
def test_batch_size_above_max_queue_size_is_refused_naming_both(tmp_path: Path, signal_: str) -> None:
    """Break checked: ExportConfig._check's bound removed -> exit 0 and the program ran."""
    marker = tmp_path / "program-ran"
    prefix = f"CRYOSTORM_{signal_}__EXPORT_CONFIG__"
    batch, queue = f"{prefix}BATCH_SIZE", f"{prefix}MAX_QUEUE_SIZE"
    result = run_launcher(["--", PYTHON, str(APPS / "touch_marker.py"), str(marker)], {batch: "1025", queue: "1024"})
    assert result.returncode == 2, result.stderr
    assert not marker.exists()
    assert f"{batch}, {queue}" in result.stderr  # both inputs named, as written
    assert "batch_size (1025) must not exceed max_queue_size (1024)" in result.stderr
    # the bound is inclusive: equal sizes are valid
    equal = run_launcher(["--quiet", "--", PYTHON, str(APPS / "touch_marker.py"), str(marker)],
                         {batch: "1024", queue: "1024"})
    assert equal.returncode == 0, equal.stderr
    assert marker.exists()


# -- Ctrl-C before exec ---------------------------------------------------------------------------


def test_ctrl_c_before_exec_exits_130(tmp_path: Path) -> None:
    """SIGINT while the launcher is still reading its settings: exit 130, one line, the program never runs.

    The launcher is caught in a slow step of its own for real: parsing a large --env-file. The signal
    is sent once the launcher has that file open (seen in /proc/PID/fd), so it lands inside the
    launcher's error boundary, before exec, whatever the machine's load.
    Break checked: EXIT_INTERRUPTED = 1 in cli/_common.py -> exit 1.
    """
    env_file = tmp_path / "large.env"
    with env_file.open("w") as fh:  # ~20 µs a line to parse: several seconds of work
        for i in range(400_000):
            fh.write(f"UNRELATED_{i}=value\n")
    marker = tmp_path / "program-ran"
    proc = subprocess.Popen([CRYOSTORM_RUN, "--env-file", str(env_file), "--", PYTHON, str(APPS / "touch_marker.py"),
                             str(marker)], env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        fds = Path(f"/proc/{proc.pid}/fd")
        deadline = time.monotonic() + 60
        while not _has_open(fds, env_file):
            assert proc.poll() is None, f"the launcher ended before reading the env file: {proc.communicate()}"
            assert time.monotonic() < deadline, "the launcher never opened its --env-file"
            time.sleep(0.005)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert err == "cryostorm-run: interrupted\n"
    assert out == ""
    assert not marker.exists()


def _has_open(fds: Path, target: Path) -> bool:
    try:
        entries = list(fds.iterdir())
    except FileNotFoundError:
        return False
    for fd in entries:
        try:
            if os.readlink(fd) == str(target):
                return True
        except FileNotFoundError:
            continue
    return False


# -- child processes ------------------------------------------------------------------------------

CHILD_REPORT = """
import os, subprocess, sys
probe = ("import os, sys; print('child', os.getpid(), 'cryostorm_run.hook.bootstrap' in sys.modules, "
         "os.environ.get('PYTHONPATH', '<unset>'))")
subprocess.run([sys.executable, "-c", probe], check=True)
print('parent', os.getpid(), 'cryostorm_run.hook.bootstrap' in sys.modules)
"""


@pytest.mark.parametrize("children", ["all", "none"])
def test_child_processes_setting_decides_whether_children_are_instrumented(children: str) -> None:
    """`none`: the program is instrumented, its Python child is not (no hook on its PYTHONPATH, no report).
    Break checked: bootstrap.initialize restoring PYTHONPATH whatever _CRYOSTORM_CHILDREN says -> the
    `none` case saw the hook in the child."""
    result = run_launcher(["--", PYTHON, "-c", CHILD_REPORT], {"CRYOSTORM_CHILD_PROCESSES": children})
    assert result.returncode == 0, result.stderr
    child, parent = (line.split(" ", 3) for line in result.stdout.splitlines())
    assert parent[2] == "True", "the program itself must be instrumented either way"
    pids = sorted(reported_pids(result.stderr))
    if children == "all":
        assert child[2] == "True" and HOOK_DIR in child[3].split(os.pathsep), result.stdout
        assert pids == sorted([int(parent[1]), int(child[1])]), result.stderr
    else:
        assert child[2] == "False", "the child ran the hook despite child_processes=none"
        assert HOOK_DIR not in child[3].split(os.pathsep), result.stdout
        assert pids == [int(parent[1])], result.stderr


FORK_PROGRAM = """
import os
from opentelemetry import trace
tracer = trace.get_tracer("fork-test")
provider = trace.get_tracer_provider()
with tracer.start_as_current_span("before-fork"):
    pass
assert provider.force_flush(20_000), "the parent's first export failed"  # its exporter is built and used now
pid = os.fork()
if pid == 0:
    with tracer.start_as_current_span("in-child"):
        pass
    os._exit(0 if provider.force_flush(20_000) else 3)
_, status = os.waitpid(pid, 0)
with tracer.start_as_current_span("after-fork"):
    pass
print(os.getpid(), pid, os.waitstatus_to_exitcode(status))
"""


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_an_exporter_built_before_fork_is_not_shared_by_the_child(otlp_receiver: Receiver, protocol: str) -> None:
    """The parent exports (its OTLP exporter is built and connected), then forks: the child's span and the
    parent's later one both arrive, each with its own process identity.
    The child must open its own connection: its request comes from another client port than the parent's.
    Break checked: otlp._Lazy._reset_after_fork keeping the parent's exporter -> over HTTP the child's
    request came over the parent's pooled connection (same client port). Over gRPC the break is not
    observable: grpc-core itself reconnects a channel used in a fork child."""
    env = otlp_env(otlp_receiver, protocol, CRYOSTORM_METRICS__ENABLED="false", CRYOSTORM_LOGGING__ENABLED="false",
                   CRYOSTORM_OTLP__TIMEOUT_MILLIS="10000")
    result = run_launcher(["--quiet", "--", PYTHON, "-c", FORK_PROGRAM], env, timeout=90)
    assert result.returncode == 0, result.stderr
    parent_pid, child_pid, child_status = (int(x) for x in result.stdout.split())
    assert child_status == 0, f"the child's export failed: {result.stderr}"
    assert result.stderr == ""
    names = {"before-fork", "in-child", "after-fork"}
    spans: dict[str, ReceivedSpan] = {
        s.name: s for s in otlp_receiver.wait_for_spans(lambda got: names <= {s.name for s in got}, timeout=30)}
    assert sorted(s.name for s in otlp_receiver.spans()) == sorted(names)  # each exactly once
    before, child, after = spans["before-fork"], spans["in-child"], spans["after-fork"]
    assert before.resource["process.pid"] == after.resource["process.pid"] == parent_pid
    assert child.resource["process.pid"] == child_pid != parent_pid
    assert child.resource["service.instance.id"] != before.resource["service.instance.id"]
    assert before.resource["service.instance.id"] == after.resource["service.instance.id"]
    # requests in order: the parent's first export, the child's (the parent waits for it), the parent's last
    first, in_child, last = (r.peer for r in otlp_receiver.requests())
    assert in_child != first, "the child exported over the parent's connection"
    if protocol == "grpc":  # the control: a gRPC channel keeps its connection, so peers do tell connections apart
        assert first == last, "the parent should keep its own gRPC connection across the fork"


FORKING_SCRIPT = """
import os, sys, threading
from opentelemetry import trace
tracer = trace.get_tracer("fork-warning")
with tracer.start_as_current_span("before-fork"):
    pass
provider = trace.get_tracer_provider()  # without cryostorm: the API's proxy, nothing to flush
getattr(provider, "force_flush", lambda timeout: True)(20_000)  # with it: the export threads run now
stop = threading.Event()
for fork_no in (1, 2):
    if sys.argv[1] == "own-thread" or (sys.argv[1] == "later-thread" and fork_no == 2):
        threading.Thread(target=stop.wait, name="the-programs-own").start()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
stop.set()
print("forked")
"""


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
@pytest.mark.parametrize("threads", ["single", "own-thread", "later-thread"])
def test_a_fork_warns_exactly_as_without_cryostorm(otlp_receiver: Receiver, protocol: str, threads: str) -> None:
    """Python 3.12+ warns when a multi-threaded process forks (shown where __main__ forks). A program that
    is single-threaded without cryostorm must not get that warning because of the export threads; one with
    threads of its own gets it as it would without cryostorm. Oracle: the same program run plainly.
    Break checked: forkgate._quiet_fork_warning doing nothing -> on 3.12+ the single-threaded program
    printed the DeprecationWarning under cryostorm only; the filter left in place once the program has its own
    threads -> `later-thread` (a quiet first fork, then one with the program's thread) missed the warning."""
    env = otlp_env(otlp_receiver, protocol, CRYOSTORM_LOGGING__ENABLED="false", CRYOSTORM_OTLP__TIMEOUT_MILLIS="10000")
    plain = subprocess.run([PYTHON, "-c", FORKING_SCRIPT, threads], env=child_env(), capture_output=True, text=True,
                           check=False,
                           timeout=60)
    ours = run_launcher(["--quiet", "--", PYTHON, "-c", FORKING_SCRIPT, threads], env, timeout=90)
    assert plain.returncode == ours.returncode == 0, (plain.stderr, ours.stderr)
    assert plain.stdout == ours.stdout == "forked\n"
    warned = "is multi-threaded, use of fork() may lead to deadlocks"
    assert (warned in plain.stderr) == (threads != "single" and sys.version_info >= (3, 12)), plain.stderr
    # the same lines but for the pid in the warning
    assert re.sub(r"pid=\d+", "pid=N", ours.stderr) == re.sub(r"pid=\d+", "pid=N", plain.stderr)
    assert {s.name for s in otlp_receiver.wait_for_spans(lambda got: len(got) >= 1, timeout=30)} == {"before-fork"}


PASSING_THREAD = """
import _thread, os, threading, time
from cryostorm_run.export import forkgate

def raw_thread(release):  # a thread `threading` does not know of, like a native library's
    started, tid = threading.Lock(), []
    started.acquire()
    def body():
        tid.append(threading.get_native_id())
        started.release()
        release.acquire()
    _thread.start_new_thread(body, ())
    started.acquire()
    return tid[0]

passing = threading.Lock()
passing.acquire()
tid = raw_thread(passing)
pauses = []
def pause(seconds):  # the thread ends while the fork looks away
    pauses.append(seconds)
    passing.release()
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/self/task/{tid}") and time.monotonic() < deadline:
        time.sleep(0.001)
forkgate._pause = pause
print(forkgate.only_telemetry_threads(), len(pauses))
staying = threading.Lock()
staying.acquire()
raw_thread(staying)
forkgate._pause = pauses.append
print(forkgate.only_telemetry_threads(), len(pauses))
print(forkgate.only_telemetry_threads(), len(pauses))
staying.release()
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="the kernel's thread list is Linux's")
def test_a_thread_only_passing_through_does_not_count_as_the_programs() -> None:
    """A thread the kernel lists that is neither Python's nor grpc's is looked at again before a fork decides
    whether to quiet the fork warning: one ending (or starting) meanwhile was, under load on 3.13, taken for
    the program's, and a single-threaded program got the warning. One that stays is the program's, and is
    remembered: the next fork does not wait for it. In a process of its own (the suite's has threads).
    Break checked: no second look -> "False 0" first; no memory -> the last line "False 7"."""
    result = subprocess.run([PYTHON, "-c", PASSING_THREAD], env=child_env(), capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["True 1", "False 4", "False 4"], result.stdout


# -- instrumentations and logging -----------------------------------------------------------------

HTTP_CALLS = """
import sys
import httpx, requests
url = sys.argv[1]
requests.get(url, timeout=10)
httpx.get(url, timeout=10)
print("called")
"""


@pytest.mark.parametrize("disabled", [None, "requests"])
def test_disabled_instrumentations_are_honoured(otlp_receiver: Receiver, disabled: str | None) -> None:
    """With OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=requests, requests makes no span while httpx still does.
    Break checked: instrument.instrument ignoring the variable (disabled = set()) -> a requests span."""
    extra = {"CRYOSTORM_TRACING__PROCESSOR_TYPE": "simple", "CRYOSTORM_METRICS__ENABLED": "false",
             "CRYOSTORM_LOGGING__ENABLED": "false"}
    if disabled:
        extra["OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"] = disabled
    url = f"http://127.0.0.1:{otlp_receiver.http_port}/not-otlp"  # any answer will do
    result = run_launcher(["--quiet", "--", PYTHON, "-c", HTTP_CALLS, url], otlp_env(otlp_receiver, **extra))
    assert (result.returncode, result.stdout) == (0, "called\n"), result.stderr
    otlp_receiver.wait_for_spans(lambda got: any(s.scope.endswith(".httpx") for s in got))
    if not disabled:  # the control: both instrumentations make their CLIENT span
        otlp_receiver.wait_for_spans(lambda got: any(s.scope.endswith(".requests") for s in got))
    scopes = sorted(s.scope for s in otlp_receiver.spans())
    expected = ["opentelemetry.instrumentation.httpx"]
    if not disabled:
        expected.insert(1, "opentelemetry.instrumentation.requests")
    assert scopes == expected
    assert all(s.kind == "CLIENT" for s in otlp_receiver.spans())


LOG_FORMAT_PROGRAM = """
import logging
from opentelemetry import trace
logging.basicConfig(format="[%(otelTraceID)s %(otelSpanID)s] %(message)s")
log = logging.getLogger("app")
log.warning("outside")
with trace.get_tracer("fmt").start_as_current_span("logged") as span:
    log.warning("inside")
    ctx = span.get_span_context()
print(format(ctx.trace_id, "032x"), format(ctx.span_id, "016x"))
"""


EXTRA_PROGRAM = """
import logging
from opentelemetry import trace
logging.basicConfig(format="%(trace_id)s|%(span_id)s|%(otelTraceID)s|%(user)s|%(message)s")
log = logging.getLogger("app")
log.warning("theirs", extra={"trace_id": "req-1234", "otelTraceID": "t-9", "user": "bob"})
with trace.get_tracer("fmt").start_as_current_span("logged") as span:
    log.warning("ours", extra={"user": "al"})
    log.warning("theirs inside", extra={"span_id": "s-1", "user": "cy"})
    ctx = span.get_span_context()
print(format(ctx.trace_id, "032x"), format(ctx.span_id, "016x"))
"""


def test_a_programs_own_trace_id_in_extra_is_kept_not_a_crash() -> None:
    """`extra={"trace_id": ...}` (structlog's render_to_log_kwargs, an app's request id): Logger.makeRecord
    refuses an extra key the record already has, and cryostorm's record factory gave every record trace_id."""
    result = run_launcher(["--quiet", "--", PYTHON, "-c", EXTRA_PROGRAM], {"CRYOSTORM_EXPORTER_TYPE": "in_memory"})
    assert result.returncode == 0, result.stderr
    trace_id, span_id = result.stdout.split()
    assert result.stderr.splitlines() == ["req-1234|0|t-9|bob|theirs", f"{trace_id}|{span_id}|{trace_id}|al|ours",
                                          f"{trace_id}|s-1|{trace_id}|cy|theirs inside"]


def test_log_formats_using_otel_trace_ids_print_the_real_ids(otlp_receiver: Receiver) -> None:
    """Break checked: logbridge.inject_trace_context writing "0" for a valid context -> `[0 0] inside`."""
    result = run_launcher(["--quiet", "--", PYTHON, "-c", LOG_FORMAT_PROGRAM], otlp_env(otlp_receiver))
    assert result.returncode == 0, result.stderr
    trace_id, span_id = result.stdout.split()
    assert len(trace_id) == 32 and int(trace_id, 16) != 0
    assert result.stderr.splitlines() == ["[0 0] outside", f"[{trace_id} {span_id}] inside"]
    # the same ids as the span the record was logged in, as exported
    otlp_receiver.wait_for_spans("logged")
    [span] = otlp_receiver.spans()
    assert (span.trace_id, span.span_id) == (trace_id, span_id)


# -- the hook's initialisation -------------------------------------------------------------------

INIT_TWICE = """
from opentelemetry import trace
from cryostorm_run.hook.bootstrap import initialize
first = trace.get_tracer_provider()
initialize()  # the hook already ran it in this process
assert trace.get_tracer_provider() is first, "a second provider was installed"
with trace.get_tracer("twice").start_as_current_span("once"):
    pass
print("ok")
"""


def test_initialising_the_hook_twice_configures_once(otlp_receiver: Receiver) -> None:
    """Break checked: the `if _DONE: return` guard of bootstrap.initialize removed -> two report lines."""
    env = otlp_env(otlp_receiver, CRYOSTORM_METRICS__ENABLED="false", CRYOSTORM_LOGGING__ENABLED="false")
    result = run_launcher(["--", PYTHON, "-c", INIT_TWICE], env)
    assert (result.returncode, result.stdout) == (0, "ok\n"), result.stderr
    assert len(report_lines(result.stderr)) == 1, result.stderr
    assert [line for line in result.stderr.splitlines() if not line.startswith(REPORT)] == []
    otlp_receiver.wait_for_spans("once")
    # the program has exited: whatever it would export has arrived
    assert [s.name for s in otlp_receiver.spans()] == ["once"], "exported twice: two pipelines"
    assert [r.signal for r in otlp_receiver.requests()] == ["traces"]
