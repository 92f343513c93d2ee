"""Every OpenTelemetry variable has one rule (config/inventory.py), and the launcher does what it says.

mapped → the setting named holds the value and the program's environment carries it (as written_as);
passed → the program's environment has it unchanged and no setting took it;
refused → loading fails naming it and the reason, and the real launcher exits 2.
The inventory also keeps up with the installed SDK: a variable it reads that the inventory lacks fails.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from conftest import run_launcher, tls_files

from cryostorm_run.config.inventory import FAMILIES, INVENTORY, MAPPED, Rule, rule_for
from cryostorm_run.config.loading import ConfigError, load_settings
from cryostorm_run.config.sources import OTEL_TABLE
from cryostorm_run.launch.plan import plan_launch

SIGNALS = {"tracing": "TRACES", "metrics": "METRICS", "logging": "LOGS"}
ALL_OTLP = {f"OTEL_{u}_EXPORTER": "otlp" for u in SIGNALS.values()}
BASE = {"PATH": "/usr/bin:/bin"}


def _plain(value: Any) -> Any:  # noqa: PLR0911
    if isinstance(value, enum.Enum):
        return value.value
    if hasattr(value, "get_secret_value"):
        return value.get_secret_value()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "host") and hasattr(value, "port"):  # a collector endpoint
        return f"{value.protocol}://{value.host}:{value.port}{value.path}"
    return value


def _setting(settings: Any, dotted: str) -> Any:
    node = settings
    for part in dotted.split("."):
        node = getattr(node, part)
    return _plain(node)


# name → (context variables, value, {setting: expected}, {program variable: expected value or a check})
Sample = tuple[dict[str, str], str, dict[str, Any], dict[str, Any]]


def _samples(tmp: Path) -> dict[str, Sample]:
    files = tls_files(tmp, ("ca", "cert", "key"))  # real PEM: the launcher reads them
    s: dict[str, Sample] = {
        "OTEL_SDK_DISABLED": ({}, "true", {"enabled": False}, {"OTEL_SDK_DISABLED": "true"}),
        "OTEL_RESOURCE_ATTRIBUTES": ({}, "service.name=svc-r,service.version=2.5,team=core",
                                     {"service.name": "svc-r", "service.version": "2.5",
                                      "service.additional_attributes": {"team": "core"}},
                                     {"OTEL_SERVICE_NAME": "svc-r",
                                      "OTEL_RESOURCE_ATTRIBUTES": lambda v: {"service.version=2.5", "team=core"}
                                      <= set(v.split(","))}),
        "OTEL_SERVICE_NAME": ({}, "svc-x", {"service.name": "svc-x"}, {"OTEL_SERVICE_NAME": "svc-x"}),
        "OTEL_TRACES_SAMPLER": ({}, "traceidratio", {"tracing.sampling_strategy": "traceidratio"},
                                {"OTEL_TRACES_SAMPLER": "traceidratio"}),
        "OTEL_TRACES_SAMPLER_ARG": ({"OTEL_TRACES_SAMPLER": "traceidratio"}, "0.25", {"tracing.sample_rate": 0.25},
                                    {"OTEL_TRACES_SAMPLER_ARG": "0.25"}),
        "OTEL_PROPAGATORS": ({}, "tracecontext", {"propagation.propagator_types": ["tracecontext"]},
                             {"OTEL_PROPAGATORS": "tracecontext"}),
        "OTEL_METRIC_EXPORT_INTERVAL": ({}, "1500", {"metrics.export_interval_millis": 1500},
                                        {"OTEL_METRIC_EXPORT_INTERVAL": "1500"}),
        "OTEL_METRIC_EXPORT_TIMEOUT": ({}, "1200", {"metrics.export_timeout_millis": 1200},
                                       {"OTEL_METRIC_EXPORT_TIMEOUT": "1200"}),
        "OTEL_EXPORTER_PROMETHEUS_HOST": ({"OTEL_METRICS_EXPORTER": "prometheus"}, "0.0.0.0",
                                          {"metrics.prometheus_host": "0.0.0.0"},
                                          {"OTEL_EXPORTER_PROMETHEUS_HOST": "0.0.0.0"}),
        "OTEL_EXPORTER_PROMETHEUS_PORT": ({"OTEL_METRICS_EXPORTER": "prometheus"}, "9465",
                                          {"metrics.prometheus_port": 9465}, {"OTEL_EXPORTER_PROMETHEUS_PORT": "9465"}),
    }
    for prefix, signal in (("OTEL_BSP", "tracing"), ("OTEL_BLRP", "logging")):
        for key, field, value in (("SCHEDULE_DELAY", "schedule_delay_millis", 1234),
                                  ("EXPORT_TIMEOUT", "timeout_millis", 4321),
                                  ("MAX_EXPORT_BATCH_SIZE", "batch_size", 100),
                                  ("MAX_QUEUE_SIZE", "max_queue_size", 4096)):
            s[f"{prefix}_{key}"] = ({}, str(value), {f"{signal}.export_config.{field}": value},
                                    {f"{prefix}_{key}": str(value)})
    # (value, setting value, value written) for each OTLP option; TLS files under OTLP/HTTP (each file
    # is used on its own there), the rest under the default gRPC.
    otlp: dict[str, tuple[str, Any, str, dict[str, str]]] = {
        "PROTOCOL": ("http/protobuf", "http/protobuf", "http/protobuf", {}),
        "HEADERS": ("x-key=abc", {"x-key": "abc"}, "x-key=abc", {}),
        "COMPRESSION": ("gzip", "gzip", "gzip", {}),
        "TIMEOUT": ("5", 5000, "5", {}),
        "INSECURE": ("true", True, "true", {}),
        "CERTIFICATE": (str(files["ca"]), str(files["ca"]), str(files["ca"]), {}),
        "CLIENT_CERTIFICATE": (str(files["cert"]), str(files["cert"]), str(files["cert"]),
                               {"PROTOCOL": "http/protobuf", "CLIENT_KEY": str(files["key"])}),
        "CLIENT_KEY": (str(files["key"]), str(files["key"]), str(files["key"]),
                       {"PROTOCOL": "http/protobuf", "CLIENT_CERTIFICATE": str(files["cert"])}),
    }
    s["OTEL_EXPORTER_OTLP_ENDPOINT"] = (ALL_OTLP, "http://general.example:4317",
                                        {"collector": "http://general.example:4317"},
                                        {f"OTEL_EXPORTER_OTLP_{u}_ENDPOINT": "http://general.example:4317"
                                         for u in SIGNALS.values()})
    for key, (value, setting, written, context) in otlp.items():
        field = INVENTORY[f"OTEL_EXPORTER_OTLP_{key}"].setting
        general = {f"OTEL_EXPORTER_OTLP_{k}": v for k, v in context.items()}
        s[f"OTEL_EXPORTER_OTLP_{key}"] = ({**ALL_OTLP, **general}, value, {field: setting},
                                          {f"OTEL_EXPORTER_OTLP_{u}_{key}": written for u in SIGNALS.values()})
    for signal, upper in SIGNALS.items():
        s[f"OTEL_{upper}_EXPORTER"] = ({}, "otlp", {f"{signal}.exporter_type": "otlp"},
                                       {f"OTEL_{upper}_EXPORTER": "otlp"})
        url = f"http://{signal}.example:4317"
        s[f"OTEL_EXPORTER_OTLP_{upper}_ENDPOINT"] = (ALL_OTLP, url, {f"{signal}.collector": url},
                                                     {f"OTEL_EXPORTER_OTLP_{upper}_ENDPOINT": url})
        for key, (value, setting, written, context) in otlp.items():
            name = f"OTEL_EXPORTER_OTLP_{upper}_{key}"
            own = {f"OTEL_EXPORTER_OTLP_{'' if k == 'PROTOCOL' else upper + '_'}{k}": v for k, v in context.items()}
            s[name] = ({**ALL_OTLP, **own}, value, {INVENTORY[name].setting: setting}, {name: written})
    return s


def _load_and_plan(environ: dict[str, str]) -> tuple[Any, dict[str, str]]:
    loaded = load_settings({**BASE, **environ}, config_dir=None)
    plan = plan_launch(loaded.settings, ["true"], {**BASE, **environ})
    return loaded, dict(plan.env)


def test_every_mapped_variable_reaches_its_setting_and_the_program(tmp_path: Path) -> None:
    samples = _samples(tmp_path)
    assert set(samples) == MAPPED, "a mapped variable without a sample here (or a sample for a rule not mapped)"
    for name in sorted(MAPPED):
        context, value, settings, written = samples[name]
        rule = INVENTORY[name]
        loaded, env = _load_and_plan({**context, name: value})
        for dotted, expected in settings.items():
            assert dotted in rule.setting, f"{name}: the sample checks {dotted}, the rule says {rule.setting}"
            assert _setting(loaded.settings, dotted) == expected, f"{name}={value}: {dotted}"
            assert loaded.origin(tuple(dotted.split("."))).name == name, f"{name}: {dotted} came from elsewhere"
        assert set(written) <= set(rule.written_as), f"{name}: written as {sorted(written)}, rule {rule.written_as}"
        for var, expected in written.items():
            check: Callable[[str], bool] = expected if callable(expected) else expected.__eq__
            assert var in env and check(env[var]), f"{name}={value}: the program got {var}={env.get(var)!r}"


def test_the_mapped_rules_are_the_variables_loading_reads() -> None:
    assert set(OTEL_TABLE) == MAPPED


_PASSED_VALUES = {"OTEL_SEMCONV_STABILITY_OPT_IN": "http/dup", "OTEL_PYTHON_CONTEXT": "contextvars_context",
                  "OTEL_METRICS_EXEMPLAR_FILTER": "always_off", "OTEL_LOG_LEVEL": "debug",
                  "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "delta",
                  "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION": "base2_exponential_bucket_histogram",
                  "OTEL_PYTHON_EXPORTER_OTLP_GRPC_RETRYABLE_ERROR_CODES": "UNAVAILABLE"}
_FAMILY_EXAMPLES = {"OTEL_PYTHON_<NAME>_EXCLUDED_URLS": "OTEL_PYTHON_FLASK_EXCLUDED_URLS",
                    "OTEL_PYTHON_<NAME>_TRACED_REQUEST_ATTRS": "OTEL_PYTHON_DJANGO_TRACED_REQUEST_ATTRS",
                    "OTEL_PYTHON_<NAME>_EXCLUDED_SPANS": "OTEL_PYTHON_ASGI_EXCLUDED_SPANS",
                    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_*": "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_NEW",
                    "OTEL_INSTRUMENTATION_GENAI_*": "OTEL_INSTRUMENTATION_GENAI_EMIT_EVENT"}


def _named(kind: str) -> list[tuple[str, Rule]]:
    names = [(n, r) for n, r in INVENTORY.items() if r.kind == kind]
    assert set(_FAMILY_EXAMPLES) == {shown for shown, _, _ in FAMILIES}
    return names + [(_FAMILY_EXAMPLES[shown], r) for shown, _, r in FAMILIES if r.kind == kind]


def test_every_passed_variable_reaches_the_program_unchanged() -> None:
    for name, rule in _named("passed"):
        assert rule_for(name) is rule
        value = _PASSED_VALUES.get(name, "1")
        loaded, env = _load_and_plan({name: value})
        assert env.get(name) == value, f"{name}={value}: the program got {env.get(name)!r}"
        assert all(o.name != name for o in loaded.origins.values()), f"{name} was absorbed into a setting"


def test_every_refused_variable_is_refused_naming_it_and_the_reason(tmp_path: Path) -> None:
    refused = _named("refused")
    assert refused
    for name, rule in refused:
        with pytest.raises(ConfigError) as caught:
            load_settings({**BASE, name: "1"}, config_dir=None)
        assert [(p.name, rule.reason in p.message) for p in caught.value.problems] == [(name, True)]
        load_settings({**BASE, name: ""}, config_dir=None)  # empty is unset
    env_file = tmp_path / "app.env"
    env_file.write_text(f"{refused[0][0]}=1\n")
    with pytest.raises(ConfigError, match=re.escape(f"{refused[0][0]} in {env_file}")):
        load_settings(BASE, env_file=env_file, config_dir=None)
    # The real launcher: exit 2 before anything starts, each variable named.
    result = run_launcher(["--", "true"], {name: "1" for name, _ in refused}, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    for name, rule in refused:
        assert name in result.stderr and rule.reason[:40] in result.stderr.replace("\n    ", " ")


def test_unknown_names_have_no_rule() -> None:
    assert rule_for("OTEL_EXPORTER_OTLP_ENDPIONT") is None
    assert rule_for("OTEL_PYTHON_EXCLUDED_URL") is None


# -- the installed packages -----------------------------------------------------------------------

_LITERAL = re.compile(r"""["'](OTEL_[A-Z0-9_]+)["']""")
_SCANNED = ("opentelemetry-sdk", "opentelemetry-instrumentation", "opentelemetry-exporter-otlp")


def _read_by_installed_packages() -> dict[str, str]:
    """OTEL_* names in the installed SDK, OTLP exporters and opentelemetry-instrumentation (the base
    package: its own files, not the instrumentations), and the API's environment_variables module."""
    import opentelemetry.environment_variables as api_vars
    import opentelemetry.sdk.environment_variables as sdk_vars

    found = {name: "opentelemetry.environment_variables" for name in vars(api_vars) if name.startswith("OTEL_")}
    found.update({v: "opentelemetry.sdk.environment_variables" for k, v in vars(sdk_vars).items()
                  if k.lstrip("_").startswith("OTEL_") and isinstance(v, str)})
    scanned = 0
    for dist in metadata.distributions():
        project = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if not project.startswith(_SCANNED):
            continue
        for file in dist.files or ():
            if file.suffix == ".py":
                scanned += 1
                for match in _LITERAL.finditer(Path(str(file.locate())).read_text(encoding="utf-8")):
                    found.setdefault(match.group(1), f"{project}: {file}")
    assert scanned > 50, "the OpenTelemetry packages were not found"
    return found


def test_the_inventory_knows_every_variable_the_installed_sdk_reads() -> None:
    found = _read_by_installed_packages()
    assert {"OTEL_TRACES_SAMPLER", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_PYTHON_DISTRO",
            "OTEL_SEMCONV_STABILITY_OPT_IN"} <= set(found)
    missing = {name: where for name, where in sorted(found.items()) if rule_for(name) is None}
    assert not missing, f"read by the installed OpenTelemetry packages, missing from config/inventory.py: {missing}"


def test_a_refused_variable_that_asks_for_what_cryostorm_does_anyway_is_accepted(tmp_path: Path) -> None:
    # A deployment with OTEL_PYTHON_LOG_CORRELATION=true keeps running under cryostorm-run (its log
    # bridge already adds otelTraceID/otelSpanID); asking for anything else is still refused.
    from cryostorm_run.config.inventory import ALREADY_SO

    assert ALREADY_SO
    for name, values in ALREADY_SO.items():
        for value in values:
            load_settings({**BASE, name: value.upper()}, config_dir=None)
        with pytest.raises(ConfigError):
            load_settings({**BASE, name: "something-else"}, config_dir=None)
    result = run_launcher(["--", "true"], {"OTEL_PYTHON_LOG_CORRELATION": "true",
                                          "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED": "True"}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
