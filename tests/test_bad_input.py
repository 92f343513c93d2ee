"""Bad input is refused cleanly: exit 2, the variable named as written, never a traceback, nothing run.

A property test generates invalid environments and env files across every setting.
"""

from __future__ import annotations

import enum
import os
import subprocess
import typing
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import leaf_settings
from conftest import CRYOSTORM_RUN, PYTHON, child_env, examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from cryostorm_run import ConfigError, TelemetrySettings, load_settings
from cryostorm_run.config.sources import OTEL_TABLE, is_secret_name


def _field(path: str) -> Any:
    model: type[BaseModel] = TelemetrySettings
    parts = path.split(".")
    for part in parts[:-1]:
        annotation = model.model_fields[part].annotation
        model = next(a for a in (annotation, *typing.get_args(annotation))
                     if isinstance(a, type) and issubclass(a, BaseModel))
    return model.model_fields[parts[-1]]


def _core(annotation: Any) -> Any:
    for arg in (annotation, *typing.get_args(annotation)):
        if typing.get_origin(arg) is typing.Annotated:
            return _core(typing.get_args(arg)[0])
        if arg is not type(None) and not typing.get_args(arg):
            return arg
    return annotation


GARBAGE = st.sampled_from(["", "abc", "1e999x", "\udcff\udcfe", "0x10", "--", "nan", "🙂", "1,2", "{]", "\x1b[2J\x07",
                          "inf", "1e309"])
LONG_PATHS = ["/" + "a" * 300, "a" * 256 + "/ca.pem", "/tmp/" + "b" * 255 + "/c"]  # over NAME_MAX: ENAMETOOLONG
HUGE = st.just("9" * 5000)


def invalid_values(path: str) -> st.SearchStrategy[str] | None:  # noqa: PLR0911 (one case per kind)
    """Values that must be refused for this setting (None: every string is valid there)."""
    field = _field(path)
    core = _core(field.annotation)
    bounds = {k: getattr(m, k) for m in field.metadata for k in ("gt", "ge", "lt", "le") if hasattr(m, k)
              and getattr(m, k) is not None}
    if isinstance(core, type) and issubclass(core, enum.Enum):
        allowed = {str(m.value).lower() for m in core}
        return st.text(min_size=1, max_size=30).filter(lambda t: t.strip().lower() not in allowed
                                                       and "," not in t) | GARBAGE.filter(lambda t: t != "")
    if core is bool:
        return st.sampled_from(["maybe", "2", "yes please", "truee", "\udcff", "on-ish"])
    if core in (int, float):
        below = [str(bounds["gt"]), str(bounds["gt"] - 1)] if "gt" in bounds else []
        below += [str(bounds["ge"] - 1)] if "ge" in bounds else []
        above = [str(bounds["le"] + 1), "1e308", "10000000000000", "inf"] if "le" in bounds else []
        return st.sampled_from([*below, *above, "abc", "1.5.2", "\udcff", "", "12abc"]) | HUGE.filter(
            lambda _: core is int and "le" in bounds)
    if path.endswith("collector.host"):
        return st.sampled_from(["collector:4317", "bad host", "http://x", "-x-", "\udcff"])
    if path.endswith(("_file",)):
        return st.sampled_from(["/no/such/ca.pem", "/", "\udcff", *LONG_PATHS])
    if path.endswith(("headers", "additional_attributes", "_args")):
        return st.sampled_from(["novalue", "=v", ",=,", "bad header=x" if "headers" in path else "k"])
    if path in ("service.name", "service.version"):
        return st.sampled_from(["", "x" * 300])
    return None


def env_name(path: str) -> str:
    return "CRYOSTORM_" + path.upper().replace(".", "__")


URLS = st.sampled_from(["collector:4317", "ftp://x:1", "http://bad host:4317", "http://x:99999",
                        "http://x:4317/?q=1", "\udcff://x", "http://:4317", "http://u:pw@x:99999/?token=t",
                        "http://x\x1b[2J:4317", "http://" + "h" * 70_000 + ":99999"])
REFUSABLE = {p: s for p in leaf_settings() if (s := invalid_values(p)) is not None}
REFUSABLE.update({p: URLS for p in ("collector", "tracing.collector", "metrics.collector", "logging.collector")})
OTEL_BAD = {
    "OTEL_TRACES_SAMPLER": st.sampled_from(["bogus", "always", "\udcff"]),
    "OTEL_TRACES_SAMPLER_ARG": st.sampled_from(["2", "-0.1", "half"]),
    "OTEL_EXPORTER_OTLP_ENDPOINT": st.sampled_from(["collector:4317", "grpc://x"]),
    "OTEL_EXPORTER_OTLP_TIMEOUT": st.sampled_from(["soon", "-1", "0", "inf", "-inf", "nan", "1e309", "86401",
                                                   "10000000000000"]),
    "OTEL_BSP_EXPORT_TIMEOUT": st.sampled_from(["86400001", "1e309", "inf", "10000000000000"]),
    "OTEL_METRIC_EXPORT_TIMEOUT": st.sampled_from(["86400001", "99999999999999999999"]),
    "OTEL_EXPORTER_OTLP_CERTIFICATE": st.sampled_from(LONG_PATHS),
    "OTEL_EXPORTER_OTLP_CLIENT_KEY": st.sampled_from(LONG_PATHS),
    "OTEL_TRACES_EXPORTER": st.sampled_from(["zipkin", "otlp,none", "zipkin,console", "otlp,prometheus"]),
    "OTEL_METRIC_EXPORT_INTERVAL": st.sampled_from(["0", "fast"]),
    "OTEL_PROPAGATORS": st.sampled_from(["tracecontext,xray", "jaeger"]),
    "OTEL_SDK_DISABLED": st.sampled_from(["maybe"]),
    "OTEL_BSP_MAX_QUEUE_SIZE": st.sampled_from(["-5", "many"]),
    "OTEL_RESOURCE_ATTRIBUTES": st.sampled_from(["novalue", "=x"]),
}
assert set(OTEL_BAD) <= set(OTEL_TABLE)


@st.composite
def invalid_environments(draw: st.DrawFn) -> dict[str, str]:
    env: dict[str, str] = {}
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.booleans()):
            path = draw(st.sampled_from(sorted(REFUSABLE)))
            # An environment variable cannot hold a NUL byte (execve rejects it): not an input.
            env[env_name(path)] = draw(REFUSABLE[path].filter(lambda v: "\x00" not in v))
        else:
            name = draw(st.sampled_from(sorted(OTEL_BAD)))
            env[name] = draw(OTEL_BAD[name])
    if draw(st.booleans()):  # valid company: must not hide the bad ones
        env.setdefault("CRYOSTORM_SERVICE__VERSION", "1.2.3")
    return env


@settings(max_examples=examples(1200), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(invalid_environments())
def test_every_invalid_environment_is_refused_naming_its_variable(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert info.value.problems
    for problem in info.value.problems:
        assert any(var in problem.name for var in env), (problem, env)
        assert problem.message


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(invalid_environments(), st.sampled_from([["check-config"], ["check-config", "--json"], ["print-env"],
                                                ["print-env", "--format", "docker"]]))
def test_every_command_refuses_with_exit_2_never_an_internal_error(env: dict[str, str], args: list[str]) -> None:
    from typer.testing import CliRunner

    from cryostorm_run.cli._app import app

    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 2, result.output
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    assert any(name in result.stderr for name in env)
    assert "\x1b" not in result.stderr and len(result.stderr) < 20_000


def test_coverage_of_the_generator() -> None:
    # Every setting that has invalid inputs at all is exercised (sanity check of the table above).
    assert len(REFUSABLE) >= 45
    assert {"tracing.sample_rate", "otlp.headers", "collector", "metrics.prometheus_port",
            "service.environment", "otlp.certificate_file"} <= set(REFUSABLE)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(invalid_environments())
def test_the_real_launcher_refuses_before_running_anything(tmp_path_factory: Any, env: dict[str, str]) -> None:
    marker = tmp_path_factory.mktemp("m") / "started"
    environb = {k.encode(): v.encode() for k, v in child_env().items()}
    environb.update({k.encode(): v.encode("utf-8", "surrogateescape") for k, v in env.items()})
    result = subprocess.run([CRYOSTORM_RUN, "--", PYTHON, "-c", f"open({str(marker)!r}, 'w')"],
                            env=environb, capture_output=True, timeout=60, check=False)
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 2, stderr
    assert "internal error" not in stderr and "Traceback" not in stderr
    assert "nothing was started" in stderr
    assert any(name in stderr for name in env)
    assert not marker.exists()


def test_env_file_with_invalid_bytes_and_values(tmp_path: Path) -> None:
    path = tmp_path / "bad.env"
    path.write_bytes(b"CRYOSTORM_TRACING__SAMPLE_RATE=\xff\xfe\nOTEL_TRACES_SAMPLER=nope\n")
    result = subprocess.run([CRYOSTORM_RUN, "--env-file", str(path), "--", "true"], env=child_env(),
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert str(path) in result.stderr


def test_huge_value_is_refused_and_shortened_in_the_message() -> None:
    result = subprocess.run([CRYOSTORM_RUN, "--", "true"], env=child_env({"CRYOSTORM_SERVICE__NAME": "x" * 100_000}),
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "CRYOSTORM_SERVICE__NAME" in result.stderr
    assert len(result.stderr) < 2000


def test_os_environ_is_untouched_by_loading() -> None:
    before = dict(os.environ)
    with pytest.raises(ConfigError):
        load_settings({"CRYOSTORM_TRACING__SAMPLE_RATE": "5"})
    assert dict(os.environ) == before


# -- values whose bytes are not UTF-8 (Python keeps them in os.environ as lone surrogates) ----------------------

NOT_UTF8 = st.sampled_from(["caf\udce9", "\udcff\udcfe", "authorization=Bearer s\udce9cret", "http://x\udce9:4317",
                            "0.5\udcff", "k=v\udcff,a=b"])
EVERY_SETTING = sorted({env_name(p) for p in leaf_settings()} | set(OTEL_TABLE))


@settings(max_examples=examples(400), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(EVERY_SETTING), NOT_UTF8)
def test_a_setting_that_is_not_utf8_is_refused_by_name(name: str, value: str) -> None:
    from typer.testing import CliRunner

    from cryostorm_run.cli._app import app

    result = CliRunner().invoke(app, ["check-config"], env={"CRYOSTORM_EXPORTER_TYPE": "otlp", name: value})
    assert result.exit_code == 2, result.output
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    secret = is_secret_name(name)
    bad = next(c for c in value if ord(c) >= 0xDC80)
    byte = f"0x{ord(bad) - 0xDC00:02x}"
    assert f"{name} = " in result.stderr and "not UTF-8 text" in result.stderr, result.stderr
    assert (byte in result.stderr) is not secret  # a secret's bytes are never shown, not even the bad one
    assert "cret" not in result.stderr or not secret


@pytest.mark.parametrize("name", ["OTEL_EXPORTER_OTLP_HEADERS", "CRYOSTORM_OTLP__HEADERS", "OTEL_SERVICE_NAME"])
def test_the_real_launcher_refuses_a_setting_that_is_not_utf8_before_running_anything(tmp_path: Path,
                                                                                     name: str) -> None:
    marker = tmp_path / "started"
    environb = {k.encode(): v.encode() for k, v in child_env({"CRYOSTORM_EXPORTER_TYPE": "otlp"}).items()}
    environb[name.encode()] = b"authorization=Bearer s\xe9cret"
    environb[b"LC_UNRELATED"] = b"\xe9"  # not a setting: passed on as it is, never refused
    result = subprocess.run([CRYOSTORM_RUN, "--", PYTHON, "-c", f"open({str(marker)!r}, 'w')"], env=environb,
                            capture_output=True, timeout=60, check=False)
    stderr = result.stderr.decode("utf-8", "replace")
    assert (result.returncode, marker.exists()) == (2, False), stderr
    assert "internal error" not in stderr and "nothing was started" in stderr
    assert f"  {name} = " in stderr and "not UTF-8 text" in stderr and "LC_UNRELATED" not in stderr
    assert ("cret" in stderr) is not is_secret_name(name), stderr


NUL_INPUTS = {  # how a NUL byte gets into a setting: an escape a format decodes (an environment cannot hold one)
    "json in the environment": ({"CRYOSTORM_EXCLUDED_PATHS": '["/a\\u0000b"]'}, None, "CRYOSTORM_EXCLUDED_PATHS"),
    "json object": ({"CRYOSTORM_SERVICE__ADDITIONAL_ATTRIBUTES": '{"k": "v\\u0000"}'}, None,
                    "CRYOSTORM_SERVICE__ADDITIONAL_ATTRIBUTES"),
    "env file": ({}, ("app.env", b"CRYOSTORM_SERVICE__NAME=a\x00b\n"), "CRYOSTORM_SERVICE__NAME in "),
    "toml": ({}, ("cryostorm.toml", b'[service]\nname = "a\\u0000b"\n'), "cryostorm.toml service.name"),
    "yaml": ({}, ("otel.yaml", b'file_format: "1.0"\nresource:\n  attributes:\n    - name: service.name\n'
                               b'      value: "a\\0b"\n'), "otel.yaml:4 resource.attributes[0]"),
}


@pytest.mark.parametrize("case", sorted(NUL_INPUTS))
def test_a_nul_byte_in_a_setting_is_refused_by_name_not_an_internal_error(tmp_path: Path, case: str) -> None:
    env, file, named = NUL_INPUTS[case]
    args: list[str] = []
    if file is not None:
        (tmp_path / file[0]).write_bytes(file[1])
        args = {"app.env": ["--env-file", file[0]], "otel.yaml": ["--config-file", file[0]]}.get(file[0], [])
    marker = tmp_path / "started"
    for command in ([*args, "--", PYTHON, "-c", f"open({str(marker)!r}, 'w')"], ["check-config", *args]):
        result = subprocess.run([CRYOSTORM_RUN, *command], env=child_env(env), cwd=tmp_path, capture_output=True,
                                text=True, timeout=60, check=False)
        assert result.returncode == 2, result.stderr
        assert named in result.stderr and "holds a NUL byte (\\x00), which no environment variable can carry" \
            in result.stderr, result.stderr
        assert "internal error" not in result.stderr and not marker.exists()


def test_utf8_text_under_an_ascii_locale_is_told_as_the_locale_not_as_bad_bytes() -> None:
    """LC_ALL=C with PYTHONUTF8=0 and PYTHONCOERCECLOCALE=0: Python reads the environment as ASCII, so valid
    UTF-8 arrives escaped as well. The value is not at fault: the message says what is, and its fix."""
    environb = {k.encode(): v.encode() for k, v in child_env().items()}
    environb.update({b"LC_ALL": b"C", b"PYTHONUTF8": b"0", b"PYTHONCOERCECLOCALE": b"0",
                     b"CRYOSTORM_SERVICE__NAME": "café".encode()})
    result = subprocess.run([CRYOSTORM_RUN, "--", PYTHON, "-c", "pass"], env=environb, capture_output=True,
                            timeout=60, check=False)
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 2, stderr
    assert ("CRYOSTORM_SERVICE__NAME = 'caf\\udcc3\\udca9'\n    UTF-8 text that this Python, running under an ASCII "
            "locale without UTF-8 mode, cannot read (set PYTHONUTF8=1") in stderr, stderr
    assert "not UTF-8 text" not in stderr
