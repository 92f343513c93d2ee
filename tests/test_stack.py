"""Static checks for the local observability stack under ``stack/``.

Docker cannot run in CI, so nothing here starts a container. Instead the files
are checked for internal consistency (ports, service names, datasource uids,
pipeline wiring) and validated with the real tools:

* ``promtool check config`` (Debian package ``prometheus``),
* ``docker-compose -f stack/docker-compose.yml config -q`` (Debian package
  ``docker-compose``; ``docker compose`` v2 is used when v1 is absent).

Neither needs a running Docker engine. A missing tool is a test failure, not a
skip: a skipped validator would silently stop guarding the files.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
STACK = ROOT / "stack"
COMPOSE_FILE = STACK / "docker-compose.yml"
COLLECTOR_FILE = STACK / "otel-collector-config.yaml"
PROMETHEUS_FILE = STACK / "prometheus.yml"
DATASOURCES_FILE = STACK / "grafana" / "provisioning" / "datasources" / "datasources.yml"
DASHBOARD_PROVIDERS_FILE = STACK / "grafana" / "provisioning" / "dashboards" / "dashboards.yml"
DASHBOARD_FILE = STACK / "grafana" / "dashboards" / "llm-app.json"
AGENT_FILE = STACK / "gateway" / "agent-collector.yaml"
GATEWAY_FILE = STACK / "gateway" / "gateway-collector.yaml"
K8S_FILE = STACK / "k8s" / "app-deployment.yaml"
README_FILE = STACK / "README.md"
DOCKERFILE = ROOT / "examples" / "Dockerfile"

TOOL_TIMEOUT = 30

# The app's environment in compose, decided elsewhere and used verbatim.
APP_ENV = {
    "CRYOSTORM_SERVICE__NAME": "llm-app",
    "CRYOSTORM_SERVICE__ENVIRONMENT": "development",
    "CRYOSTORM_EXPORTER_TYPE": "otlp",
    "CRYOSTORM_COLLECTOR": "http://otel-collector:4317",
    "CRYOSTORM_OTLP__PROTOCOL": "grpc",
}

# Prometheus names of the app's instruments after the collector's prometheus
# exporter translated them (see stack/README.md, "Metric names").
_COUNTERS = ("llm_requests", "llm_tokens_input", "llm_tokens_output", "llm_cost", "llm_errors")
_HISTOGRAMS = (
    "llm_request_duration_seconds",
    "llm_temperature",
    "llm_top_p",
    "http_server_request_duration_seconds",
)
ALLOWED_METRICS = frozenset(
    [f"{name}_total" for name in _COUNTERS]
    + [f"{name}_{suffix}" for name in _HISTOGRAMS for suffix in ("bucket", "sum", "count")]
    + ["llm_active_sessions", "target_info"]  # target_info: the service of a directly scraped app
)
# Every instrument the app creates should appear on the dashboard at least once.
INSTRUMENT_PREFIXES = (*(f"{n}_total" for n in _COUNTERS), *_HISTOGRAMS, "llm_active_sessions")

_PROMQL_WORDS_TEXT = """
    sum avg min max count count_values stddev stdvar topk bottomk quantile group
    rate irate increase delta idelta deriv predict_linear resets changes
    histogram_quantile histogram_count histogram_sum histogram_fraction
    clamp clamp_min clamp_max abs ceil floor round exp ln log2 log10 sqrt sgn
    avg_over_time min_over_time max_over_time sum_over_time count_over_time
    last_over_time quantile_over_time absent absent_over_time
    label_replace label_join label_values vector scalar time timestamp sort sort_desc
    by without on ignoring group_left group_right bool and or unless offset
"""
PROMQL_WORDS = frozenset(_PROMQL_WORDS_TEXT.split())


# --------------------------------------------------------------------------- helpers


def _load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _load_yaml(COMPOSE_FILE)


@pytest.fixture(scope="module")
def collector() -> dict[str, Any]:
    return _load_yaml(COLLECTOR_FILE)


@pytest.fixture(scope="module")
def prometheus() -> dict[str, Any]:
    return _load_yaml(PROMETHEUS_FILE)


@pytest.fixture(scope="module")
def datasources() -> list[dict[str, Any]]:
    return _load_yaml(DATASOURCES_FILE)["datasources"]


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))


def _port_of(endpoint: str) -> int:
    """Port of ``host:port`` or of a URL."""
    if "://" in endpoint:
        port = urllib.parse.urlsplit(endpoint).port
        assert port is not None, f"no port in {endpoint!r}"
        return port
    return int(endpoint.rsplit(":", 1)[1])


def _host_of(endpoint: str) -> str:
    if "://" in endpoint:
        return urllib.parse.urlsplit(endpoint).hostname or ""
    return endpoint.rsplit(":", 1)[0]


def _published(service: dict[str, Any]) -> dict[int, int]:
    """container port -> host port for the short ``"HOST:CONTAINER[/proto]"`` syntax."""
    mapping: dict[int, int] = {}
    for entry in service.get("ports", []):
        text = str(entry).split("/", 1)[0]
        parts = text.split(":")
        assert len(parts) in (2, 3), f"publish ports explicitly as HOST:CONTAINER, got {entry!r}"
        mapping[int(parts[-1])] = int(parts[-2])
    return mapping


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, dict):
        return {k: str(v) for k, v in env.items()}
    return dict(item.split("=", 1) for item in env)


def _collector_problems(cfg: dict[str, Any]) -> list[str]:
    """Wiring errors of a collector config; an empty list means consistent."""
    problems: list[str] = []
    service = cfg.get("service") or {}
    pipelines = service.get("pipelines") or {}
    if not pipelines:
        problems.append("service.pipelines is empty")
    used: dict[str, set[str]] = {"receivers": set(), "processors": set(), "exporters": set()}
    for name, pipeline in pipelines.items():
        for kind in ("receivers", "exporters"):
            if not pipeline.get(kind):
                problems.append(f"pipeline {name} has no {kind}")
        for kind, names in used.items():
            for component in pipeline.get(kind) or []:
                names.add(component)
                if component not in (cfg.get(kind) or {}):
                    problems.append(f"pipeline {name} uses undefined {kind[:-1]} {component!r}")
        processors = pipeline.get("processors") or []
        if not processors or processors[0] != "memory_limiter":
            problems.append(f"pipeline {name} must start with memory_limiter, has {processors}")
    for kind, names in used.items():
        for component in cfg.get(kind) or {}:
            if component not in names:
                problems.append(f"{kind[:-1]} {component!r} is defined but no pipeline uses it")
    enabled = service.get("extensions") or []
    defined = cfg.get("extensions") or {}
    problems += [f"extension {e!r} is enabled but not defined" for e in enabled if e not in defined]
    problems += [f"extension {e!r} is defined but not enabled" for e in defined if e not in enabled]
    return problems


def _metric_names(expr: str) -> set[str]:
    """Metric names referenced by a PromQL expression (a deliberately small parser)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\{?\w+\}?", "", text)  # Grafana variables
    text = re.sub(r"\b\d+(\.\d+)?([eE][-+]?\d+)?\b", "", text)  # numbers
    words = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", text))
    return words - PROMQL_WORDS


def _which_compose() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(
            ["docker", "compose", "version"],
            capture_output=True,
            text=True,
            timeout=TOOL_TIMEOUT,
            check=False,
        )
        if probe.returncode == 0:
            return ["docker", "compose"]
    pytest.fail(
        "no Compose implementation found: install the Debian package `docker-compose` "
        "(apt-get install -y docker-compose) so the compose file can be validated"
    )


def _which_promtool() -> str:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail(
            "promtool not found: install the Debian package `prometheus` "
            "(apt-get install -y prometheus) so prometheus.yml can be validated"
        )
    return tool


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    return subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=TOOL_TIMEOUT, check=False
    )


# --------------------------------------------------------------------------- collector wiring


@pytest.mark.parametrize("path", [COLLECTOR_FILE, AGENT_FILE, GATEWAY_FILE], ids=lambda p: p.name)
def test_collector_config_is_wired_consistently(path: Path) -> None:
    assert _collector_problems(_load_yaml(path)) == []


def _drop_memory_limiter(cfg: dict[str, Any]) -> None:
    cfg["service"]["pipelines"]["traces"]["processors"].remove("memory_limiter")


def _add_dead_exporter(cfg: dict[str, Any]) -> None:
    cfg["exporters"]["otlp/unused"] = {"endpoint": "nowhere:4317"}


def _use_undefined_exporter(cfg: dict[str, Any]) -> None:
    cfg["service"]["pipelines"]["metrics"]["exporters"].append("prometheusremotewrite")


def _enable_undefined_extension(cfg: dict[str, Any]) -> None:
    cfg["service"]["extensions"].append("oauth2client")


@pytest.mark.parametrize(
    "mutate",
    [_drop_memory_limiter, _add_dead_exporter, _use_undefined_exporter, _enable_undefined_extension],
)
def test_collector_checker_catches_broken_wiring(collector: dict[str, Any], mutate: Any) -> None:
    broken = copy.deepcopy(collector)
    mutate(broken)
    assert _collector_problems(broken), f"{mutate.__name__} went unnoticed"


def test_collector_pipelines_cover_all_signals(collector: dict[str, Any]) -> None:
    pipelines = collector["service"]["pipelines"]
    assert set(pipelines) == {"traces", "metrics", "logs"}
    for pipeline in pipelines.values():
        assert pipeline["receivers"] == ["otlp"]
        assert pipeline["processors"] == ["memory_limiter", "batch", "resource"]
    assert "otlp/jaeger" in pipelines["traces"]["exporters"]
    assert "prometheus" in pipelines["metrics"]["exporters"]
    assert "otlphttp/loki" in pipelines["logs"]["exporters"]
    limiter = collector["processors"]["memory_limiter"]
    assert {"check_interval", "limit_mib", "spike_limit_mib"} <= set(limiter)
    assert limiter["spike_limit_mib"] < limiter["limit_mib"]
    prom = collector["exporters"]["prometheus"]
    assert prom["resource_to_telemetry_conversion"]["enabled"] is True


def test_gateway_agent_routes_by_trace_id() -> None:
    agent = _load_yaml(AGENT_FILE)
    gateway = _load_yaml(GATEWAY_FILE)
    lb = agent["exporters"]["loadbalancing"]
    assert lb["routing_key"] == "traceID"
    assert lb["resolver"]["dns"]["hostname"] == "collector-gateway-headless"
    assert lb["protocol"]["otlp"]["tls"]["insecure"] is True
    assert "endpoint" not in lb["protocol"]["otlp"], "the loadbalancing exporter sets the endpoint itself"
    gateway_grpc = gateway["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    assert lb["resolver"]["dns"]["port"] == _port_of(gateway_grpc)
    assert agent["service"]["pipelines"]["traces"]["exporters"] == ["loadbalancing"]


def test_gateway_tail_sampling_policies() -> None:
    gateway = _load_yaml(GATEWAY_FILE)
    processors = gateway["service"]["pipelines"]["traces"]["processors"]
    assert processors.index("tail_sampling") < processors.index("batch")
    policies = {p["type"]: p for p in gateway["processors"]["tail_sampling"]["policies"]}
    assert policies["status_code"]["status_code"]["status_codes"] == ["ERROR"]
    assert policies["latency"]["latency"]["threshold_ms"] == 500
    assert policies["probabilistic"]["probabilistic"]["sampling_percentage"] == 10
    exporters = gateway["exporters"]
    assert [e["endpoint"] for e in exporters.values()] == ["backend.example:4317"]


# --------------------------------------------------------------------------- ports and names agree


def test_collector_ports_are_published(compose: dict[str, Any], collector: dict[str, Any]) -> None:
    published = _published(compose["services"]["otel-collector"])
    endpoints = [
        collector["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"],
        collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"],
        collector["exporters"]["prometheus"]["endpoint"],
        *(ext["endpoint"] for ext in collector["extensions"].values()),
    ]
    ports = [_port_of(e) for e in endpoints]
    assert sorted(ports) == [1777, 4317, 4318, 8889, 13133, 55679]
    for endpoint, port in zip(endpoints, ports, strict=True):
        assert _host_of(endpoint) == "0.0.0.0", f"{endpoint} is unreachable from other containers"
        assert published.get(port) == port, f"collector port {port} is not published as {port}:{port}"


def test_collector_self_metrics_port(
    compose: dict[str, Any], collector: dict[str, Any], prometheus: dict[str, Any]
) -> None:
    (reader,) = collector["service"]["telemetry"]["metrics"]["readers"]
    exporter = reader["pull"]["exporter"]["prometheus"]
    assert exporter["host"] == "0.0.0.0"
    port = exporter["port"]
    assert _published(compose["services"]["otel-collector"]).get(port) == port
    assert f"otel-collector:{port}" in _scrape_targets(prometheus, "otel-collector")


def _scrape_targets(prometheus: dict[str, Any], job: str) -> list[str]:
    for scrape in prometheus["scrape_configs"]:
        if scrape["job_name"] == job:
            return [t for sc in scrape.get("static_configs", []) for t in sc["targets"]]
    pytest.fail(f"prometheus.yml has no job {job!r}")


def test_prometheus_scrapes_the_exporter_port(
    compose: dict[str, Any], collector: dict[str, Any], prometheus: dict[str, Any]
) -> None:
    port = _port_of(collector["exporters"]["prometheus"]["endpoint"])
    assert port == 8889
    targets = _scrape_targets(prometheus, "otel-collector-exporter")
    assert targets == [f"otel-collector:{port}"]
    assert "otel-collector" in compose["services"]
    assert _published(compose["services"]["otel-collector"]).get(port) == port
    assert prometheus["global"]["scrape_interval"] in ("5s", "15s")


def test_app_environment_points_at_the_collector(compose: dict[str, Any], collector: dict[str, Any]) -> None:
    app = compose["services"]["llm-app"]
    env = _env(app)
    assert {k: env.get(k) for k in APP_ENV} == APP_ENV
    url = urllib.parse.urlsplit(env["CRYOSTORM_COLLECTOR"])
    assert url.hostname in compose["services"]
    assert url.hostname == "otel-collector"
    assert url.port == _port_of(collector["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"])
    assert app["depends_on"]["otel-collector"]["condition"] in ("service_started", "service_healthy")
    assert app["init"] is True, "the program is PID 1 after exec: run it behind an init"
    assert app["build"] == {"context": "..", "dockerfile": "examples/Dockerfile"}
    assert (STACK / app["build"]["context"] / app["build"]["dockerfile"]).resolve() == DOCKERFILE
    assert _published(app) == {8000: 8000}


def test_collector_exporters_target_compose_services(
    compose: dict[str, Any], collector: dict[str, Any]
) -> None:
    services = compose["services"]
    jaeger = collector["exporters"]["otlp/jaeger"]["endpoint"]
    assert _host_of(jaeger) == "jaeger"
    assert _port_of(jaeger) == 4317
    assert "jaeger" in services
    loki = urllib.parse.urlsplit(collector["exporters"]["otlphttp/loki"]["endpoint"])
    assert (loki.hostname, loki.port, loki.path) == ("loki", 3100, "/otlp")
    assert 3100 in _published(services["loki"])


def test_every_service_is_on_the_named_network(compose: dict[str, Any]) -> None:
    assert compose["networks"]["otel-demo"]["name"] == "otel-demo"
    for name, service in compose["services"].items():
        assert service.get("networks") == ["otel-demo"], name


def test_mounted_config_files_exist_and_match_commands(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (STACK / source).exists(), f"{name} mounts missing {source}"
    mounts = {v.split(":")[0]: v.split(":")[1] for v in services["otel-collector"]["volumes"]}
    config_path = mounts["./otel-collector-config.yaml"]
    assert f"--config={config_path}" in services["otel-collector"]["command"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in services["prometheus"]["volumes"]}
    assert f"--config.file={mounts['./prometheus.yml']}" in services["prometheus"]["command"]


def test_grafana_datasources_point_at_compose_services(
    compose: dict[str, Any], datasources: list[dict[str, Any]]
) -> None:
    services = compose["services"]
    expected = {"prometheus": ("prometheus", 9090), "jaeger": ("jaeger", 16686), "loki": ("loki", 3100)}
    assert {ds["type"] for ds in datasources} == set(expected)
    for ds in datasources:
        host, port = expected[ds["type"]]
        url = urllib.parse.urlsplit(ds["url"])
        assert (url.hostname, url.port) == (host, port), ds["name"]
        assert host in services
        assert port in _published(services[host]), f"{host} does not listen on {port}"
        assert ds["uid"], f"{ds['name']} needs a stable uid"
    uids = [ds["uid"] for ds in datasources]
    assert len(set(uids)) == len(uids)
    for ds in datasources:  # cross-links between datasources use existing uids
        linked = [ds.get("jsonData", {}).get("tracesToLogsV2", {}).get("datasourceUid")]
        linked += [f["datasourceUid"] for f in ds.get("jsonData", {}).get("derivedFields", [])]
        assert {u for u in linked if u} <= set(uids)


def test_grafana_dashboards_are_provisioned_from_the_mounted_folder(compose: dict[str, Any]) -> None:
    providers = _load_yaml(DASHBOARD_PROVIDERS_FILE)["providers"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in compose["services"]["grafana"]["volumes"]}
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    assert [p["options"]["path"] for p in providers] == [mounts["./grafana/dashboards"]]


def test_readme_urls_use_published_ports(compose: dict[str, Any]) -> None:
    readme = README_FILE.read_text(encoding="utf-8")
    host_ports = {h for s in compose["services"].values() for h in _published(s).values()}
    urls = set(re.findall(r"http://localhost:(\d+)", readme))
    assert {"16686", "9090", "3000", "13133", "55679", "8000"} <= urls
    assert {int(p) for p in urls} <= host_ports


# --------------------------------------------------------------------------- images


def test_all_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image = service.get("image")
        assert image, f"{name} needs an explicit image (with a tag)"
        reference = image.split("@", 1)[0]
        repository, sep, tag = reference.rpartition(":")
        assert sep, f"{name}: {image} has no tag"
        assert "/" not in tag, f"{name}: {image} has no tag (the colon belongs to a registry port)"
        assert tag != "latest", f"{name}: {image} floats on latest"
        if "build" not in service:
            assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}: pin an exact version, not {tag!r}"
        assert repository


def test_pinned_majors(compose: dict[str, Any]) -> None:
    images = {name: s["image"] for name, s in compose["services"].items()}
    assert images["otel-collector"].startswith("otel/opentelemetry-collector-contrib:0.")
    assert images["jaeger"].startswith("jaegertracing/jaeger:2.")
    assert images["prometheus"].startswith("prom/prometheus:v3.")
    assert images["loki"].startswith("grafana/loki:3.")
    assert images["grafana"].startswith("grafana/grafana:")


# --------------------------------------------------------------------------- real validators


def test_promtool_accepts_prometheus_config() -> None:
    result = _run([_which_promtool(), "check", "config", str(PROMETHEUS_FILE)], cwd=STACK)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rejects_a_broken_config(tmp_path: Path) -> None:
    broken = tmp_path / "prometheus.yml"
    broken.write_text("global:\n  scrape_interval: often\n", encoding="utf-8")
    result = _run([_which_promtool(), "check", "config", str(broken)], cwd=tmp_path)
    assert result.returncode != 0


def test_compose_file_validates() -> None:
    result = _run([*_which_compose(), "-f", str(COMPOSE_FILE), "config", "-q"], cwd=STACK)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_validator_rejects_a_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text("services:\n  app:\n    image: busybox:1.36\n    init: sometimes\n", encoding="utf-8")
    result = _run([*_which_compose(), "-f", str(broken), "config", "-q"], cwd=tmp_path)
    assert result.returncode != 0


# --------------------------------------------------------------------------- dashboard


def test_metric_name_extraction() -> None:
    expr = 'histogram_quantile(0.95, sum by (le) (rate(foo_bucket{a="b",c=~"$x"}[$__rate_interval])))'
    assert _metric_names(expr) == {"foo_bucket"}
    assert _metric_names("sum(rate(a_total[5m])) / clamp_min(sum(rate(b_total[5m])), 1e-9) * 3600") == {
        "a_total",
        "b_total",
    }


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    panels = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return [p for p in panels if p["type"] != "row"]


def test_dashboard_queries_use_known_metrics(
    dashboard: dict[str, Any], datasources: list[dict[str, Any]]
) -> None:
    uid_type = {ds["uid"]: ds["type"] for ds in datasources}
    seen: set[str] = set()
    for panel in _panels(dashboard):
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            uid = target.get("datasource", panel["datasource"])["uid"]
            assert uid in uid_type, f"panel {panel['title']!r} uses unknown datasource {uid}"
            if uid_type[uid] != "prometheus":
                continue
            names = _metric_names(target["expr"])
            assert names, f"panel {panel['title']!r}: no metric in {target['expr']!r}"
            assert names <= ALLOWED_METRICS, f"panel {panel['title']!r}: unknown {names - ALLOWED_METRICS}"
            seen |= names
    for variable in dashboard["templating"]["list"]:
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        # label_values(METRIC_OR_SELECTOR, LABEL): the second argument is a label name.
        match = re.fullmatch(r"label_values\((.+),\s*\w+\)", query.strip())
        assert match, f"variable {variable['name']!r}: expected label_values(metric, label), got {query!r}"
        assert _metric_names(match.group(1)) <= ALLOWED_METRICS
    missing = [p for p in INSTRUMENT_PREFIXES if not any(n.startswith(p) for n in seen)]
    assert missing == [], "instruments without a panel"


def test_dashboard_has_logs_panel_and_unique_ids(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    logs = [p for p in _panels(dashboard) if p["type"] == "logs"]
    assert logs
    assert logs[0]["targets"][0]["expr"].startswith("{service_name=")


# --------------------------------------------------------------------------- kubernetes and secrets


def _k8s_docs() -> dict[str, dict[str, Any]]:
    with K8S_FILE.open(encoding="utf-8") as fh:
        return {doc["kind"]: doc for doc in yaml.safe_load_all(fh) if doc}


def test_k8s_deployment() -> None:
    docs = _k8s_docs()
    assert set(docs) == {"Deployment", "Service"}
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 30
    (container,) = pod["containers"]
    assert "command" not in container, "keep the image ENTRYPOINT (cryostorm-run --)"
    assert container["args"][0] == "uvicorn"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"

    env = container["env"]
    order = [e["name"] for e in env]
    by_name = {e["name"]: e for e in env}
    field_refs = {
        n: e["valueFrom"]["fieldRef"]["fieldPath"]
        for n, e in by_name.items()
        if "fieldRef" in e.get("valueFrom", {})
    }
    assert field_refs == {
        "NODE_IP": "status.hostIP",
        "POD_NAME": "metadata.name",
        "POD_NAMESPACE": "metadata.namespace",
    }
    assert by_name["CRYOSTORM_EXPORTER_TYPE"]["value"] == "otlp"
    assert by_name["CRYOSTORM_SERVICE__NAME"]["value"]
    assert by_name["CRYOSTORM_COLLECTOR"]["value"] == "http://$(NODE_IP):4317"
    assert (
        by_name["CRYOSTORM_SERVICE__ADDITIONAL_ATTRIBUTES"]["value"]
        == "k8s.pod.name=$(POD_NAME),k8s.namespace.name=$(POD_NAMESPACE)"
    )
    for item in env:  # $(VAR) only expands variables defined earlier in the list
        for ref in re.findall(r"\$\((\w+)\)", item.get("value", "")):
            assert order.index(ref) < order.index(item["name"]), f"{item['name']} uses {ref} before it is set"

    headers = by_name["CRYOSTORM_OTLP__HEADERS"]
    assert "value" not in headers, "OTLP headers carry credentials: never inline them"
    assert {"name", "key"} <= set(headers["valueFrom"]["secretKeyRef"])

    service = docs["Service"]["spec"]
    labels = docs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= labels.items()
    assert docs["Deployment"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    port_names = {p["name"] for p in container["ports"]}
    assert {p["targetPort"] for p in service["ports"]} <= port_names


_SECRET_PATTERNS = [
    re.compile(r"(?i)bearer(\s|%20)+[A-Za-z0-9._~+/-]{12,}"),
    re.compile(
        r"(?i)(api[_-]?key|x-api-key|password|passwd|token|secret)\s*[:=]\s*['\"]?[A-Za-z0-9._~+/-]{8,}"
    ),
    re.compile(r"AKIA[0-9A-Z]{16}"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"\b(ghp|gho|glpat|xox[abp])[-_][A-Za-z0-9_-]{10,}"),
]


def test_no_literal_secrets_in_stack() -> None:
    files = [p for p in STACK.rglob("*") if p.is_file()]
    assert len(files) >= 10
    for path in files:
        text = path.read_text(encoding="utf-8")
        for pattern in _SECRET_PATTERNS:
            match = pattern.search(text)
            assert match is None, f"{path.relative_to(ROOT)} looks like it holds a secret: {match.group(0)!r}"
    secret_like = re.compile(r"(?i)(HEADERS|TOKEN|PASSWORD|SECRET|API_KEY)")
    compose_file = _load_yaml(COMPOSE_FILE)
    for service in compose_file["services"].values():
        assert not [k for k in _env(service) if secret_like.search(k)], "pass secrets via env_file or secrets"
    assert "kind: Secret" not in K8S_FILE.read_text(encoding="utf-8")


def test_secret_scanner_catches_an_inline_token() -> None:
    leaked = "CRYOSTORM_OTLP__HEADERS=authorization=Bearer%20sk_live_0123456789abcdef"
    assert any(p.search(leaked) for p in _SECRET_PATTERNS)


# --------------------------------------------------------------------------- app image


def test_dockerfile_matches_the_stack() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    instructions = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert instructions[0].startswith("FROM python:3.12-slim")
    assert 'ENTRYPOINT ["cryostorm-run", "--"]' in instructions
    cmd = next(json.loads(line[4:]) for line in instructions if line.startswith("CMD "))
    assert cmd[:2] == ["uvicorn", "examples.llm_app:app"]
    assert cmd[cmd.index("--port") + 1] == "8000"
    assert "EXPOSE 8000" in instructions
    user = next(line.split()[1] for line in instructions if line.startswith("USER "))
    assert re.fullmatch(r"[1-9]\d*(:\d+)?", user), "run as a numeric non-root UID"
    assert re.search(r"PYTHONUNBUFFERED=1", text)
    # Instrumentations are installed in the same pip call as cryostorm-run, unpinned: the resolver
    # picks one consistent OpenTelemetry line (a pin from another package's version may not exist).
    install = text[text.index("RUN pip install"):].split("\n\n")[0]
    for package in ("fastapi", "httpx"):
        assert re.search(rf"opentelemetry-instrumentation-{package}(\s|$)", install), package
    assert "==" not in install
    # Every COPY source exists in the repository (the build context is its root).
    for line in instructions:
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"{line}: {source} is not in the repository"
