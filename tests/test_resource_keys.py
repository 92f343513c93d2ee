"""OTEL_RESOURCE_ATTRIBUTES keys are taken as written, as the SDK takes them (it percent-decodes only the
values): found by the differential test (tests/test_differential.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import PYTHON, run_launcher
from otlp_receiver import Receiver

from cryostorm_run import load_settings
from cryostorm_run.common.runtime import parse_pairs, runtime_from_env
from cryostorm_run.launch.envmap import settings_env


def test_a_percent_encoded_key_stays_as_written_and_its_value_is_decoded() -> None:
    env = settings_env(load_settings({"OTEL_RESOURCE_ATTRIBUTES": "k%2Cx=v%3Dy,team=core"}, config_dir=None).settings)
    attributes = runtime_from_env(env).resource_attributes
    assert attributes["k%2Cx"] == "v=y" and attributes["team"] == "core"
    assert "k,x" not in attributes


def test_header_names_are_still_decoded_as_the_exporters_decode_them() -> None:
    assert parse_pairs("x%2Dkey=a%20b") == {"x-key": "a b"}
    assert parse_pairs("x%2Dkey=a%20b", decode_keys=False) == {"x%2Dkey": "a b"}


# -- the process identity: a user-set `service.instance.id` / `process.pid` wins, as in the SDK's Resource.create --

FORK_PROGRAM = """
import os
from opentelemetry import trace
tracer = trace.get_tracer("identity")
provider = trace.get_tracer_provider()
with tracer.start_as_current_span("before-fork"):
    pass
assert provider.force_flush(20_000)
pid = os.fork()
if pid == 0:
    with tracer.start_as_current_span("in-child"):
        pass
    os._exit(0 if provider.force_flush(20_000) else 3)
os.waitpid(pid, 0)
with tracer.start_as_current_span("after-fork"):
    pass
print(os.getpid(), pid)
"""


def _resource(env: dict[str, str]) -> dict[str, object]:
    from cryostorm_run.export.resource import build_resource

    settings = load_settings(env, config_dir=None).settings
    return dict(build_resource(runtime_from_env(settings_env(settings))).attributes)


def test_a_user_set_instance_id_and_pid_are_kept_as_written() -> None:
    """The OpenTelemetry Operator injects `service.instance.id` through OTEL_RESOURCE_ATTRIBUTES: kept, not
    replaced by a random UUID; a user's `process.pid` is kept as written too (the SDK's Resource.create keeps
    both). Break checked: build_resource spreading `_process_identity()` last -> a UUID and the real pid."""
    import os

    attributes = _resource({"OTEL_RESOURCE_ATTRIBUTES": "service.instance.id=pod-abc-1,process.pid=7"})
    assert (attributes["service.instance.id"], attributes["process.pid"]) == ("pod-abc-1", "7")
    generated = _resource({"OTEL_RESOURCE_ATTRIBUTES": "team=core"})  # the control: none set, one generated
    assert generated["service.instance.id"] != "pod-abc-1" and generated["process.pid"] == os.getpid()


def test_an_instance_id_from_the_otel_config_file_is_kept(tmp_path: Path) -> None:
    config = tmp_path / "otel.yaml"
    config.write_text('file_format: "1.1"\nresource:\n  attributes:\n    - name: service.instance.id\n'
                      '      value: from-the-file\n    - name: process.pid\n      value: 42\n      type: int\n')
    attributes = _resource({"OTEL_CONFIG_FILE": str(config)})
    assert (attributes["service.instance.id"], attributes["process.pid"]) == ("from-the-file", 42)


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_the_users_instance_id_arrives_from_every_process(otlp_receiver: Receiver, protocol: str) -> None:
    """What the collector gets, before and after a fork (the SDK's own fork refresh merges a fresh UUID on
    top of the resource on 1.45: the user's id still wins); the pid stays each process's own.
    Break checked: build_resource spreading `_process_identity()` last -> every span had a random id."""
    port = otlp_receiver.grpc_port if protocol == "grpc" else otlp_receiver.http_port
    env = {"CRYOSTORM_EXPORTER_TYPE": "otlp", "CRYOSTORM_COLLECTOR": f"http://127.0.0.1:{port}",
           "CRYOSTORM_OTLP__PROTOCOL": protocol, "CRYOSTORM_METRICS__ENABLED": "false",
           "CRYOSTORM_LOGGING__ENABLED": "false", "OTEL_RESOURCE_ATTRIBUTES": "service.instance.id=pod-abc-1"}
    result = run_launcher(["--quiet", "--", PYTHON, "-c", FORK_PROGRAM], env, timeout=90)
    assert result.returncode == 0, result.stderr
    parent, child = (int(x) for x in result.stdout.split())
    names = {"before-fork", "in-child", "after-fork"}
    spans = {s.name: s for s in otlp_receiver.wait_for_spans(lambda got: names <= {s.name for s in got}, timeout=30)}
    assert {s.resource["service.instance.id"] for s in spans.values()} == {"pod-abc-1"}
    pids = {name: s.resource["process.pid"] for name, s in spans.items()}
    assert pids == {"before-fork": parent, "in-child": child, "after-fork": parent}
