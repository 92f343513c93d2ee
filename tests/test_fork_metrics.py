"""A worker forked while its parent exports metrics still exports its own (billiard, multiprocessing and
gunicorn fork from whatever thread, whenever). The SDK's periodic reader keeps its export lock across
fork; cryostorm gives the child a fresh one (export/signals.py `_fork_safe`)."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

from conftest import CRYOSTORM_RUN, PYTHON, child_env
from otlp_receiver import Fault, Receiver

PROGRAM = textwrap.dedent("""
    import os, sys, threading, time
    from opentelemetry import metrics

    counter = metrics.get_meter("forktest").create_counter("fork.test.count")
    counter.add(1, {"who": "parent"})
    flush = threading.Thread(target=metrics.get_meter_provider().force_flush)
    flush.start()
    time.sleep(0.5)  # the parent's export now waits for the slow collector, holding the reader's lock
    pid = os.fork()
    if pid == 0:
        counter.add(1, {"who": "child"})
        sys.exit(0)  # atexit: cryostorm's exit flush
    _, status = os.waitpid(pid, 0)
    flush.join()
    print("child exit", os.waitstatus_to_exitcode(status), flush=True)
""")


def test_a_child_forked_during_a_metric_export_exports_its_own(otlp_receiver: Receiver, tmp_path: Path) -> None:
    rcv = otlp_receiver
    rcv.set_fault(Fault.SLOW, delay=2.0, times=1)  # the parent's flush: answered after 2 s
    (tmp_path / "prog.py").write_text(PROGRAM)
    env = child_env({
        "CRYOSTORM_EXPORTER_TYPE": "otlp", "CRYOSTORM_COLLECTOR": rcv.grpc_endpoint,
        "CRYOSTORM_SERVICE__NAME": "forktest",
        "CRYOSTORM_SERVICE__ENVIRONMENT": "production", "CRYOSTORM_TRACING__ENABLED": "false",
        "CRYOSTORM_LOGGING__ENABLED": "false", "CRYOSTORM_METRICS__EXPORT_INTERVAL_MILLIS": "600000",
        "CRYOSTORM_SHUTDOWN_TIMEOUT_MILLIS": "10000",
    })
    result = subprocess.run([CRYOSTORM_RUN, "--quiet", "--", PYTHON, str(tmp_path / "prog.py")], env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "child exit 0" in result.stdout
    assert "not fully flushed" not in result.stderr, result.stderr  # the child's exit flush waited on the lock
    who = {m.resource["process.pid"]: {p["attributes"].get("who") for p in m.points}
           for m in rcv.wait_for_metrics(lambda ms: {"child", "parent"} <= {
               p["attributes"].get("who") for m in ms if m.name == "fork.test.count" for p in m.points},
               timeout=30)
           if m.name == "fork.test.count"}
    assert len(who) == 2, who  # the parent's and the child's, each under its own pid
