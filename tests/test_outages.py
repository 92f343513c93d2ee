"""Outages and restarts in a long-running server: every span delivered or reported, while it runs.

A real server with two worker processes under `cryostorm-run`, a steady load of >= 200 requests/s
for 60 s, the real OTLP receiver stopped for 17 s and started again on the same ports, then SIGTERM
to the server's master (a rolling restart). With default settings every span of every request
served must arrive: the queue (encoded spans) is kept through the outage, export resumes when the
collector answers again, and each worker flushes on its way out, also when the server re-raises
SIGTERM with the default action (uvicorn, gunicorn's UvicornWorker).
"""

from __future__ import annotations

import http.client
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from otlp_receiver import Receiver
from test_workers import APPS, GUNICORN, PYTHON, Server

LOAD_S = 60.0
OUTAGE = (15.0, 32.0)  # seconds into the load: the collector is down for 17 s
RATE = 220  # requests per second, over all client threads

SERVERS = {
    "gunicorn-uvicorn-worker": [*GUNICORN, "-k", "uvicorn.workers.UvicornWorker", "outage_app:app"],
    "uvicorn-workers": [PYTHON, "-m", "uvicorn", "outage_app:app", "--host", "127.0.0.1", "--port", "{port}",
                        "--app-dir", str(APPS), "--workers", "2", "--no-access-log"],
}


def _defaults_env(rcv: Receiver, protocol: str) -> dict[str, str]:
    # Nothing tuned: default queue, batch, timeouts and shutdown budget.
    return {"CRYOSTORM_EXPORTER_TYPE": "otlp", "CRYOSTORM_OTLP__PROTOCOL": protocol,
            "CRYOSTORM_COLLECTOR": rcv.grpc_endpoint if protocol == "grpc" else rcv.http_endpoint,
            "CRYOSTORM_SERVICE__NAME": "outage", "CRYOSTORM_SERVICE__ENVIRONMENT": "production",
            "CRYOSTORM_METRICS__ENABLED": "false", "CRYOSTORM_LOGGING__ENABLED": "false"}


def _load(port: int, stop_at: float, served: list[int], errors: list[str], threads: int = 16) -> None:
    """Paced GET /hello over keep-alive connections until `stop_at`; counts 200 answers. Sixteen
    connections: a server that writes headers and body separately (Nagle) costs a client ~40 ms per
    request through delayed ACKs, so one connection alone cannot carry ~14 requests/s reliably."""
    interval = threads / RATE

    def client(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        next_at = time.monotonic() + index * interval / threads
        count = 0
        while (now := time.monotonic()) < stop_at:
            if now < next_at:
                time.sleep(next_at - now)
            next_at += interval
            try:
                conn.request("GET", "/hello")
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    count += 1
                else:
                    errors.append(f"status {response.status}")
            except (OSError, http.client.HTTPException) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.close()
        served[index] = count

    pool = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
@pytest.mark.parametrize("server", sorted(SERVERS))
def test_an_outage_and_a_rolling_restart_lose_nothing(otlp_receiver: Receiver, tmp_path: Path, server: str,
                                                       protocol: str) -> None:
    with Server(SERVERS[server], _defaults_env(otlp_receiver, protocol), tmp_path) as srv:
        srv.wait_ready()
        served, errors = [0] * 16, []
        started = time.monotonic()
        loader = threading.Thread(target=_load, args=(srv.port, started + LOAD_S, served, errors))
        loader.start()
        time.sleep(max(0.0, started + OUTAGE[0] - time.monotonic()))
        otlp_receiver.down()
        time.sleep(max(0.0, started + OUTAGE[1] - time.monotonic()))
        otlp_receiver.up()
        loader.join()
        total = sum(served)
        assert errors == [], errors[:5]
        assert total >= 200 * LOAD_S * 0.9, f"only {total} requests served in {LOAD_S:.0f} s"
        assert srv.stop() == 0, srv.output()  # SIGTERM to the master: a rolling restart
    output = srv.output()
    received = otlp_receiver.wait_for_spans(
        lambda spans: len({s.span_id for s in spans if s.kind == "SERVER"}) >= total, timeout=60)
    server_spans = [s for s in received if s.kind == "SERVER"]
    unique = {s.span_id for s in server_spans}
    assert len(unique) == total, f"served {total}, received {len(unique)}: {output[-3000:]}"  # every one
    # At least once: a request the receiver took just as it was stopped never got its answer, so that
    # batch is sent again (seen once in CI: 512 twice). Never more than what was in flight then.
    assert len(server_spans) - total <= 2 * 4 * 2048, f"{len(server_spans) - total} duplicates"
    assert "dropped" not in output and "not delivered" not in output and "not fully flushed" not in output, \
        output[-3000:]


STEADY = """
import sys, time
from opentelemetry import trace
tracer = trace.get_tracer("steady")
end = time.monotonic() + float(sys.argv[1])
i = 0
while time.monotonic() < end:
    with tracer.start_as_current_span(f"steady-{i}"):
        pass
    i += 1
    time.sleep(0.02)
print(i, flush=True)
"""


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_export_resumes_soon_after_the_collector_answers_again(otlp_receiver: Receiver, protocol: str) -> None:
    import subprocess

    from conftest import CRYOSTORM_RUN, child_env

    env = {**_defaults_env(otlp_receiver, protocol), "CRYOSTORM_TRACING__EXPORT_CONFIG__SCHEDULE_DELAY_MILLIS": "200",
           "CRYOSTORM_SHUTDOWN_TIMEOUT_MILLIS": "10000"}
    proc = subprocess.Popen([CRYOSTORM_RUN, "--quiet", "--", PYTHON, "-c", STEADY, "40"], env=child_env(env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        otlp_receiver.wait_for_spans(10, timeout=30)  # flowing
        otlp_receiver.down()
        time.sleep(20)  # long enough for every backoff to grow
        before = len(otlp_receiver.spans())
        otlp_receiver.up()
        back = time.monotonic()
        otlp_receiver.wait_for_spans(lambda spans: len(spans) > before, timeout=30)
        lag = time.monotonic() - back
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    print(f"RECOVERY {protocol}: first spans {lag:.2f} s after the collector answered again")
    created = int(out.split()[-1])
    assert len({s.name for s in otlp_receiver.wait_for_spans(created, timeout=30)}) == created, err
    assert lag < 3.0, f"export resumed only {lag:.1f} s after the collector came back"


# -- every way a server's workers end: each request's SERVER span delivered, nothing reported lost ---

ENDINGS = {
    # gunicorn: SIGINT and SIGQUIT are its quick shutdown (the master sends SIGQUIT to the workers)
    "gunicorn-uvicorn-worker-SIGINT": (SERVERS["gunicorn-uvicorn-worker"], "/hello", signal.SIGINT),
    "gunicorn-uvicorn-worker-SIGQUIT": (SERVERS["gunicorn-uvicorn-worker"], "/hello", signal.SIGQUIT),
    "gunicorn-sync-SIGINT": ([*GUNICORN, "workers_flask:app"], "/work", signal.SIGINT),
    "gunicorn-sync-SIGQUIT": ([*GUNICORN, "workers_flask:app"], "/work", signal.SIGQUIT),
    # uvicorn --workers: Ctrl-C to the supervisor, which stops its workers
    "uvicorn-workers-SIGINT": (SERVERS["uvicorn-workers"], "/hello", signal.SIGINT),
}


def _path_of(span: Any) -> str | None:
    return span.attributes.get("url.path") or span.attributes.get("http.target")


@pytest.mark.parametrize("ending", sorted(ENDINGS))
def test_every_way_a_server_ends_delivers_each_request(otlp_receiver: Receiver, tmp_path: Path, ending: str) -> None:
    cmd, path, sig = ENDINGS[ending]
    with Server(cmd, _defaults_env(otlp_receiver, "grpc"), tmp_path) as srv:
        srv.wait_ready()
        served = 0
        with httpx.Client(timeout=20) as client:  # keep-alive: both workers get their share over the run
            for _ in range(240):
                served += client.get(srv.base + path).status_code == 200
        srv.proc.send_signal(sig)  # to the master; the server decides how its workers end
        status = srv.proc.wait(timeout=40)
    output = srv.output()
    assert status == 0, output[-3000:]  # the server's own exit status for this signal (0 without cryostorm too)
    received = otlp_receiver.wait_for_spans(
        lambda spans: sum(1 for s in spans if s.kind == "SERVER" and _path_of(s) == path) >= served, timeout=30)
    mine = [s for s in received if s.kind == "SERVER" and _path_of(s) == path]
    assert len(mine) == served == 240, f"served {served}, received {len(mine)}: {output[-3000:]}"
    assert "dropped" not in output and "not delivered" not in output and "not fully flushed" not in output, \
        output[-3000:]
