"""Ways a process ends that run no atexit, or interrupt it: telemetry delivered or the loss told."""

from __future__ import annotations

import functools
import os
import select
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import CRYOSTORM_RUN, child_env
from otlp_receiver import Fault, Receiver

FORK_THEN_OS_EXIT = """
import os
from opentelemetry import trace
tracer = trace.get_tracer("fork")
pid = os.fork()
if pid == 0:
    for i in range(20):
        with tracer.start_as_current_span(f"child-{i}"):
            pass
    os._exit(0)  # no atexit, no finalizers: what a forked worker does
os.waitpid(pid, 0)
print("parent done", flush=True)
"""


def test_a_forked_child_leaving_through_os_exit_delivers_its_spans(otlp_receiver: Receiver) -> None:
    env = {"CRYOSTORM_EXPORTER_TYPE": "otlp", "CRYOSTORM_COLLECTOR": otlp_receiver.grpc_endpoint,
           "CRYOSTORM_SERVICE__NAME": "fork-exit", "CRYOSTORM_SERVICE__ENVIRONMENT": "production",
           "CRYOSTORM_TRACING__EXPORT_CONFIG__SCHEDULE_DELAY_MILLIS": "60000"}  # only a flush can deliver them
    done = subprocess.run([CRYOSTORM_RUN, "--quiet", "--", sys.executable, "-c", FORK_THEN_OS_EXIT],
                          env=child_env(env), capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout) == (0, "parent done\n"), done.stderr
    names = {s.name for s in otlp_receiver.wait_for_spans(20, timeout=20)}
    assert names == {f"child-{i}" for i in range(20)}, done.stderr


OWN_HANDLER_THEN_KILL_SELF = """
import os, signal, sys
from opentelemetry import trace
tracer = trace.get_tracer("kill")
def cleanup(signum, frame):
    print("cleaned up", flush=True)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)  # re-raised with the default action: the idiom from before signal.raise_signal
signal.signal(signal.SIGTERM, cleanup)
for i in range(10):
    with tracer.start_as_current_span(f"work-{i}"):
        pass
os.kill(os.getpid(), signal.SIGTERM)
signal.pause()
"""


def test_a_signal_re_raised_with_os_kill_of_its_own_pid_flushes_first(otlp_receiver: Receiver) -> None:
    # Wrapped like signal.raise_signal: the process still dies by the signal (status 143, as without cryostorm),
    # and what it queued is delivered. Was: every span lost, not a word.
    env = {"CRYOSTORM_EXPORTER_TYPE": "otlp", "CRYOSTORM_COLLECTOR": otlp_receiver.grpc_endpoint,
           "CRYOSTORM_SERVICE__NAME": "kill-self", "CRYOSTORM_SERVICE__ENVIRONMENT": "production",
           "CRYOSTORM_TRACING__EXPORT_CONFIG__SCHEDULE_DELAY_MILLIS": "60000"}  # only a flush can deliver them
    plain = subprocess.run([sys.executable, "-c", OWN_HANDLER_THEN_KILL_SELF], env=child_env(), capture_output=True,
                           text=True, timeout=60, check=False)
    done = subprocess.run([CRYOSTORM_RUN, "--quiet", "--", sys.executable, "-c", OWN_HANDLER_THEN_KILL_SELF],
                          env=child_env(env), capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (plain.returncode, plain.stdout, plain.stderr) == (
        -signal.SIGTERM, "cleaned up\n", ""), done
    names = {s.name for s in otlp_receiver.wait_for_spans(10, timeout=20)}
    assert names == {f"work-{i}" for i in range(10)}, done.stderr


OS_EXIT_AS_CALLED = """
import os
from opentelemetry import trace
with trace.get_tracer("exit").start_as_current_span("before-exit"):
    pass
for args, kwargs in [((), {}), ((1, 2), {}), ((), {"status": 1, "x": 2}), ((), {"code": 1}), (("1",), {}),
                     ((2**40,), {}), ((None,), {})]:
    try:
        os._exit(*args, **kwargs)
    except (TypeError, OverflowError) as exc:
        print(type(exc).__name__, exc, flush=True)
os._exit(status=4)
"""


def test_os_exit_takes_what_the_original_takes_and_refuses_the_same(otlp_receiver: Receiver) -> None:
    """`os._exit(status=4)` ends the process with 4 (its status may be passed by name), a call the original refuses
    raises its very error and leaves telemetry going; the exit still flushes first."""
    env = child_env({"CRYOSTORM_EXPORTER_TYPE": "otlp", "CRYOSTORM_COLLECTOR": otlp_receiver.grpc_endpoint,
                     "CRYOSTORM_SERVICE__NAME": "os-exit",
                     "CRYOSTORM_TRACING__EXPORT_CONFIG__SCHEDULE_DELAY_MILLIS": "60000"})  # only a flush delivers it
    bare = subprocess.run([sys.executable, "-c", OS_EXIT_AS_CALLED], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    done = subprocess.run([CRYOSTORM_RUN, "--quiet", "--", sys.executable, "-c", OS_EXIT_AS_CALLED], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert (bare.returncode, bare.stderr, len(bare.stdout.splitlines())) == (4, "", 7), bare
    assert (done.returncode, done.stdout, done.stderr) == (4, bare.stdout, "")
    assert [s.name for s in otlp_receiver.wait_for_spans(1, timeout=20)] == ["before-exit"], done.stderr


SLEEPER = """
import time
from opentelemetry import trace
tracer = trace.get_tracer("sleeper")
for i in range(100):
    with tracer.start_as_current_span("queued"):
        pass
print("ready", flush=True)
for _ in range(600):  # short sleeps: a signal that lands between the last check of pending signals and
    time.sleep(0.1)   # the sleep's system call has its handler run only once the sleep ends (CPython,
                      # bare too: 5 of 1,500 runs under load); one time.sleep(60) was a 60 s hang
"""


def test_a_second_ctrl_c_during_the_exit_flush_still_reports_the_loss() -> None:
    # The collector refuses connections: the exit flush waits its full budget, and a person presses
    # Ctrl-C again meanwhile. No traceback of cryostorm's; the not-delivered count is still told.
    env = {"CRYOSTORM_EXPORTER_TYPE": "otlp", "CRYOSTORM_COLLECTOR": "http://127.0.0.1:9",
           "CRYOSTORM_SERVICE__NAME": "ctrl-c", "CRYOSTORM_SERVICE__ENVIRONMENT": "production",
           "CRYOSTORM_METRICS__ENABLED": "false", "CRYOSTORM_LOGGING__ENABLED": "false",
           "CRYOSTORM_TRACING__EXPORT_CONFIG__SCHEDULE_DELAY_MILLIS": "60000",
           "CRYOSTORM_SHUTDOWN_TIMEOUT_MILLIS": "20000"}
    proc = subprocess.Popen([CRYOSTORM_RUN, "--quiet", "--", sys.executable, "-c", SLEEPER], env=child_env(env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGINT)  # the program ends; the exit flush starts (20 s budget)
        time.sleep(2.0)
        assert proc.poll() is None, "the exit flush should still be waiting for the collector"
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)  # the second Ctrl-C
        _, err = proc.communicate(timeout=30)
        waited = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert waited < 10, f"the second Ctrl-C should end the wait, took {waited:.1f} s"
    cryostorm_lines = [line for line in err.splitlines() if "cryostorm_run" in line]
    assert cryostorm_lines == [], err  # no frame of cryostorm's in any traceback
    assert "100 spans not confirmed delivered;" in err, err  # a refusing collector: none of them under way


FIVE_SPANS = """
from opentelemetry import trace
for i in range(5):
    with trace.get_tracer("t").start_as_current_span(f"s{i}"):
        pass
"""


@pytest.mark.parametrize("collector", ["refusing", "slow"])
def test_a_queue_whose_own_timeout_ends_before_the_exits_still_tells_its_spans(otlp_receiver: Receiver,
                                                                                collector: str) -> None:
    # export_config.timeout_millis (300 ms) ends the span queue's shutdown before the exit's 1.5 s. Its export,
    # still retried then, ended a moment after the exit report was made, which called the flush complete:
    # 5 spans gone without a word (a refusing collector: 1 run in 6; a slow one: most runs).
    if collector == "slow":
        otlp_receiver.set_fault(Fault.SLOW, delay=3.0)
    endpoint = otlp_receiver.grpc_endpoint if collector == "slow" else "http://127.0.0.1:9"
    env = {"CRYOSTORM_EXPORTER_TYPE": "otlp", "CRYOSTORM_COLLECTOR": endpoint, "CRYOSTORM_SERVICE__NAME": "t",
           "CRYOSTORM_METRICS__ENABLED": "false", "CRYOSTORM_LOGGING__ENABLED": "false",
           "CRYOSTORM_SHUTDOWN_TIMEOUT_MILLIS": "1500", "CRYOSTORM_TRACING__EXPORT_CONFIG__TIMEOUT_MILLIS": "300"}
    for _ in range(4):
        done = subprocess.run([CRYOSTORM_RUN, "--quiet", "--", sys.executable, "-c", FIVE_SPANS],
                              env=child_env(env), capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        told = [line for line in done.stderr.splitlines()
                if line.startswith(("cryostorm: 5 spans not delivered: the exporter gave up on them",
                                    "cryostorm: telemetry not fully flushed within 1.5 s (shutdown_timeout_millis): "
                                    "5 spans not confirmed delivered"))]
        assert len(told) == 1, done.stderr


ONE_SPAN_THEN_WAIT = """
import time
from opentelemetry import trace
with trace.get_tracer("t").start_as_current_span("one"):
    pass
time.sleep(3)
"""


@pytest.mark.parametrize("transport", ["grpc", "http/protobuf"])
def test_a_retry_budget_shorter_than_one_backoff_does_not_retry_in_a_busy_loop(otlp_receiver: Receiver,
                                                                               transport: str) -> None:
    # export_config.timeout_millis of 100 ms, the collector answering UNAVAILABLE / 503: each batch went back to
    # the queue with no wait (its budget ended before the first backoff) and was sent again at once, hundreds
    # of requests a second for as long as the outage lasted. One backoff (~0.5-1 s) now comes first.
    otlp_receiver.set_fault(Fault.UNAVAILABLE)
    endpoint = otlp_receiver.grpc_endpoint if transport == "grpc" else otlp_receiver.http_endpoint
    env = {"CRYOSTORM_EXPORTER_TYPE": "otlp", "CRYOSTORM_COLLECTOR": endpoint, "CRYOSTORM_OTLP__PROTOCOL": transport,
           "CRYOSTORM_SERVICE__NAME": "t", "CRYOSTORM_METRICS__ENABLED": "false", "CRYOSTORM_LOGGING__ENABLED": "false",
           "CRYOSTORM_SHUTDOWN_TIMEOUT_MILLIS": "500", "CRYOSTORM_TRACING__EXPORT_CONFIG__TIMEOUT_MILLIS": "100",
           "CRYOSTORM_TRACING__EXPORT_CONFIG__SCHEDULE_DELAY_MILLIS": "100"}
    done = subprocess.run([CRYOSTORM_RUN, "--quiet", "--", sys.executable, "-c", ONE_SPAN_THEN_WAIT],
                          env=child_env(env), capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    sent = [r for r in otlp_receiver.requests() if r.signal == "traces"]
    # ~3.5 s at one request per 0.4-1.2 s: 6 here (3.11, 3.13, 3.12). CI's floor line (3.10, SDK 1.40) made 1
    # over HTTP, the batch then waiting until the exit: not explained yet (session 14's note).
    assert 1 <= len(sent) <= 12, (len(sent), done.stderr)
    assert "1 span not" in done.stderr or "not fully flushed" in done.stderr, done.stderr  # and told at exit


AS_PID_1 = """
import select, signal, sys
from opentelemetry import trace
tracer = trace.get_tracer("init")
def spans(name):
    for _ in range(50):
        with tracer.start_as_current_span(name):
            pass
spans("before")
if sys.argv[1] == "raise-default":  # what uvicorn does under gunicorn's UvicornWorker after its graceful shutdown
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
if sys.argv[1].startswith("raise"):  # uvicorn alone: the handler it found (cryostorm's) restored, then raised
    signal.raise_signal(signal.SIGTERM)
print("ready", flush=True)
while not select.select([sys.stdin], [], [], 0.05)[0]:  # not one blocking read: a signal that lands just
    pass                                                 # before it would be handled only once it returns
sys.stdin.readline()
spans("after")
print("done", flush=True)
"""


def _stderr_until(proc: subprocess.Popen[str], text: str, timeout: float) -> str:
    """What the process wrote on stderr until `text` (read from the pipe itself: a buffered readline would
    hide lines read ahead from `select`)."""
    assert proc.stderr is not None
    seen, deadline = b"", time.monotonic() + timeout
    while text.encode() not in seen:
        if not select.select([proc.stderr], [], [], max(0.0, deadline - time.monotonic()))[0]:
            pytest.fail(f"no {text!r} on stderr within {timeout} s: {seen.decode(errors='replace')}")
        chunk = os.read(proc.stderr.fileno(), 65536)
        if not chunk:
            pytest.fail(f"stderr closed before {text!r}: {seen.decode(errors='replace')}")
        seen += chunk
    return seen.decode()


@functools.cache
def _in_a_pid_namespace() -> tuple[str, ...]:
    """The command prefix that makes a program PID 1 of its own PID namespace, as in a container."""
    for prefix in (("unshare", "--pid", "--fork"), ("unshare", "--user", "--map-root-user", "--pid", "--fork")):
        if subprocess.run([*prefix, "true"], capture_output=True, check=False).returncode == 0:
            return prefix
    pytest.fail("this test needs a PID namespace (util-linux `unshare --pid`, as root or with user namespaces)")


@pytest.mark.parametrize("how", ["sigterm", "raise-default", "raise"])
def test_as_pid_1_a_signal_the_kernel_ignores_leaves_the_program_and_its_telemetry_going(
        otlp_receiver: Receiver, how: str) -> None:
    # A container started without an init: the program is PID 1, where the kernel ignores the default action
    # of SIGTERM (`docker stop`, Kubernetes), so the program goes on. cryostorm's handler used to shut
    # telemetry down for an exit that never came: the 50 spans made after it were lost without a word. A
    # program raising the signal itself is ending (uvicorn after its graceful shutdown): it is not told.
    env = {"CRYOSTORM_EXPORTER_TYPE": "otlp", "CRYOSTORM_COLLECTOR": otlp_receiver.grpc_endpoint,
           "CRYOSTORM_SERVICE__NAME": "pid-1", "CRYOSTORM_SERVICE__ENVIRONMENT": "production",
           "CRYOSTORM_METRICS__ENABLED": "false", "CRYOSTORM_LOGGING__ENABLED": "false",
           "CRYOSTORM_TRACING__EXPORT_CONFIG__SCHEDULE_DELAY_MILLIS": "60000"}  # only a flush sends them
    outputs = []
    for launcher in ([], [CRYOSTORM_RUN, "--quiet", "--"]):  # without cryostorm first: what the program does
        proc = subprocess.Popen([*_in_a_pid_namespace(), *launcher, sys.executable, "-c", AS_PID_1, how],
                                env=child_env(env), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None and proc.stdin is not None
            assert proc.stdout.readline() == "ready\n"
            if how == "sigterm":  # to the program, PID 1 inside: unshare's child, from outside, as docker does
                children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
                os.kill(int(children[0]), signal.SIGTERM)  # alive: it waits for our line
                if launcher:  # sent at once, not at the exit: the stop's SIGKILL may come before it
                    assert len(otlp_receiver.wait_for_spans(50, timeout=20)) == 50
                    said = _stderr_until(proc, "PID 1", timeout=20)  # once the program has gone on for a second
            elif launcher:
                time.sleep(1.5)  # as long as the program goes on past the signal it raised, it is not told
            proc.stdin.write("go\n")
            proc.stdin.flush()
            out, err = proc.communicate(timeout=60)
            err = said + err if how == "sigterm" and launcher else err
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        outputs.append((proc.returncode, out))
        if launcher:
            names = [s.name for s in otlp_receiver.wait_for_spans(100, timeout=20)]
            assert sorted(set(names)) == ["after", "before"] and len(names) == 100, err
            told = [line for line in err.splitlines() if "PID 1" in line]
            assert len(told) == (how == "sigterm"), err
            assert all(line.startswith("cryostorm: SIGTERM did not end the program: it is PID 1") for line in told)
    assert outputs[0] == outputs[1] == (0, "done\n")


def test_uvicorn_as_pid_1_ends_on_sigterm_with_its_telemetry_and_no_word(otlp_receiver: Receiver) -> None:
    # What most containers without an init run: uvicorn shuts down gracefully on SIGTERM, then raises it again
    # with the handler it found (cryostorm's), which the kernel ignores for PID 1; uvicorn then returns.
    env = {"CRYOSTORM_EXPORTER_TYPE": "otlp", "CRYOSTORM_COLLECTOR": otlp_receiver.grpc_endpoint,
           "CRYOSTORM_SERVICE__NAME": "pid-1-uvicorn", "CRYOSTORM_METRICS__ENABLED": "false",
           "CRYOSTORM_TRACING__EXPORT_CONFIG__SCHEDULE_DELAY_MILLIS": "60000"}  # only the exit flush sends them
    proc = subprocess.Popen([*_in_a_pid_namespace(), CRYOSTORM_RUN, "--quiet", "--", sys.executable, "-m", "uvicorn",
                             "--app-dir", str(Path(__file__).parent / "apps"), "--port", "0", "fastapi_app:app"],
                            env=child_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    server = 0
    try:
        seen = _stderr_until(proc, "CTRL+C to quit", timeout=30)  # the end of its "running on" line
        server = int(Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()[0])
        port = seen.split("Uvicorn running on http://127.0.0.1:")[1].split()[0]
        for _ in range(3):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/items/1", timeout=10) as answer:
                assert answer.status == 200
        os.kill(server, signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        err = seen + err
    finally:
        if proc.poll() is None:
            for pid in (server, proc.pid):  # uvicorn first: unshare killed alone would leave it, PID 1 inside
                if pid:
                    os.kill(pid, signal.SIGKILL)
            print(proc.communicate(timeout=30)[1])
    assert proc.returncode == 0, err
    assert [s.name for s in otlp_receiver.wait_for_spans(3, timeout=20)] == ["GET /items/{item_id}"] * 3, err
    assert "Finished server process" in err and not [line for line in err.splitlines() if "PID 1" in line], err


DAEMON_THREAD = """
import os, sys, threading, time
from opentelemetry import trace
tracer = trace.get_tracer("daemon")
count = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
made = 0
def loop():
    global made
    while True:
        with tracer.start_as_current_span("tick") as span:
            recording = span.is_recording()  # once the SDK's provider is shut down, spans are no longer recorded
        made += recording
        os.pwrite(count, b"%10d" % made, 0)  # what was made, as the process dies (the thread is never joined)
        time.sleep(float(sys.argv[1]))
threading.Thread(target=loop, daemon=True).start()
time.sleep(0.3)
print("main exits", flush=True)
"""


@pytest.mark.parametrize("pause", ["0.05", "0.001"])
def test_spans_a_daemon_thread_ends_during_the_exit_are_told_as_such(otlp_receiver: Receiver, tmp_path: Path,
                                                                   pause: str) -> None:
    """A daemon thread goes on making spans while the program exits. Those ended once telemetry was shut down
    were told as 'dropped because the export queue was full' (wrong reason, wrong advice), and one ended after
    the exit report was counted nowhere: created = delivered + told, or a line says more came after the report."""
    import re

    env = {"CRYOSTORM_EXPORTER_TYPE": "otlp", "CRYOSTORM_COLLECTOR": otlp_receiver.grpc_endpoint,
           "CRYOSTORM_SERVICE__NAME": "daemon"}
    made = tmp_path / "made"
    result = subprocess.run([CRYOSTORM_RUN, "--quiet", "--", sys.executable, "-c", DAEMON_THREAD, pause, str(made)],
                            env=child_env(env), capture_output=True, text=True, timeout=60, check=False)
    assert (result.returncode, result.stdout) == (0, "main exits\n"), result.stderr
    assert "queue was full" not in result.stderr, result.stderr
    created = int(made.read_text())
    late = re.search(r"cryostorm: (\d+) spans? ended after telemetry was shut down for the exit, by a thread still "
                     r"running then \(a daemon thread\): not exported", result.stderr)
    told = int(late.group(1)) if late else 0
    time.sleep(0.5)
    delivered = len(otlp_receiver.spans())
    after = "spans still ended after the exit report above, by a thread still running (a daemon thread): lost, " \
            "and not counted there" in result.stderr
    assert created == delivered + told or (created > delivered + told and after), (created, delivered, told,
                                                                                   result.stderr)
    # Said after the span ended, the daemon thread may stop in that line's write before counting it: one more.
    assert delivered + told <= created + after
