"""The demo LLM app end to end, without Docker: metrics scraped by a real Prometheus, traces at a
real OTLP receiver with the span tree the seed describes."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import CRYOSTORM_RUN, PYTHON, ROOT, child_env
from otlp_receiver import ReceivedSpan, Receiver

REQUESTS = 7


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """A real Prometheus on loopback scraping one target port every second: (api port, target port)."""
    api, target = free_port(), free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"scrape_configs:\n  - job_name: llm-app\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
    )
    proc = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{api}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{api}/-/ready")
        yield api, target
    finally:
        stop(proc)


def promql(api: int, query: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{api}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def children(spans: list[ReceivedSpan], parent: ReceivedSpan) -> list[ReceivedSpan]:
    return [s for s in spans if s.parent_span_id == parent.span_id and s.trace_id == parent.trace_id]


def test_llm_app_metrics_in_prometheus_and_span_tree_at_receiver(
    otlp_receiver: Receiver, prometheus: tuple[int, int]
) -> None:
    api, metrics_port = prometheus
    app_port = free_port()
    env = child_env({
        "CRYOSTORM_SERVICE__NAME": "llm-app",
        "CRYOSTORM_SERVICE__ENVIRONMENT": "production",
        "CRYOSTORM_EXPORTER_TYPE": "otlp",
        "CRYOSTORM_COLLECTOR": otlp_receiver.grpc_endpoint,
        "CRYOSTORM_METRICS__EXPORTER_TYPE": "prometheus",
        "CRYOSTORM_METRICS__PROMETHEUS_HOST": "127.0.0.1",
        "CRYOSTORM_METRICS__PROMETHEUS_PORT": str(metrics_port),
        "CRYOSTORM_TRACING__EXPORT_CONFIG__SCHEDULE_DELAY_MILLIS": "200",
        "LLM_APP_LATENCY_SCALE": "0",
    })
    app = subprocess.Popen(
        [CRYOSTORM_RUN, "--quiet", "--", PYTHON, "-m", "uvicorn", "examples.llm_app:app", "--port", str(app_port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{app_port}/health")
        with httpx.Client(base_url=f"http://127.0.0.1:{app_port}", timeout=30) as client:
            for i in range(REQUESTS):
                response = client.post("/chat", json={"prompt": f"hello {i}", "model": "sim-small"})
                assert response.status_code == 200, response.text

        deadline = time.monotonic() + 30
        result: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            result = promql(api, 'sum(llm_requests_total{success="true"})')
            if result and float(result[0]["value"][1]) == REQUESTS:
                break
            time.sleep(0.5)
        print(f"PromQL sum(llm_requests_total{{success=\"true\"}}) -> {result}")
        assert result and float(result[0]["value"][1]) == REQUESTS
        [series] = promql(api, "llm_requests_total")
        assert series["metric"]["model"] == "sim-small"

        spans = otlp_receiver.wait_for_spans(
            lambda got: sum(s.name == "system.gather_metrics" for s in got) >= REQUESTS, timeout=30)
    finally:
        stop(app)
    roots = [s for s in spans if s.kind == "SERVER" and s.attributes.get("http.route") == "/chat"]
    assert len(roots) == REQUESTS
    for root in roots:
        assert root.resource["service.name"] == "llm-app"
        [chat] = children(spans, root)
        assert (chat.name, chat.kind) == ("chat", "INTERNAL")
        under_chat = children(spans, chat)
        assert sorted((s.kind, s.name) for s in under_chat) == [("CLIENT", "POST"),
                                                                ("CLIENT", "llm.simulate_llm_api_call")]
        [http_client] = [s for s in under_chat if s.name == "POST"]
        [downstream] = children(spans, http_client)
        assert (downstream.kind, downstream.attributes.get("http.route")) == ("SERVER", "/system-diagnostics")
        assert [s.name for s in children(spans, downstream)] == ["system.gather_metrics"]
    tree = [f"{s.kind:8} {s.name}" for s in sorted(spans, key=lambda s: s.start_time_unix_nano)
            if s.trace_id == roots[0].trace_id]
    print("span tree of one POST /chat:\n  " + "\n  ".join(tree))
