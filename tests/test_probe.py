"""`check-config --probe` against the real OTLP receiver: each failure is named precisely."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest
from otlp_receiver import Receiver, make_self_signed_cert
from typer.testing import CliRunner

from cryostorm_run.cli._app import app
from cryostorm_run.config.loading import load_settings
from cryostorm_run.diagnose.probe import ProbeResult, probe, probe_targets

TOKEN = "Bearer probe-token-1234"


@pytest.fixture(autouse=True)
def _no_ca_bundle_override(monkeypatch: pytest.MonkeyPatch) -> None:
    # A CA bundle in the developer's environment would replace otlp.certificate_file for requests.
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver(required_headers={"authorization": TOKEN}) as rcv:
        yield rcv


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return make_self_signed_cert(tmp_path_factory.mktemp("tls"))


def run_probe(env: dict[str, str], **kwargs: object) -> list[ProbeResult]:
    settings = load_settings({"CRYOSTORM_EXPORTER_TYPE": "otlp", **env}, config_dir=None).settings
    return probe(settings, {}, timeout=3, **kwargs)  # type: ignore[arg-type]


def one(results: list[ProbeResult]) -> ProbeResult:
    assert len(results) == 1, results
    return results[0]


def grpc(rcv: Receiver, **extra: str) -> dict[str, str]:
    return {"CRYOSTORM_COLLECTOR": rcv.grpc_endpoint, **extra}


def http(rcv: Receiver, path: str = "", **extra: str) -> dict[str, str]:
    return {"CRYOSTORM_COLLECTOR": rcv.http_endpoint + path, "CRYOSTORM_OTLP__PROTOCOL": "http/protobuf", **extra}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_ok_over_grpc_is_one_line_for_three_signals(receiver: Receiver) -> None:
    result = one(run_probe(grpc(receiver, CRYOSTORM_OTLP__HEADERS=f"authorization={TOKEN}")))
    assert (result.kind, result.message, result.signals) == ("ok", "OK", ("traces", "metrics", "logs"))
    assert result.url == receiver.grpc_endpoint
    assert {r.signal for r in receiver.requests()} == {"traces", "metrics", "logs"}


def test_ok_over_http_posts_to_each_signal_path(receiver: Receiver) -> None:
    result = one(run_probe(http(receiver, CRYOSTORM_OTLP__HEADERS=f"authorization={TOKEN}")))
    assert result.ok and result.url == receiver.http_endpoint + "/v1/<signal>"
    assert sorted(r.path for r in receiver.requests()) == ["/v1/logs", "/v1/metrics", "/v1/traces"]


def test_probe_span_is_received(receiver: Receiver) -> None:
    env = grpc(receiver, CRYOSTORM_OTLP__HEADERS=f"authorization={TOKEN}", CRYOSTORM_SERVICE__NAME="probed")
    result = one(run_probe(env, send_span=True))
    assert result.message == "OK, test span sent"
    [span] = receiver.wait_for_spans(1)
    assert span.name == "cryostorm-run probe"
    assert span.resource["service.name"] == "probed"


def test_connection_refused() -> None:
    port = closed_port()
    result = one(run_probe({"CRYOSTORM_COLLECTOR": f"http://127.0.0.1:{port}"}))
    assert result.kind == "refused"
    assert result.message == f"connection to 127.0.0.1:{port} refused"
    assert result.hint == f"is the collector running and listening on port {port}?"


def test_receiver_down_is_refused(receiver: Receiver) -> None:
    receiver.down()
    assert one(run_probe(http(receiver))).kind == "refused"


def test_dns_failure() -> None:
    result = one(run_probe({"CRYOSTORM_COLLECTOR": "http://no-such-host.invalid:4317"}))
    assert result.kind == "dns"
    assert result.message.startswith("DNS lookup of no-such-host.invalid ")
    assert result.hint in ("check the host name in the collector URL", "check the host name and this machine's DNS")


def test_wrong_path_is_404(receiver: Receiver) -> None:
    result = one(run_probe(http(receiver, "/wrong", CRYOSTORM_OTLP__HEADERS=f"authorization={TOKEN}")))
    assert (result.kind, result.message) == ("not_found", "HTTP 404 Not Found")
    assert result.url == receiver.http_endpoint + "/wrong/v1/<signal>"
    assert result.hint == "no OTLP receiver at this path: check the collector path (cryostorm adds /v1/<signal>)"


def test_auth_failure_over_http_is_401(receiver: Receiver) -> None:
    result = one(run_probe(http(receiver, CRYOSTORM_OTLP__HEADERS="authorization=wrong")))
    assert (result.kind, result.message) == ("unauthenticated", "HTTP 401 Unauthorized")
    assert result.hint == "check otlp.headers (e.g. the authorization token)"


def test_auth_failure_over_grpc_is_unauthenticated(receiver: Receiver) -> None:
    result = one(run_probe(grpc(receiver)))
    assert result.kind == "unauthenticated"
    assert result.message == "gRPC UNAUTHENTICATED: missing or wrong required header(s): authorization"


@pytest.mark.parametrize("transport", [grpc, http])
def test_tls_endpoint_against_a_plaintext_receiver(receiver: Receiver, transport: object) -> None:
    env = transport(receiver)  # type: ignore[operator]
    env["CRYOSTORM_COLLECTOR"] = env["CRYOSTORM_COLLECTOR"].replace("http://", "https://")
    result = one(run_probe(env))
    assert result.kind == "tls"
    assert result.message.startswith("TLS handshake with 127.0.0.1:")
    assert "for a plaintext collector use an http:// URL" in result.hint


@pytest.mark.parametrize("transport", [grpc, http])
def test_tls_receiver_without_the_ca(cert: tuple[str, str], transport: object) -> None:
    with Receiver(tls=cert) as rcv:
        result = one(run_probe(transport(rcv)))  # type: ignore[operator]
    assert result.kind == "tls"
    assert result.message == f"TLS: the certificate of 127.0.0.1:{result.target.port} is not trusted " \
                             "(self-signed certificate)"
    assert result.hint == "set otlp.certificate_file to the CA bundle that signed the collector's certificate"


@pytest.mark.parametrize("transport", [grpc, http])
def test_tls_receiver_with_the_ca(cert: tuple[str, str], transport: object) -> None:
    with Receiver(tls=cert) as rcv:
        result = one(run_probe({**transport(rcv), "CRYOSTORM_OTLP__CERTIFICATE_FILE": cert[0]}))  # type: ignore[operator]
    assert result.ok, result


def test_plaintext_to_a_tls_receiver(cert: tuple[str, str]) -> None:
    with Receiver(tls=cert) as rcv:
        env = http(rcv)
        env["CRYOSTORM_COLLECTOR"] = env["CRYOSTORM_COLLECTOR"].replace("https://", "http://")
        result = one(run_probe(env))
    assert result.kind == "error"
    assert result.hint == "if the collector serves TLS on this port, use https://"


def test_requests_ca_bundle_trap_is_explained(cert: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    import certifi

    # The exporter's requests session takes REQUESTS_CA_BUNDLE over otlp.certificate_file: so does the probe.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    with Receiver(tls=cert) as rcv:
        settings = load_settings({"CRYOSTORM_EXPORTER_TYPE": "otlp", **http(rcv),
                                  "CRYOSTORM_OTLP__CERTIFICATE_FILE": cert[0]}, config_dir=None).settings
        [result] = probe(settings, os.environ, timeout=3)
    assert result.kind == "tls"
    assert result.message.endswith("(certificate not trusted: self-signed certificate)")
    assert result.hint == ("REQUESTS_CA_BUNDLE is set: requests verifies with it instead of otlp.certificate_file; "
                           "unset it for the program, or point it at the collector's CA bundle")


def test_identical_endpoints_are_probed_once_and_signals_apart_separately(receiver: Receiver) -> None:
    env = {"CRYOSTORM_COLLECTOR": receiver.grpc_endpoint, "CRYOSTORM_LOGGING__COLLECTOR": "http://127.0.0.1:9",
           "CRYOSTORM_METRICS__EXPORTER_TYPE": "console"}
    settings = load_settings({"CRYOSTORM_EXPORTER_TYPE": "otlp", **env}, config_dir=None).settings
    assert [(t.signals, t.base_url) for t in probe_targets(settings)] == [
        (("traces",), receiver.grpc_endpoint), (("logs",), "http://127.0.0.1:9")]


def test_check_config_probe_exits_3_and_reports_on_stderr() -> None:
    port = closed_port()
    env = {"CRYOSTORM_EXPORTER_TYPE": "otlp", "CRYOSTORM_SERVICE__NAME": "s", "CRYOSTORM_COLLECTOR": f"http://127.0.0.1:{port}"}
    result = CliRunner().invoke(app, ["check-config", "--probe", "--probe-timeout", "1"], env=env)
    assert result.exit_code == 3
    assert result.stdout == ""
    assert "cryostorm-run: probe (timeout 1 s): 1 failed\n" in result.stderr
    assert (f"  FAIL traces, metrics, logs -> grpc http://127.0.0.1:{port}: connection to 127.0.0.1:{port} refused\n"
            f"       is the collector running and listening on port {port}?\n") in result.stderr


def test_check_config_probe_ok_and_json(receiver: Receiver) -> None:
    env = {"CRYOSTORM_EXPORTER_TYPE": "otlp", "CRYOSTORM_SERVICE__NAME": "s", **grpc(receiver),
           "CRYOSTORM_OTLP__HEADERS": f"authorization={TOKEN}"}
    result = CliRunner().invoke(app, ["check-config", "--probe"], env=env)
    assert result.exit_code == 0, result.stderr
    assert f"  ok   traces, metrics, logs -> grpc {receiver.grpc_endpoint}: OK\n" in result.stderr
    result = CliRunner().invoke(app, ["check-config", "--json", "--probe"], env=env)
    assert json.loads(result.stdout)["probe"] == [
        {"signals": ["traces", "metrics", "logs"], "protocol": "grpc", "url": receiver.grpc_endpoint, "ok": True,
         "kind": "ok", "message": "OK", "hint": ""}]


def test_nothing_to_probe_with_the_console_exporter() -> None:
    result = CliRunner().invoke(app, ["check-config", "--probe"], env={})
    assert result.exit_code == 0
    assert "cryostorm-run: probe: no signal exports with OTLP, nothing to probe" in result.stderr


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_a_port_that_never_answers_times_out_once(protocol: str) -> None:
    with socket.socket() as silent:  # accepts connections (backlog) and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        settings = load_settings({"CRYOSTORM_EXPORTER_TYPE": "otlp", "CRYOSTORM_COLLECTOR": f"http://127.0.0.1:{port}",
                                  "CRYOSTORM_OTLP__PROTOCOL": protocol}, config_dir=None).settings
        result = one(probe(settings, {}, timeout=0.5))
    assert (result.kind, result.message) == ("timeout", "no answer within 0.5 s")
    assert result.hint == "the collector is slow or overloaded, or this port is not an OTLP receiver"


def test_the_time_left_runs_out_at_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    from cryostorm_run.diagnose import probe_types

    monkeypatch.setattr(probe_types.time, "monotonic", lambda: 100.0)
    assert probe_types.remaining(100.5) == 0.5
    for deadline in (100.0, 99.0):  # at the deadline, nothing is left
        with pytest.raises(TimeoutError, match=r"^timed out$"):
            probe_types.remaining(deadline)
    failure = probe_types.ProbeFailure("refused", "connection refused", "start the collector")
    assert (str(failure), failure.kind, failure.message, failure.hint) == (
        "connection refused", "refused", "connection refused", "start the collector")
