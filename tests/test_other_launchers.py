"""cryostorm-run installed beside another launcher: `opentelemetry-instrument` in the same environment works as
without cryostorm, and `cryostorm-run -- opentelemetry-instrument ...` says what runs.

Installed, cryostorm's distro and configurator are entry points that `opentelemetry-instrument` finds too, and it
takes the first of each it finds. It took cryostorm's: the program's spans sat in cryostorm's queue, which nothing
flushed without cryostorm's hook, and were lost at exit without a word (no output with OTEL_TRACES_EXPORTER=console).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CRYOSTORM_RUN, PYTHON, child_env
from otlp_receiver import Receiver

INSTRUMENT = str(Path(sys.executable).parent / "opentelemetry-instrument")

PROGRAM = """
import os, sys
from opentelemetry import trace
with trace.get_tracer("app").start_as_current_span("work"):
    pass
print("hook" if "cryostorm_run.hook.bootstrap" in sys.modules else "no hook", os.environ.get("OTEL_TRACES_EXPORTER"))
"""


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # Not the logging instrumentation: on Python 3.12 contrib 0.66b1's log handler starts a thread in its flush
    # at interpreter exit and plain opentelemetry-instrument prints that RuntimeError's traceback (upstream's).
    env = {"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "logging", **env}
    done = subprocess.run(argv, env=child_env(env), capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return done


@pytest.mark.parametrize("configurator", ["first found", "named cryostorm"])
def test_opentelemetry_instrument_beside_cryostorm_delivers_the_programs_spans(otlp_receiver: Receiver,
                                                                               configurator: str) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.grpc_endpoint, "OTEL_EXPORTER_OTLP_INSECURE": "true",
           "OTEL_SERVICE_NAME": "beside", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"}
    if configurator == "named cryostorm":  # asked for by name: cryostorm's providers, flushed at exit
        env["OTEL_PYTHON_CONFIGURATOR"] = "cryostorm"
    done = _run([INSTRUMENT, PYTHON, "-c", PROGRAM], env)
    assert done.stdout.split()[:2] == ["no", "hook"], done.stdout
    [span] = otlp_receiver.wait_for_spans("work")
    assert span.resource["service.name"] == "beside"


def test_the_named_configurator_reads_exporter_lists_and_entry_point_names_as_the_sdk_does(
        otlp_receiver: Receiver) -> None:
    # OTEL_TRACES_EXPORTER=otlp_proto_http,console: the SDK's entry-point name and a list, read without the
    # launcher. Before: "unknown traces exporter 'otlp_proto_http'", upstream's "Configuration of cryostorm
    # failed" traceback, and the program ran without telemetry.
    env = {"OTEL_PYTHON_CONFIGURATOR": "cryostorm", "OTEL_TRACES_EXPORTER": "otlp_proto_http,console_json",
           "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{otlp_receiver.http_endpoint}/v1/traces",
           "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",  # the name's transport wins, as in the SDK
           "OTEL_SERVICE_NAME": "named", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"}
    done = _run([INSTRUMENT, PYTHON, "-c", PROGRAM], env)
    [span] = otlp_receiver.wait_for_spans("work")
    assert (span.transport, span.resource["service.name"]) == ("http", "named")
    assert '"name": "work"' in done.stderr, done.stderr  # the console copy


def test_the_distro_found_by_another_launcher_sets_the_defaults_it_would_have_had() -> None:
    # opentelemetry-distro's defaults (OTLP exporters) apply as without cryostorm; under the hook, none.
    probe = ("import os\nfrom cryostorm_run.hook.base_distro import CryostormDistro\n"
             "CryostormDistro().configure({})\nprint(os.environ.get('OTEL_TRACES_EXPORTER'))\n")
    another = subprocess.run([PYTHON, "-c", probe.format("")], env=child_env({}), capture_output=True, text=True,
                             timeout=60, check=True)
    hooked = subprocess.run([PYTHON, "-c", probe.format("cryostorm=True")], env=child_env({}), capture_output=True,
                            text=True, timeout=60, check=True)
    assert (another.stdout, hooked.stdout) == ("otlp\n", "None\n"), (another.stderr, hooked.stderr)


def test_cryostorm_run_of_opentelemetry_instrument_says_what_runs_and_the_program_is_traced(
        otlp_receiver: Receiver) -> None:
    # Before: the gRPC exporter raised on OTEL_EXPORTER_OTLP_TRACES_COMPRESSION=none (written by cryostorm-run),
    # opentelemetry-instrument printed two tracebacks and the program ran without telemetry.
    env = {"CRYOSTORM_EXPORTER_TYPE": "otlp", "CRYOSTORM_COLLECTOR": otlp_receiver.grpc_endpoint,
           "CRYOSTORM_SERVICE__NAME": "wrapped", "CRYOSTORM_METRICS__ENABLED": "false",
           "CRYOSTORM_LOGGING__ENABLED": "false"}
    done = _run([CRYOSTORM_RUN, "--", INSTRUMENT, PYTHON, "-c", PROGRAM], env)
    assert done.stdout == "no hook otlp\n"
    assert ("cryostorm: warning: the command is opentelemetry-instrument, another agent: the program runs under "
            "its bootstrap, not cryostorm's hook") in done.stderr
    assert "drop opentelemetry-instrument from the command" in done.stderr
    assert "cryostorm: service=" not in done.stderr  # no hook in opentelemetry-instrument's own process either
    [span] = otlp_receiver.wait_for_spans("work")
    assert span.resource["service.name"] == "wrapped"
