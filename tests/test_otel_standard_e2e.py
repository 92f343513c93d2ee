"""A deployment's own OTEL_* variables, through the real launcher, the real hook and real OTLP exporters
to the real receiver: per-signal values reach their signal's exporter, `otlp_proto_http` is honoured,
URL credentials arrive as a Basic header and are never printed."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator

import pytest
from conftest import PYTHON, ROOT, run_launcher
from otlp_receiver import Fault, Receiver

APP = str(ROOT / "tests" / "apps" / "rel_emit.py")  # 3 spans, a metric, a log record
PROTOCOLS = ["grpc", "http/protobuf"]


def deployment(rcv: Receiver, protocol: str, **extra: str) -> dict[str, str]:
    port = rcv.grpc_port if protocol == "grpc" else rcv.http_port
    return {"OTEL_SERVICE_NAME": "std-e2e", "OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "otlp",
            "OTEL_LOGS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": protocol, **extra}


def run_app(env: dict[str, str], *flags: str) -> subprocess.CompletedProcess[str]:
    result = run_launcher([*flags, "--", PYTHON, APP, "3"], env)
    assert result.returncode == 0, result.stderr
    return result


def seen(rcv: Receiver, signal: str, header: str) -> set[str | None]:
    return {r.headers.get(header) for r in rcv.requests() if r.signal == signal}


@pytest.fixture
def rcv() -> Iterator[Receiver]:
    with Receiver() as receiver:
        yield receiver


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_per_signal_headers_reach_their_signal_and_the_general_ones_the_others(rcv: Receiver, protocol: str) -> None:
    run_app(deployment(rcv, protocol, OTEL_EXPORTER_OTLP_HEADERS="authorization=Bearer other",
                       OTEL_EXPORTER_OTLP_TRACES_HEADERS="authorization=Bearer good"))
    assert len(rcv.spans()) == 3
    assert seen(rcv, "traces", "authorization") == {"Bearer good"}
    assert seen(rcv, "metrics", "authorization") == seen(rcv, "logs", "authorization") == {"Bearer other"}


def test_per_signal_compression_reaches_the_http_exporter(rcv: Receiver) -> None:
    run_app(deployment(rcv, "http/protobuf", OTEL_EXPORTER_OTLP_COMPRESSION="gzip",
                       OTEL_EXPORTER_OTLP_METRICS_COMPRESSION="none"))
    assert seen(rcv, "traces", "content-encoding") == seen(rcv, "logs", "content-encoding") == {"gzip"}
    assert seen(rcv, "metrics", "content-encoding") <= {None, "identity"}
    assert rcv.metrics()


def test_per_signal_compression_reaches_the_grpc_exporter() -> None:
    # gRPC hides a request's grpc-encoding from the handler: this receiver refuses gzip instead.
    with Receiver(grpc_identity_only=True) as rcv:
        run_app(deployment(rcv, "grpc", OTEL_EXPORTER_OTLP_COMPRESSION="gzip",
                           OTEL_EXPORTER_OTLP_TRACES_COMPRESSION="none"))
        assert len(rcv.spans()) == 3  # uncompressed, as its own variable says
        assert not rcv.metrics() and not rcv.logs()  # gzip, as the general variable says: refused


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_per_signal_timeout_reaches_the_exporter(rcv: Receiver, protocol: str) -> None:
    rcv.set_fault(Fault.SLOW, delay=2.5)  # every answer takes 2.5 s
    run_app(deployment(rcv, protocol, OTEL_LOGS_EXPORTER="none", OTEL_EXPORTER_OTLP_TIMEOUT="20",
                       OTEL_EXPORTER_OTLP_TRACES_TIMEOUT="1", OTEL_BSP_EXPORT_TIMEOUT="1000",
                       CRYOSTORM_SHUTDOWN_TIMEOUT_MILLIS="15000"))
    traces = [r for r in rcv.requests() if r.signal == "traces"]
    metrics = [r for r in rcv.requests() if r.signal == "metrics"]
    assert traces and not any(r.accepted for r in traces)  # gave up after its own 1 s
    assert metrics and all(r.accepted for r in metrics)  # waited, within the general 20 s


def test_exporter_names_that_fix_the_transport(rcv: Receiver) -> None:
    result = run_app({"OTEL_SERVICE_NAME": "std-e2e", "OTEL_TRACES_EXPORTER": "otlp_proto_http",
                      "OTEL_METRICS_EXPORTER": "otlp_proto_grpc", "OTEL_LOGS_EXPORTER": "none",
                      "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{rcv.http_endpoint}/v1/traces",
                      "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": rcv.grpc_endpoint,
                      "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    assert len(rcv.spans()) == 3 and {s.transport for s in rcv.spans()} == {"http"}
    assert rcv.metrics() and {r.transport for r in rcv.requests() if r.signal == "metrics"} == {"grpc"}
    assert "traceback" not in result.stderr.lower()


PASSWORD = "pw7e1c0d9a"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_url_credentials_arrive_as_basic_and_are_never_printed(protocol: str) -> None:
    basic = "Basic " + base64.b64encode(f"agent:{PASSWORD}".encode()).decode()
    with Receiver(required_headers={"authorization": basic}) as rcv:
        env = deployment(rcv, protocol)
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = env["OTEL_EXPORTER_OTLP_ENDPOINT"].replace("//", f"//agent:{PASSWORD}@")
        outputs = [run_app(env, "--verbose")]
        assert len(rcv.spans()) == 3 and rcv.metrics() and rcv.logs()
        assert seen(rcv, "traces", "authorization") == {basic}
    for args in (["check-config"], ["check-config", "--json"], ["check-config", "--strict"],
                 *(["print-env", "--format", fmt] for fmt in ("shell", "dotenv", "json", "docker", "k8s"))):
        outputs.append(run_launcher(args, env))
        assert outputs[-1].returncode == 0, outputs[-1].stderr
    for result in outputs:
        for text in (result.stdout, result.stderr):
            assert PASSWORD not in text and basic.split()[1] not in text
    assert f"127.0.0.1:{rcv.grpc_port if protocol == 'grpc' else rcv.http_port}" in outputs[0].stderr


def test_url_credentials_next_to_an_authorization_header_are_refused() -> None:
    result = run_launcher(["--", PYTHON, "-c", "print('ran')"], {
        "OTEL_TRACES_EXPORTER": "otlp", "OTEL_SERVICE_NAME": "x",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://agent:{PASSWORD}@collector:4317",
        "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer t"})
    assert result.returncode == 2 and "ran" not in result.stdout
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in result.stderr and "OTEL_EXPORTER_OTLP_HEADERS" in result.stderr
    assert PASSWORD not in result.stderr and "Traceback" not in result.stderr


def test_check_config_strict_shows_general_and_per_signal_headers_masked() -> None:
    env = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "otlp", "OTEL_LOGS_EXPORTER": "otlp",
           "OTEL_SERVICE_NAME": "x", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317",
           "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer other-5f1d",
           "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "authorization=Bearer good-8c2e"}
    result = run_launcher(["check-config", "--strict", "--json"], env)
    assert result.returncode == 0, result.stderr
    rows = {r["setting"]: r for r in json.loads(result.stdout)["settings"]}
    assert rows["otlp.headers.authorization"] == {"setting": "otlp.headers.authorization", "value": "****",
                                                  "source": "OTEL_EXPORTER_OTLP_HEADERS"}
    assert rows["tracing.headers.authorization"] == {"setting": "tracing.headers.authorization", "value": "****",
                                                     "source": "OTEL_EXPORTER_OTLP_TRACES_HEADERS"}
    table = run_launcher(["check-config", "--strict"], env)
    assert table.returncode == 0 and "tracing.headers" in table.stderr
    for text in (result.stdout, result.stderr, table.stdout, table.stderr):
        assert "good-8c2e" not in text and "other-5f1d" not in text


def test_the_program_gets_stable_http_semconv_unless_it_chose_its_own() -> None:
    app = str(ROOT / "tests" / "apps" / "show_env.py")
    result = run_launcher(["--quiet", "--", PYTHON, app])
    assert "OTEL_SEMCONV_STABILITY_OPT_IN=http\n" in result.stdout
    result = run_launcher(["--quiet", "--", PYTHON, app], {"OTEL_SEMCONV_STABILITY_OPT_IN": "http/dup"})
    assert "OTEL_SEMCONV_STABILITY_OPT_IN=http/dup\n" in result.stdout
