"""The Grafana dashboard on both metric paths (issue 15), evaluated by a real Prometheus.

Direct scrape: a Prometheus scrapes the app's own Prometheus exporter; series carry `job`/`instance`, and
only `target_info` carries `service_name`. Through the collector: its resource-to-telemetry conversion puts
`service_name` on every series (emulated here by a metric relabelling that adds it to every scraped series,
target_info included, the hardest case for double counting: no collector binary in the test environment).
Each dashboard query must return what the same query returns with no service filter at all (one app is
scraped): data on both paths, and each series once.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import CRYOSTORM_RUN, PYTHON, ROOT, child_env
from test_llm_app_e2e import free_port, promql, stop, wait_http

DASHBOARD = ROOT / "stack" / "grafana" / "dashboards" / "llm-app.json"
SERVICE = "llm-app"
CONVERSION = f"""    metric_relabel_configs:
      - target_label: service_name
        replacement: {SERVICE}
"""
JOIN_BRANCH = re.compile(r' or (\w+\(\w+\[[^\]]+\]\)|\w+) \* on \(job, instance\) group_left \(\) '
                         r'target_info\{service_name="\$service"\}')
VARIABLES = {"$__rate_interval": "30s", "$__range": "5m", "$service": SERVICE}
OK_REQUESTS, FAILED_REQUESTS = 6, 1


def prometheus_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel.get("targets", [])
            if target.get("datasource", panel["datasource"])["type"] == "prometheus"]


def expand(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


def unfiltered(expr: str) -> str:
    """The query without its service filter and without the target_info join: the truth for one app."""
    return JOIN_BRANCH.sub("", expr).replace('{service_name="$service"}', "")


def start_prometheus(directory: Path, target: int, extra: str) -> tuple[subprocess.Popen[bytes], int]:
    directory.mkdir()
    api = free_port()
    config = directory / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"scrape_configs:\n  - job_name: {SERVICE}\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
        + extra
    )
    proc = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={directory / 'data'}",
         f"--web.listen-address=127.0.0.1:{api}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    return proc, api


@pytest.fixture
def scraped(tmp_path: Path) -> Iterator[dict[str, int]]:
    """The demo app exporting Prometheus metrics, scraped by two real Prometheus: {path: api port}."""
    metrics_port, app_port = free_port(), free_port()
    direct, direct_api = start_prometheus(tmp_path / "direct", metrics_port, "")
    converted, converted_api = start_prometheus(tmp_path / "converted", metrics_port, CONVERSION)
    env = child_env({"CRYOSTORM_SERVICE__NAME": SERVICE, "CRYOSTORM_EXPORTER_TYPE": "none",
                     "CRYOSTORM_METRICS__EXPORTER_TYPE": "prometheus",
                     "CRYOSTORM_METRICS__PROMETHEUS_HOST": "127.0.0.1",
                     "CRYOSTORM_METRICS__PROMETHEUS_PORT": str(metrics_port), "LLM_APP_LATENCY_SCALE": "0"})
    app = subprocess.Popen(
        [CRYOSTORM_RUN, "--quiet", "--", PYTHON, "-m", "uvicorn", "examples.llm_app:app", "--port", str(app_port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        for api in (direct_api, converted_api):
            wait_http(f"http://127.0.0.1:{api}/-/ready")
        wait_http(f"http://127.0.0.1:{app_port}/health")
        with httpx.Client(base_url=f"http://127.0.0.1:{app_port}", timeout=30) as client:
            for i in range(OK_REQUESTS + FAILED_REQUESTS):
                failing = i >= OK_REQUESTS
                response = client.post("/chat", json={"prompt": f"hello {i}", "model": "sim-small", "fail": failing})
                assert response.status_code == (504 if failing else 200), response.text
        yield {"direct": direct_api, "converted": converted_api}
    finally:
        for proc in (app, direct, converted):
            stop(proc)


def query_at(api: int, expr: str, at: float) -> dict[str, float]:
    url = f"http://127.0.0.1:{api}/api/v1/query?" + urllib.parse.urlencode({"query": expr, "time": f"{at:.3f}"})
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return {json.dumps(r["metric"], sort_keys=True): float(r["value"][1]) for r in body["data"]["result"]}


def same(a: dict[str, float], b: dict[str, float]) -> bool:
    return a.keys() == b.keys() and all(
        (math.isnan(a[k]) and math.isnan(b[k])) or math.isclose(a[k], b[k], rel_tol=1e-9) for k in a)


def test_every_dashboard_query_answers_on_a_direct_scrape_and_through_the_collector(scraped: dict[str, int]) -> None:
    total = OK_REQUESTS + FAILED_REQUESTS
    for api in scraped.values():
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            got = promql(api, "sum(llm_requests_total)")
            if got and float(got[0]["value"][1]) >= total:
                break
            time.sleep(0.5)
        assert got and float(got[0]["value"][1]) == total
    time.sleep(3)  # a few more scrapes after the last request: every rate has its points
    at = time.time()
    queries = prometheus_queries()
    assert len(queries) >= 19
    for path, api in scraped.items():
        for title, expr in queries:
            answer, truth = query_at(api, expand(expr), at), query_at(api, expand(unfiltered(expr)), at)
            assert truth, f"{path}: {title}: no data at all for {unfiltered(expr)!r}"
            assert same(answer, truth), f"{path}: {title}: {expr!r} gave {answer}, the app's data is {truth}"
        values_url = (f"http://127.0.0.1:{api}/api/v1/label/service_name/values?"
                      + urllib.parse.urlencode({"match[]": '{__name__=~"llm_requests_total|target_info"}'}))
        with urllib.request.urlopen(values_url, timeout=10) as response:
            assert SERVICE in json.load(response)["data"], f"{path}: the service variable would be empty"
    # The bug this fixes: on a direct scrape the service filter alone finds nothing.
    _, requests = queries[0]
    assert query_at(scraped["direct"], expand(JOIN_BRANCH.sub("", requests)), at) == {}
