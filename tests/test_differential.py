"""Differential test, upstream as the oracle: for generated deployments (standard OTEL_* variables),
what every exporter, processor, sampler and provider ends up with inside the program under
`cryostorm-run` equals what the plain SDK configurator builds from the same environment.

- Deployments: tests/differential_deployments.py (hypothesis, derandomized: the same 700 every run).
- Launcher side, in this process: `load_settings` and `plan_launch`, exactly what `cryostorm-run`
  does before it execs (test_launcher_side_matches_the_real_launcher checks that against real
  `cryostorm-run` runs). A refusal (exit 2) must be a documented one (REFUSALS), counted apart.
- Program side: two real interpreters (tests/differential_worker.py), one per side, each forking a
  fresh child per deployment that configures, sends one item per signal to recording transports and
  describes what it built. The fields are compared one by one.
- Every intended difference is in ALLOWED, with its reason (README "Intended differences from the
  plain SDK"); any other difference fails with the deployment and the field.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from conftest import tls_files
from differential_deployments import SIGNALS, deployments
from hypothesis import HealthCheck, given, settings

from cryostorm_run import load_settings
from cryostorm_run.config.loading import ConfigError
from cryostorm_run.launch.plan import plan_launch

WORKER = Path(__file__).with_name("differential_worker.py")
EXAMPLES = int(os.environ.get("CRYOSTORM_DIFF_EXAMPLES", "700"))
MISSING = "<missing>"
ARGV = ["python3", "-c", "pass"]

# -- intended differences: (reason, when it applies) ------------------------------------------------
Raw = Mapping[str, str]
Rule = Callable[[str, Any, Any, Raw], bool]
ADDED_RESOURCE = ("telemetry.distro.", "telemetry.auto.version", "process.", "host.", "service.version",
                  "deployment.environment")
SIGNAL_PARTS = {"TRACES": ("traces/", "bsp/", "sampler", "span_limits/"), "METRICS": ("metrics/", "metric_reader/",
                "exemplar_filter"), "LOGS": ("logs/", "blrp/", "log_processors")}


def _unset_exporter(path: str, up: Any, cs: Any, raw: Raw) -> bool:
    """Unset: cryostorm's console where upstream has none, and what comes with a console signal."""
    unset = [s for s in SIGNALS if not raw.get(f"OTEL_{s}_EXPORTER")]
    if any(path == f"{s.lower()}/kind" for s in unset):
        return (up, cs) == ("none", "console")
    only_cryostorm = up is MISSING and cs is not MISSING
    return only_cryostorm and bool(unset) and (
        any(path.startswith(SIGNAL_PARTS[s]) for s in unset) or path.startswith("resource/"))


def _insecure_https(signal: str, raw: Raw) -> bool:
    endpoint = raw.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT") or raw.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
    return (raw.get(f"OTEL_EXPORTER_OTLP_{signal}_INSECURE") or raw.get("OTEL_EXPORTER_OTLP_INSECURE", "")) == "true" \
        and endpoint.startswith("https:")


def _environment(raw: Raw) -> str:
    pairs = dict(item.partition("=")[::2] for item in raw.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","))
    return pairs.get("deployment.environment.name") or pairs.get("deployment.environment") or "development"


def _default(var: str, up_value: Any, cs_value: Any) -> Rule:
    return lambda path, up, cs, raw: not raw.get(var) and (up, cs) == (up_value, cs_value)


ALLOWED: dict[str, tuple[str, Rule]] = {
    "default exporter": ("an unset OTEL_<SIGNAL>_EXPORTER is cryostorm's exporter_type, console (output with "
                         "nothing to set up); the plain SDK configurator builds none (opentelemetry-distro sets otlp)",
                         _unset_exporter),
    "added resource attributes": ("cryostorm describes the process (process.*, host.*, telemetry.distro.*, and "
                                  "telemetry.auto.version as opentelemetry-instrument stamps it) and "
                                  "always sends service.version and deployment.environment[.name] (settings defaults)",
                                  lambda path, up, cs, raw: up is MISSING and path.split("/")[-1].startswith(
                                      ADDED_RESOURCE)),
    "service.instance.id": ("a random id per process, on both sides (1.40: cryostorm's only)",
                            lambda path, up, cs, raw: path.endswith("/service.instance.id")),
    "default service.name": ("cryostorm's service.name default is unknown-service (settings), upstream's "
                             "unknown_service (1.45: unknown_service:<executable>)",
                             lambda path, up, cs, raw: path.endswith("/service.name")
                             and str(up).startswith("unknown_service") and cs == "unknown-service"),
    "gRPC compression none": ("OTEL_EXPORTER_OTLP_*COMPRESSION=none (a spec value) is accepted; the Python OTLP/gRPC "
                              "exporters raise on it, and the plain SDK configurator with them",
                              lambda path, up, cs, raw: path == "error" and "InvalidCompressionValue" in str(up)
                              and '"none"' in str(up)),
    "default span queue": ("export_config.max_queue_size defaults to 16384 (bursts delivered, not dropped); "
                           "upstream's OTEL_BSP_MAX_QUEUE_SIZE default is 2048",
                           lambda path, up, cs, raw: path == "bsp/max_queue_size"
                           and _default("OTEL_BSP_MAX_QUEUE_SIZE", 2048, 16384)(path, up, cs, raw)),
    "default log queue": ("the same 16384 for log records; upstream's OTEL_BLRP_MAX_QUEUE_SIZE default is 2048",
                          lambda path, up, cs, raw: path == "blrp/max_queue_size"
                          and _default("OTEL_BLRP_MAX_QUEUE_SIZE", 2048, 16384)(path, up, cs, raw)),
    "default log delay": ("logging.export_config.schedule_delay_millis defaults to 5000 like tracing's (one "
                          "export_config shape); upstream's OTEL_BLRP_SCHEDULE_DELAY default is 1000 (1.40: 5000)",
                          lambda path, up, cs, raw: path == "blrp/schedule_delay_ms"
                          and _default("OTEL_BLRP_SCHEDULE_DELAY", 1000, 5000)(path, up, cs, raw)),
    "CA file with insecure=true over https": (
        "an https endpoint is TLS whatever OTEL_EXPORTER_OTLP_*INSECURE says, on both sides; the OTLP/gRPC exporter "
        "then skips the signal's own certificate files because of the flag (system CAs instead); cryostorm uses them",
        lambda path, up, cs, raw: path.endswith("/tls") and _insecure_https(path.split("/")[0].upper(), raw)),
}

# -- refusals cryostorm documents (README "Standard OTEL_* variables you already have") ---------------
# name -> (the variable it names, phrases of the message): every problem of a refusal must be one of these.
REFUSALS = {
    "HTTP endpoint path": ("_ENDPOINT", ("does not end in /v1/",)),
    "header value not ASCII (gRPC metadata cannot carry it)": ("_HEADERS", ("has a character that is not ASCII",)),
    "endpoint without a port": ("_ENDPOINT", ("an http URL without a port",)),
    "ignored client certificate": ("_CLIENT_", ("ignored by the OTLP/gRPC exporter",)),
    "batch larger than queue": ("_MAX_", ("must not exceed max_queue_size",)),
    "deployment.environment outside development|staging|production": (
        "OTEL_RESOURCE_ATTRIBUTES", ("allowed: development, staging or production",)),
    "compression deflate": ("_COMPRESSION", ("allowed: none or gzip",)),
    # README "Settings": values are validated (the SDK would warn and fall back to a default).
    "invalid value": ("OTEL_", ("Input should be", "allowed: grpc or http/protobuf", "expected key=value pairs",
                                "expected a number")),
}


def _documented_refusal(error: ConfigError) -> str | None:
    """The refusal's name when every problem in it is a documented one, else None."""
    names = set()
    for problem in error.problems:
        text = f"{problem.message} {problem.hint}"
        found = [name for name, (var, phrases) in REFUSALS.items()
                 if var in problem.name and any(phrase in text for phrase in phrases)]
        if not found:
            return None
        names.add(found[0])
    return " + ".join(sorted(names)) or None


# -- the two program sides -----------------------------------------------------------------------------
class Worker:
    def __init__(self, side: str, python: str = sys.executable) -> None:
        self.proc = subprocess.Popen([python, str(WORKER), side], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env={**_base_env(), "PYTHONDONTWRITEBYTECODE": "1"})
        assert self.proc.stdin is not None and self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready", f"{side} worker did not start"

    def send(self, env: Mapping[str, str]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"env": dict(env)}) + "\n")
        self.proc.stdin.flush()

    def receive(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        answer: dict[str, Any] = json.loads(self.proc.stdout.readline())
        return answer

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


def _base_env() -> dict[str, str]:
    # requests' own CA-bundle variables are not OpenTelemetry's: where one is set (as on these machines) it
    # wins over certificate_file for SDK 1.45+ and for cryostorm, not for SDK 1.40-1.44, which passed the file
    # per request (README, "Known limits"); the comparison is of what the OTel settings build.
    return {k: v for k, v in os.environ.items()
            if not k.upper().startswith(("CRYOSTORM_", "OTEL_", "_CRYOSTORM_"))
            and k not in ("PYTHONPATH", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}


def flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key in sorted(value):
            yield from flatten(value[key], f"{prefix}{key}/" if not isinstance(value[key], dict | list) or value[key]
                               else f"{prefix}{key}")
    elif isinstance(value, list) and prefix.endswith("metric_reader/"):
        for index, item in enumerate(value):
            yield from flatten(item, f"{prefix}{index}/")
    else:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        yield prefix.rstrip("/"), float(value) if number else value


def compare(up: dict[str, Any], cs: dict[str, Any]) -> tuple[int, list[tuple[str, Any, Any]]]:
    left, right = dict(flatten(up)), dict(flatten(cs))
    diffs = [(path, left.get(path, MISSING), right.get(path, MISSING)) for path in sorted(left.keys() | right.keys())
             if left.get(path, MISSING) != right.get(path, MISSING)]
    return len(left.keys() | right.keys()), diffs


def explain(path: str, up: Any, cs: Any, raw: Raw) -> str | None:
    for name, (_, applies) in ALLOWED.items():
        if applies(path, up, cs, raw):
            return name
    return None


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("certs")
    names = ["ca", "cert", "key", *(f"{k}-{s.lower()}" for k in ("ca", "cert", "key") for s in SIGNALS)]
    return {name: str(path) for name, path in tls_files(folder, names).items()}  # real PEM: cryostorm reads them


def test_cryostorm_builds_what_the_plain_sdk_builds(certs: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    upstream, cryostorm = Worker("upstream"), Worker("cryostorm")
    counts: Counter[str] = Counter()
    allowed: Counter[str] = Counter()
    refusals: Counter[str] = Counter()
    fields: Counter[str] = Counter()
    first_refusal: dict[str, str] = {}

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(deployments(certs))
    def check(raw: dict[str, str]) -> None:
        raw = {"PATH": os.environ.get("PATH", os.defpath), **raw}
        try:
            loaded = load_settings(raw, config_dir=None)
        except ConfigError as error:
            reason = _documented_refusal(error)
            if reason is None:
                pytest.fail(f"undocumented refusal of {raw}: {error}")
            refusals[reason] += 1
            first_refusal.setdefault(reason, str(error.problems[0].name) + ": " + error.problems[0].message)
            return
        program_env = dict(plan_launch(loaded.settings, ARGV, raw).env)
        # The specification reads an OTEL_* variable set to "" as unset, and so does cryostorm; the plain SDK not
        # always (an empty *_COMPRESSION raises, an empty *_INSECURE means false): its side runs without them.
        as_specified = {k: v for k, v in raw.items() if v or not k.startswith("OTEL_")}
        counts["deployments with an empty variable (compared with it unset)"] += as_specified != raw
        upstream.send({**_base_env(), **as_specified})
        cryostorm.send({**_base_env(), **program_env})
        up, cs = upstream.receive(), cryostorm.receive()
        assert "error" not in cs, f"cryostorm's configurator failed for {raw}: {cs['error']}"
        total, diffs = compare({"error": up["error"]} if "error" in up else up, {} if "error" in up else cs)
        counts["deployments compared"] += 1
        counts["fields compared"] += total
        unexplained = []
        for path, up_value, cs_value in diffs:
            reason = explain(path, up_value, cs_value, raw)
            if reason is None:
                unexplained.append(f"  {path}: plain SDK {up_value!r}, cryostorm {cs_value!r}")
            else:
                allowed[reason] += 1
        for path, _ in flatten(up):
            fields[path.split("/")[0]] += 1
        assert not unexplained, "unexplained differences for " + json.dumps(raw, indent=1) + "\n" + "\n".join(
            unexplained)

    try:
        check()
    finally:
        upstream.close()
        cryostorm.close()
        with capsys.disabled():  # shown in every run, CI's included: the numbers to quote
            _summary(counts, allowed, refusals, fields, time.monotonic() - started)
            sys.stderr.write("".join(f"  refusal {k}, e.g. {v[:150]}\n" for k, v in sorted(first_refusal.items())))
    assert counts["deployments compared"] + sum(refusals.values()) >= EXAMPLES * 0.9
    assert counts["deployments compared"] >= EXAMPLES * 0.6  # most deployments are compared, not refused


def _summary(counts: Counter[str], allowed: Counter[str], refusals: Counter[str], fields: Counter[str],
             seconds: float) -> None:
    from opentelemetry.sdk.version import __version__ as sdk

    lines = [f"differential test, SDK {sdk}: {seconds:.1f} s",
             f"  deployments compared field by field: {counts['deployments compared']}",
             f"  fields compared: {counts['fields compared']} (the plain SDK's, by section: "
             + ", ".join(f"{k} {v}" for k, v in sorted(fields.items())) + ")",
             f"  refused by cryostorm (documented): {sum(refusals.values())} "
             + ", ".join(f"{k}: {v}" for k, v in sorted(refusals.items())),
             "  intended differences seen (ALLOWED): "
             + (", ".join(f"{k}: {v}" for k, v in sorted(allowed.items())) or "none")]
    sys.stderr.write("\n" + "\n".join(line for line in lines if line) + "\n")


LAUNCHER_CASES = [
    {"OTEL_TRACES_EXPORTER": "otlp_proto_http", "OTEL_EXPORTER_OTLP_ENDPOINT": "https://vendor.example",
     "OTEL_EXPORTER_OTLP_HEADERS": "api-key=a%20b", "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-tenant=t1"},
    {"OTEL_METRICS_EXPORTER": "otlp", "OTEL_LOGS_EXPORTER": "none", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
     "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT": "2.5", "OTEL_RESOURCE_ATTRIBUTES": "k%2Cx=v%3Dy,service.version=2"},
    {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25",
     "OTEL_PROPAGATORS": "b3,tracecontext", "OTEL_BSP_MAX_QUEUE_SIZE": "4096", "OTEL_SERVICE_NAME": "svc"},
]


@pytest.mark.parametrize("raw", LAUNCHER_CASES)
def test_launcher_side_matches_the_real_launcher(raw: dict[str, str]) -> None:
    """The in-process launcher side of the differential test is what the real `cryostorm-run` execs."""
    from conftest import child_env, run_launcher

    dump = "import json, os; print(json.dumps(dict(os.environ)))"
    done = run_launcher(["--quiet", "--", sys.executable, "-c", dump], raw)
    assert done.returncode == 0, done.stderr
    real = json.loads(done.stdout)
    environ = child_env(raw)
    planned = plan_launch(load_settings(environ, config_dir=None).settings, [sys.executable, "-c", dump], environ,
                          report="quiet").env
    # This process, that install, and the stderr it had (told at exec, not planned: hook/say.py STDERR_VAR).
    where = ("_CRYOSTORM_LAUNCHER_PID", "_CRYOSTORM_HOOK_DIR", "_CRYOSTORM_PREFIX", "_CRYOSTORM_STDERR")

    def telemetry(env: Mapping[str, str]) -> dict[str, str]:
        return {k: v for k, v in env.items() if k.startswith(("OTEL_", "_CRYOSTORM_")) and k not in where}

    assert telemetry(real) == telemetry(planned)
