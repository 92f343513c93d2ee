"""A process that forks while it exports over gRPC: its children stay alive and deliver (export/forkgate.py).

Forked mid-call, a child could find gRPC broken (about 1 child in 11 died by SIGABRT, its spans lost and
never reported); forked while the first export loaded grpc in a worker thread, a child hung for good at
exit (the module's import lock, held by a thread it does not have). A fork now waits for the call in
flight (up to 250 ms) and for an exporter being loaded; a child forked past that wait is told."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest
from conftest import CRYOSTORM_RUN, PYTHON, child_env
from otlp_receiver import Fault, Receiver

FORKS = 40
PROGRAM = textwrap.dedent("""
    import os, sys, threading, time
    from opentelemetry import trace

    tracer = trace.get_tracer("forkgate")
    forks = int(sys.argv[1])
    children = []
    for k in range(forks):
        for _ in range(20):
            with tracer.start_as_current_span("parent"):
                pass
        threading.Thread(target=trace.get_tracer_provider().force_flush).start()
        time.sleep(0.05)  # that export now waits for the slow collector: the fork comes in the middle of it
        pid = os.fork()
        if pid == 0:
            for _ in range(5):
                with tracer.start_as_current_span(f"child-{k}"):
                    pass
            sys.exit(0)  # cryostorm's exit flush: the child's own gRPC export
        children.append(pid)
    died = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
    print("abnormal", [code for code in died if code != 0], flush=True)
""")


def run_program(rcv: Receiver, tmp_path: Path, forks: int, program: str = PROGRAM) -> subprocess.CompletedProcess[str]:
    (tmp_path / "prog.py").write_text(program)
    env = child_env({
        "CRYOSTORM_EXPORTER_TYPE": "otlp", "CRYOSTORM_COLLECTOR": rcv.grpc_endpoint,
        "CRYOSTORM_SERVICE__NAME": "forkgate", "CRYOSTORM_SERVICE__ENVIRONMENT": "production",
        "CRYOSTORM_METRICS__ENABLED": "false", "CRYOSTORM_LOGGING__ENABLED": "false",
        "CRYOSTORM_SHUTDOWN_TIMEOUT_MILLIS": "10000",
    })
    return subprocess.run([CRYOSTORM_RUN, "--quiet", "--", PYTHON, str(tmp_path / "prog.py"), str(forks)], env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_children_forked_during_a_grpc_export_stay_alive_and_deliver(otlp_receiver: Receiver,
                                                                      tmp_path: Path) -> None:
    rcv = otlp_receiver
    rcv.set_fault(Fault.SLOW, delay=0.15)  # every export answered after 150 ms: within the fork's wait
    result = run_program(rcv, tmp_path, FORKS)
    assert result.returncode == 0, result.stderr
    assert "abnormal []" in result.stdout, result.stdout + result.stderr  # SIGABRT shows as -6
    spans = rcv.wait_for_spans(lambda s: len(s) >= FORKS * 25, timeout=60)
    names = [s.name for s in spans]
    assert names.count("parent") == FORKS * 20
    assert all(names.count(f"child-{k}") == 5 for k in range(FORKS)), sorted(set(names))


def test_a_child_forked_while_the_first_export_loads_grpc_exits_and_delivers(otlp_receiver: Receiver,
                                                                              tmp_path: Path) -> None:
    # 30 ms after the first export starts, its worker thread is importing grpc (~0.1 s): before, every
    # such child lost its spans and most never exited.
    first = PROGRAM.replace("time.sleep(0.05)", "time.sleep(0.03)")
    result = run_program(otlp_receiver, tmp_path, 1, first)
    assert result.returncode == 0, result.stderr
    assert "abnormal []" in result.stdout, result.stdout + result.stderr
    assert "not fully flushed" not in result.stderr, result.stderr
    spans = otlp_receiver.wait_for_spans(lambda s: len(s) >= 25, timeout=60)
    assert sorted({s.name for s in spans}) == ["child-0", "parent"]


GATE = textwrap.dedent("""
    import os, sys, threading, time
    from cryostorm_run.export import forkgate

    forkgate.FORK_WAIT_S, forkgate.BUILD_WAIT_S = float(sys.argv[2]), float(sys.argv[2])
    kind = forkgate.grpc_call if sys.argv[1] == "call" else forkgate.exporter_build
    inside, finished = threading.Event(), threading.Event()

    def under_way():
        with kind():
            inside.set()
            time.sleep(0.5)
        finished.set()

    threading.Thread(target=under_way).start()
    inside.wait()
    pid = os.fork()
    if pid == 0:
        print("child", forkgate.BUILD_BROKEN[0], flush=True)
        os._exit(0)
    os.waitpid(pid, 0)
    print("the fork went ahead", "after" if finished.is_set() else "before", "it finished", flush=True)
""")


@pytest.mark.parametrize("kind", ["call", "build"])
def test_a_fork_waits_for_what_is_under_way_and_a_child_forked_past_the_wait_is_told(kind: str) -> None:
    waited = subprocess.run([PYTHON, "-c", GATE, kind, "5"], capture_output=True, text=True, timeout=60,
                            check=False, env=child_env())
    assert waited.returncode == 0, waited.stderr
    assert "the fork went ahead after it finished" in waited.stdout, waited.stdout
    assert "child False" in waited.stdout and "forked while" not in waited.stderr, waited.stderr
    past = subprocess.run([PYTHON, "-c", GATE, kind, "0.05"], capture_output=True, text=True, timeout=60,
                          check=False, env=child_env())
    assert past.returncode == 0, past.stderr
    assert "the fork went ahead before it finished" in past.stdout, past.stdout
    told = {"call": "cryostorm: warning: this process was forked while 1 gRPC export(s) of its parent were still "
                    "in flight after 50 ms; gRPC can fail in it (abort or hang). For a server that forks while "
                    "it exports, use otlp.protocol http/protobuf",
            "build": "cryostorm: warning: this process was forked while its parent was still loading an exporter "
                     "after 0.05 s; it cannot load one itself, so its telemetry is not exported (reported at exit)"}
    assert told[kind] in past.stderr, past.stderr
    assert f"child {kind == 'build'}" in past.stdout  # the child's exporters then fail at once, not hang
