"""Compatibility with the OpenTelemetry line that is installed: the fallbacks of the few
feature-detected private attributes (README "Private attributes") deliver everything too."""

from __future__ import annotations

import sys

import pytest
from conftest import run_launcher
from otlp_receiver import Receiver

PROGRAM = """
import logging
from opentelemetry import trace
tracer = trace.get_tracer("compat")
for i in range(300):
    with tracer.start_as_current_span(f"plain-{i}"):
        pass
logging.getLogger("compat").warning("plain log")
"""


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_plain_exporters_fallback_delivers_everything(otlp_receiver: Receiver, protocol: str) -> None:
    port = otlp_receiver.grpc_port if protocol == "grpc" else otlp_receiver.http_port
    env = {"CRYOSTORM_EXPORTER_TYPE": "otlp", "CRYOSTORM_COLLECTOR": f"http://127.0.0.1:{port}",
           "CRYOSTORM_OTLP__PROTOCOL": protocol,
           "CRYOSTORM_SERVICE__NAME": "plain", "CRYOSTORM_SERVICE__ENVIRONMENT": "production",
           "_CRYOSTORM_PLAIN_EXPORTERS": "1"}
    result = run_launcher(["--quiet", "--", sys.executable, "-c", PROGRAM], env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "could not use cryostorm's encoder" not in result.stderr
    spans = otlp_receiver.wait_for_spans(300, timeout=30)
    assert sorted(s.name for s in spans) == sorted(f"plain-{i}" for i in range(300))
    otlp_receiver.wait_for_logs("plain log")
