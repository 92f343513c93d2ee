"""An OTEL_* variable set to the empty string is as if unset (the specification; compose files write
`X=${X:-}`): never refused, never passed on to the program's SDK (which fails on some)."""

from __future__ import annotations

import sys

from conftest import run_launcher

EMPTY = ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG",
         "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_TRACES_EXPORTER", "OTEL_BSP_MAX_QUEUE_SIZE",
         "OTEL_PROPAGATORS", "OTEL_EXPORTER_OTLP_CERTIFICATE", "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
         "OTEL_EXPORTER_OTLP_TRACES_INSECURE", "OTEL_METRICS_EXEMPLAR_FILTER", "OTEL_RESOURCE_ATTRIBUTES"]

PROGRAM = """
import os
from opentelemetry import metrics, trace
with trace.get_tracer("t").start_as_current_span("s"):
    metrics.get_meter("m").create_counter("c").add(1)
print(sorted(k for k, v in os.environ.items() if k.startswith("OTEL_") and not v))
print(os.environ["OTEL_SERVICE_NAME"], os.environ["OTEL_TRACES_SAMPLER"])
"""


def test_empty_standard_variables_are_unset_for_the_launcher_and_the_program() -> None:
    env = {**dict.fromkeys(EMPTY, ""), "CRYOSTORM_EXPORTER_TYPE": "console"}
    result = run_launcher(["--quiet", "--", sys.executable, "-c", PROGRAM], env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[:2] == ["[]", "unknown-service parentbased_always_on"], result.stdout
    # the metrics SDK ran (an empty OTEL_METRICS_EXEMPLAR_FILTER passed on made it raise, metrics off)
    assert "cryostorm:" not in result.stderr, result.stderr


def test_check_config_shows_the_defaults_where_a_variable_is_empty() -> None:
    result = run_launcher(["check-config", "--json"], env={"OTEL_SERVICE_NAME": "", "OTEL_TRACES_SAMPLER_ARG": ""})
    assert result.returncode == 0, result.stderr
    assert '"source": "OTEL_SERVICE_NAME"' not in result.stdout
