"""Histograms answer PromQL quantiles (issue 15): after requests with known latencies, a real Prometheus
scraping the program's Prometheus exporter gives p50 / p90 / p99 within 20 % of the true ones."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
from conftest import CRYOSTORM_RUN, PYTHON, ROOT, child_env
from test_dashboard_scrape import start_prometheus
from test_llm_app_e2e import free_port, promql, stop, wait_http

# 90 requests, latencies spread evenly from 5 ms to 94 ms, in a shuffled order. They stay below the
# 0.1 s bucket boundary with the server's own few milliseconds: within one bucket PromQL interpolates
# linearly, across the next one (0.1 to 0.25 s) a p90 of 99 ms read as 125 ms.
LATENCIES_MS = [5 + (i * 37) % 90 for i in range(90)]
QUANTILES = (0.5, 0.9, 0.99)
ROUTE = "/sleep/{ms}"


def true_quantile(values: list[int], q: float) -> float:
    """The q-quantile in seconds, interpolated between the closest ranks (as numpy's default)."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return (ordered[low] + (ordered[high] - ordered[low]) * (position - low)) / 1000


def test_promql_quantiles_are_within_20_percent_of_the_true_ones(tmp_path: Path) -> None:
    assert sorted(LATENCIES_MS) == list(range(5, 95))
    metrics_port, app_port = free_port(), free_port()
    prometheus, api = start_prometheus(tmp_path / "prometheus", metrics_port, "")
    env = child_env({"CRYOSTORM_SERVICE__NAME": "latency", "CRYOSTORM_EXPORTER_TYPE": "none",
                     "CRYOSTORM_METRICS__EXPORTER_TYPE": "prometheus",
                     "CRYOSTORM_METRICS__PROMETHEUS_HOST": "127.0.0.1",
                     "CRYOSTORM_METRICS__PROMETHEUS_PORT": str(metrics_port)})
    app = subprocess.Popen(
        [CRYOSTORM_RUN, "--quiet", "--", PYTHON, "-m", "uvicorn", "latency_app:app", "--port", str(app_port)],
        cwd=ROOT / "tests" / "apps", env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{api}/-/ready")
        wait_http(f"http://127.0.0.1:{app_port}/health")
        with httpx.Client(base_url=f"http://127.0.0.1:{app_port}", timeout=30) as client:
            for ms in LATENCIES_MS:
                assert client.get(f"/sleep/{ms}").status_code == 200
        selector = f'http_server_request_duration_seconds_bucket{{http_route="{ROUTE}"}}'
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            count = promql(api, f'sum(http_server_request_duration_seconds_count{{http_route="{ROUTE}"}})')
            if count and float(count[0]["value"][1]) == len(LATENCIES_MS):
                break
            time.sleep(0.5)
        assert count and float(count[0]["value"][1]) == len(LATENCIES_MS), count
        report = []
        for q in QUANTILES:
            [result] = promql(api, f"histogram_quantile({q}, sum by (le) ({selector}))")
            measured, truth = float(result["value"][1]), true_quantile(LATENCIES_MS, q)
            report.append(f"p{q * 100:g}: PromQL {measured * 1000:.1f} ms, true {truth * 1000:.1f} ms")
            assert abs(measured - truth) <= 0.2 * truth, report
        print("\n".join(report))
    finally:
        stop(app)
        stop(prometheus)
