"""A distant collector (issue 16): every export answered after 200 ms, a program making 5,000 spans/s
for 10 s under `cryostorm-run` with the default settings. With one export in flight the queue could
only drain 512 spans per 200 ms (2,560/s): the program was held (10 s of work took ~14 s, one `end()`
waited 207 ms for room). With several in flight everything is delivered, each span once, and the
program runs at its own pace.
"""

from __future__ import annotations

import sys

import pytest
from conftest import run_launcher
from otlp_receiver import Fault, Receiver

PYTHON = sys.executable
RATE, SECONDS = 5_000, 10

# Paced: spans are made in small steps to follow RATE per second; every span's end() is timed.
PROGRAM = f"""
import sys, time
from opentelemetry import trace
tracer = trace.get_tracer("distant")
rate, seconds = {RATE}, {SECONDS}
total = rate * seconds
made, worst, clock = 0, 0.0, time.perf_counter
start = clock()
while made < total:
    due = min(total, int((clock() - start) * rate) + 1)
    while made < due:
        span = tracer.start_span(f"d-{{made}}")
        began = clock()
        span.end()
        worst = max(worst, clock() - began)
        made += 1
    time.sleep(0.001)
took = clock() - start
print("made", made, "took", f"{{took:.3f}}", "worst_end_ms", f"{{worst * 1000:.2f}}", flush=True)
"""


@pytest.mark.parametrize("transport", ["grpc", "http/protobuf"])
def test_a_distant_collector_gets_everything_once_and_the_program_is_not_held(transport: str) -> None:
    with Receiver() as rcv:
        rcv.set_fault(Fault.SLOW, delay=0.2)  # every export answered OK after 200 ms
        endpoint = rcv.grpc_endpoint if transport == "grpc" else rcv.http_endpoint
        env = {"CRYOSTORM_EXPORTER_TYPE": "otlp", "CRYOSTORM_COLLECTOR": endpoint,
               "CRYOSTORM_OTLP__PROTOCOL": transport, "CRYOSTORM_SERVICE__NAME": "distant",
               "CRYOSTORM_SERVICE__ENVIRONMENT": "production",
               "CRYOSTORM_METRICS__ENABLED": "false", "CRYOSTORM_LOGGING__ENABLED": "false"}
        result = run_launcher(["--quiet", "--", PYTHON, "-c", PROGRAM], env=env, timeout=120)
        assert result.returncode == 0, result.stderr
        words = result.stdout.split()
        made, took, worst_ms = int(words[1]), float(words[3]), float(words[5])
        spans = rcv.spans()  # the exit flush has waited for the last exports
        names = [s.name for s in spans]
        delivered = len(set(names))
        print(f"{transport}: {delivered:,} of {made:,} delivered ({len(names) - delivered} duplicates), "
              f"{SECONDS} s of work took {took:.2f} s, worst end() {worst_ms:.1f} ms", file=sys.stderr)
        assert made == RATE * SECONDS
        assert set(names) == {f"d-{i}" for i in range(made)}, result.stderr  # 100 % delivered
        assert len(names) == delivered and len({s.span_id for s in spans}) == delivered  # each once
        assert took < SECONDS * 1.1, result.stdout  # not held: its own pace, within 10 %
        assert worst_ms < 50, result.stdout  # no end() waits for queue room
        assert result.stderr == "", result.stderr  # nothing dropped, nothing reported
