"""A header value that must never appear in any output: every command, every path, success and failure."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_launcher
from hypothesis import given, settings
from hypothesis import strategies as st
from otlp_receiver import Receiver
from typer.testing import CliRunner

from cryostorm_run.cli._app import app

CANARY = "canary7f3a9c1e5b"  # no character that percent-encoding would change
HEADER = f"authorization=Bearer%20{CANARY}"


def assert_clean(*outputs: str) -> None:
    for output in outputs:
        assert CANARY not in output, output


def invoke(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    result = CliRunner().invoke(app, args, env=env)
    return result.exit_code, result.stdout + result.stderr


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver(required_headers={"authorization": f"Bearer {CANARY}"}) as rcv:
        yield rcv


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def otlp_env(endpoint: str, protocol: str = "grpc") -> dict[str, str]:
    return {"CRYOSTORM_EXPORTER_TYPE": "otlp", "CRYOSTORM_COLLECTOR": endpoint, "CRYOSTORM_OTLP__PROTOCOL": protocol,
            "CRYOSTORM_OTLP__HEADERS": HEADER, "CRYOSTORM_SERVICE__NAME": "canary-test"}


def test_check_config_table_json_and_strict() -> None:
    env = {**otlp_env("http://collector:4318"), "OTEL_EXPORTER_OTLP_HEADRES": HEADER}  # two warnings
    # valid with warnings: 0; --strict treats the warnings as errors: 2
    for args, expected in ((["check-config"], 0), (["check-config", "--json"], 0), (["check-config", "--strict"], 2)):
        code, output = invoke(args, env)
        assert code == expected, output
        assert "warning:" in output
        assert_clean(output)


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_probe_ok_rejected_and_unreachable(receiver: Receiver, protocol: str) -> None:
    endpoint = receiver.grpc_endpoint if protocol == "grpc" else receiver.http_endpoint
    code, output = invoke(["check-config", "--probe", "--probe-span"], otlp_env(endpoint, protocol))
    assert code == 0, output
    assert_clean(output)
    assert all(r.headers.get("authorization") == f"Bearer {CANARY}" for r in receiver.requests())  # it was sent
    wrong = {**otlp_env(endpoint, protocol), "CRYOSTORM_OTLP__HEADERS": f"authorization={CANARY}-wrong"}
    code, output = invoke(["check-config", "--probe", "--json"], wrong)
    assert code == 3 and "unauthenticated" in output
    assert_clean(output)
    code, output = invoke(["check-config", "--probe"], otlp_env(f"http://127.0.0.1:{closed_port()}", protocol))
    assert code == 3 and "refused" in output
    assert_clean(output)


def test_print_env_every_format_without_show_secrets() -> None:
    from cryostorm_run.launch.envformat import FORMATS

    for fmt in FORMATS:
        code, output = invoke(["print-env", "--format", fmt], otlp_env("http://collector:4317"))
        assert code == 0 and "****" in output
        assert_clean(output)


def test_doctor() -> None:
    # The suite's environment is healthy (exact pins): 0. A command that cannot run is a problem: 1,
    # told as a problem (1 is also the internal-error code: the text tells them apart).
    code, output = invoke(["doctor", "--", sys.executable, "-c", "pass"], otlp_env("http://collector:4317"))
    assert code == 0, output
    assert output.rstrip().endswith("cryostorm-run doctor: healthy")
    assert_clean(output)
    code, output = invoke(["doctor", "--", "nosuchcmd-canary-test"], otlp_env("http://collector:4317"))
    assert code == 1, output
    assert "PROBLEM nosuchcmd-canary-test: command not found" in output
    assert output.rstrip().endswith("cryostorm-run doctor: 1 problem")
    assert "internal error" not in output
    assert_clean(output)


def test_run_path_verbose_delivering_and_failing(receiver: Receiver) -> None:
    program = ["--", sys.executable, "-c", "import logging; logging.getLogger('x').warning('hello')"]
    for endpoint in (receiver.grpc_endpoint, f"http://127.0.0.1:{closed_port()}"):
        env = {**otlp_env(endpoint), "CRYOSTORM_SHUTDOWN_TIMEOUT_MILLIS": "1000"}
        result = run_launcher(["--verbose", "--debug", *program], env=env)
        assert result.returncode == 0, result.stderr
        assert_clean(result.stdout, result.stderr)
    assert receiver.wait_for_logs(1)


def test_invalid_configuration_with_the_canary_present(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cases = [
        {"CRYOSTORM_OTLP__HEADERS": f"bad header={CANARY}", "CRYOSTORM_TRACING__SAMPLE_RATE": "2"},
        {"OTEL_EXPORTER_OTLP_HEADERS": f"authorization{CANARY}"},  # no '=': the pair cannot be parsed
        {"CRYOSTORM_OTLP__HEADERS": f'{{"authorization": "{CANARY}", "x": 1}}'},
        {"CRYOSTORM_OTLP__HEADERS__AUTHORIZATION": CANARY, "CRYOSTORM_OTLP__HEADERZ": CANARY},
    ]
    for env in cases:
        code, output = invoke(["check-config"], env)
        assert code == 2, output
        assert_clean(output)
        result = run_launcher(["--debug", "--", sys.executable, "-c", "pass"], env=env)
        assert result.returncode == 2
        assert_clean(result.stdout, result.stderr)
    result = run_launcher(["--set", f"otlp.headers=authorization={CANARY}", "--set", "otlp.timeout_millis=-1", "--",
                           "true"])
    assert result.returncode == 2
    assert_clean(result.stdout, result.stderr)
    (tmp_path / "cryostorm.toml").write_text(f'[otlp]\nheaders = {{authorization = "{CANARY}"}}\ntimeout_millis = 0\n')
    monkeypatch.chdir(tmp_path)
    code, output = invoke(["check-config"], {})
    assert code == 2 and "cryostorm.toml otlp.timeout_millis" in output
    assert_clean(output)


@pytest.mark.parametrize("headers_list", [f"api-key=x1,Bearer{CANARY}", f"{CANARY}", f"a=b,{CANARY},c=d"])
def test_a_malformed_headers_list_in_an_otel_config_file_is_masked(tmp_path: Path, headers_list: str) -> None:
    # A token pasted without its header name used to be quoted in clear ("got 'Bearer...'").
    (tmp_path / "otel.yaml").write_text(
        'file_format: "1.0"\ntracer_provider:\n  processors:\n    - batch:\n        exporter:\n'
        f'          otlp_grpc:\n            endpoint: http://localhost:4317\n'
        f'            headers_list: "{headers_list}"\n')
    for args in (["check-config"], ["print-env"], ["check-config", "--json"]):
        code, output = invoke([*args, "--config-file", str(tmp_path / "otel.yaml")], {})
        assert code == 2, output
        assert "headers_list" in output and "expected key=value pairs separated by commas, got '****'" in output
        assert_clean(output)
    result = run_launcher(["--config-file", str(tmp_path / "otel.yaml"), "--", sys.executable, "-c", "print(1)"])
    assert result.returncode == 2 and result.stdout == ""
    assert "headers_list = '" in result.stderr, result.stderr  # the list as written, its values masked
    assert_clean(result.stdout, result.stderr)


@pytest.mark.parametrize(("headers", "secret"), [("a=b,broken", "b"), ("x=y,nokey", "y"), ("k=re,nokey", "re")])
def test_a_short_header_value_is_masked_without_garbling_the_message(headers: str, secret: str) -> None:
    # A one- or two-letter value used to be masked inside every word: "separated ****y commas".
    code, output = invoke(["check-config"], {"CRYOSTORM_OTLP__HEADERS": headers})
    assert code == 2, output
    assert "expected key=value pairs separated by commas" in output, output
    assert f"'{secret}'" not in output and f"={secret}," not in output, output
    from cryostorm_run.common.shown import mask_values

    assert mask_values(f"got '{secret}', value={secret}; separated by commas", [secret]) == \
        "got '****', value=****; separated by commas"
    assert mask_values(f"Bearer{CANARY}x and ({CANARY})", [CANARY]) == "Bearer****x and (****)"


@pytest.mark.parametrize("debug", [False, True])
def test_internal_error(monkeypatch: pytest.MonkeyPatch, debug: bool) -> None:
    def explode(*_: object) -> list[object]:
        raise RuntimeError(f"exporter said: authorization=Bearer {CANARY}")

    monkeypatch.setattr("cryostorm_run.launch.envmap.env_rows", explode)
    code, output = invoke(["print-env", *(["--debug"] if debug else [])], otlp_env("http://collector:4317"))
    assert code == 1
    assert "RuntimeError" in output
    if debug:
        assert "Traceback" in output
    assert_clean(output)


# URLs whose credentials must never be shown: refused ones are quoted in the error, accepted ones in the
# settings table. The host (or the masked form) is shown instead, so the messages still say which value.
URLS_WITH_SECRETS = [
    f"http://user:{CANARY}@collector:4318/otlp?token={CANARY}",  # refused: a query
    f"https://{CANARY}@collector:99999",  # refused: the port
    f"ftp://user:{CANARY}@collector:21",  # refused: the scheme
    f"user:{CANARY}@collector:4317",  # refused: no scheme
    f"http:/user:{CANARY}@collector:4317",  # refused: a slash too few (a typo); the password is still one
    f"//user:{CANARY}@collector:4317",  # refused: no scheme, a network-path reference
    f"http:///user:{CANARY}@collector:4317",  # refused: a slash too many
    f"http://collector:4318/?token={CANARY}&x={CANARY}#{CANARY}",  # refused: query and fragment
]
URL_INPUTS = ["CRYOSTORM_COLLECTOR", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
              "CRYOSTORM_LOGGING__COLLECTOR"]


@pytest.mark.parametrize("url", URLS_WITH_SECRETS)
def test_credentials_in_a_refused_url_are_masked_in_every_command(url: str, tmp_path: Path) -> None:
    from cryostorm_run.launch.envformat import FORMATS

    for variable in URL_INPUTS:
        env = {"CRYOSTORM_EXPORTER_TYPE": "otlp", variable: url}
        for args in (["check-config"], ["check-config", "--json"], *(["print-env", "--format", f] for f in FORMATS)):
            code, output = invoke(args, env)
            assert code == 2, output
            assert variable in output and "****" in output and "collector" in output
            assert_clean(output)
    code, output = invoke(["check-config", "--endpoint", url], {})
    assert code == 2 and "--endpoint" in output
    assert_clean(output)
    code, output = invoke(["print-env", "--set", f"collector={url}"], {})
    assert code == 2 and "--set collector" in output
    assert_clean(output)
    env_file = tmp_path / "secret.env"
    env_file.write_text(f"OTEL_EXPORTER_OTLP_ENDPOINT={url}\n")
    result = run_launcher(["--env-file", str(env_file), "--", sys.executable, "-c", "pass"])
    assert result.returncode == 2 and "OTEL_EXPORTER_OTLP_ENDPOINT in" in result.stderr
    assert_clean(result.stdout, result.stderr)
    result = run_launcher(["--", sys.executable, "-c", "pass"], env={"CRYOSTORM_COLLECTOR": url})
    assert result.returncode == 2 and "CRYOSTORM_COLLECTOR" in result.stderr
    assert_clean(result.stdout, result.stderr)
    code, output = invoke(["doctor", "--", sys.executable, "-c", "pass"], {"CRYOSTORM_COLLECTOR": url})
    assert code == 1 and "PROBLEM CRYOSTORM_COLLECTOR = '" in output, output  # the refused setting, masked
    assert "internal error" not in output
    assert_clean(output)


def test_credentials_in_accepted_urls_are_masked_in_the_table_and_print_env() -> None:
    # No authorization header beside the URL's credentials: they would conflict (refused, exit 2).
    env = {**otlp_env(f"http://user:{CANARY}@collector:4318"), "CRYOSTORM_OTLP__HEADERS": f"x-canary={CANARY}",
           "CRYOSTORM_SCHEMA_URL": f"https://user:{CANARY}@example.com/schema?token={CANARY}"}
    for args in (["check-config"], ["check-config", "--json"], ["print-env"], ["print-env", "--format", "json"]):
        code, output = invoke(args, env)
        assert code == 0, output
        assert "SCHEMA_URL" in output.upper()
        assert_clean(output)
    code, output = invoke(["print-env", "--show-secrets"], env)  # asked for: in clear
    assert code == 0 and f"https://user:{CANARY}@example.com/schema?token={CANARY}" in output


@pytest.mark.parametrize("variable", ["CRYOSTORM_SERVICE__ADDITIONAL_ATTRIBUTES", "OTEL_RESOURCE_ATTRIBUTES"])
def test_credentials_in_a_url_valued_resource_attribute_are_masked_in_every_format(variable: str) -> None:
    # The table masked them; check-config --json printed the attribute as set, and print-env its percent-encoded
    # form (OTEL_RESOURCE_ATTRIBUTES=vcs.repository.url.full=https%3A%2F%2Fbob%3A<token>%40...), in clear.
    url = f"https://bob:{CANARY}@github.com/x?sig={CANARY}"
    value = (f'{{"vcs.repository.url.full": "{url}"}}' if variable.startswith("CRYOSTORM")
             else "vcs.repository.url.full=" + url.replace(":", "%3A").replace("/", "%2F").replace("@", "%40"))
    env = {**otlp_env("http://collector:4318"), variable: value}
    formats = [["print-env", "--format", fmt] for fmt in ("shell", "dotenv", "json", "docker", "k8s")]
    for args in (["check-config"], ["check-config", "--json"], *formats):
        code, output = invoke(args, env)
        assert code == 0, output
        assert args == ["check-config"] or "github.com" in output, output  # (the table folds long values)
        assert_clean(output)
    code, output = invoke(["print-env", "--show-secrets"], env)  # asked for: in clear
    assert code == 0 and CANARY in output


def test_a_refused_url_message_shows_the_masked_url() -> None:
    code, output = invoke(["check-config"], {"CRYOSTORM_COLLECTOR": f"http://me:{CANARY}@collector:4318/v1?token=t"})
    assert code == 2
    assert "http://****:****@collector:4318/v1?token=****" in output


@pytest.mark.parametrize(
    ("name", "headers"),
    [
        ("CRYOSTORM_OTLP__HEADERS", f'{{"authorization": "Bearer {CANARY}\\nx"}}'),  # JSON: a line break inside
        ("OTEL_EXPORTER_OTLP_HEADERS", f"authorization=Bearer%20{CANARY}%0D%0Ax"),
        ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", f"authorization=Bearer%20{CANARY}%07"),
    ],
)
def test_a_header_value_with_a_control_character_is_refused_before_the_program_starts(name: str,
                                                                                      headers: str) -> None:
    # Neither HTTP nor gRPC can send it: the exporter would fail inside the program, quoting the value.
    env = {**otlp_env("http://collector:4318"), "CRYOSTORM_OTLP__PROTOCOL": "http/protobuf"}
    del env["CRYOSTORM_OTLP__HEADERS"]  # it would win over the OTEL_* ones
    result = run_launcher(["--", sys.executable, "-c", "print('STARTED')"], env={**env, name: headers})
    assert result.returncode == 2, result.stderr
    assert "STARTED" not in result.stdout
    assert "has a control character" in result.stderr and name in result.stderr
    assert_clean(result.stdout, result.stderr)


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_a_header_value_that_is_not_ascii_is_refused_before_the_program_starts(protocol: str) -> None:
    # A typographic apostrophe pasted with the token: before, accepted, then every export failed (gRPC
    # INTERNAL "Invalid metadata", HTTP UnicodeEncodeError). The character is not shown either.
    env = {**otlp_env("http://collector:4318"), "CRYOSTORM_OTLP__PROTOCOL": protocol}
    del env["CRYOSTORM_OTLP__HEADERS"]
    env["OTEL_EXPORTER_OTLP_HEADERS"] = f"authorization=Bearer {CANARY}\u2019"
    result = run_launcher(["--", sys.executable, "-c", "print('STARTED')"], env=env)
    assert result.returncode == 2 and "STARTED" not in result.stdout, result.stderr
    assert "OTEL_EXPORTER_OTLP_HEADERS = 'authorization=****'\n" in result.stderr
    assert "the value of header 'authorization' has a character that is not ASCII" in result.stderr
    assert "\u2019" not in result.stderr
    assert_clean(result.stdout, result.stderr)


@pytest.mark.parametrize(
    "headers",
    [f'{{"authorization": " Bearer {CANARY}\\n"}}', f"authorization=%20Bearer%20{CANARY}%0A%20"],
)
def test_whitespace_around_a_header_value_is_dropped_as_the_sdk_drops_it(headers: str) -> None:
    from opentelemetry.util.re import parse_env_headers

    if not headers.startswith("{"):  # the SDK's own reading of the variable: decoded, then stripped
        assert parse_env_headers(headers, liberal=True) == {"authorization": f"Bearer {CANARY}"}
    env = {**otlp_env("http://collector:4318"), "CRYOSTORM_OTLP__PROTOCOL": "http/protobuf",
           "CRYOSTORM_OTLP__HEADERS": headers, "CRYOSTORM_PLAN_CACHE": "off"}
    program = "import os; print(os.environ['OTEL_EXPORTER_OTLP_TRACES_HEADERS'])"
    result = run_launcher(["--quiet", "--", sys.executable, "-c", program], env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"authorization=Bearer%20{CANARY}\n"


def test_a_cryostorm_line_never_quotes_a_header_value_of_the_environment(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # What reaches the program's stderr from the hook (an exporter's error quoting the header it refused),
    # in each form a message may quote it: as set, decoded, and as repr() writes a value with a line break.
    from cryostorm_run.hook.bootstrap import warn

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", f"authorization=Bearer%20{CANARY}")
    monkeypatch.setenv("CRYOSTORM_LOGGING__HEADERS", f'{{"api-key": "{CANARY[::-1]}\\n"}}')
    warn(f"cannot build the OTLP exporter: InvalidHeader: 'Bearer {CANARY}' and 'Bearer%20{CANARY}'")
    warn(f"exporting 1 log records failed: InvalidHeader: in header value: {CANARY[::-1]!r}")
    monkeypatch.setenv("CRYOSTORM_TRACING__HEADERS", f'{{"x-token": "{CANARY[:8]}\\n{CANARY[8:]}"}}')
    warn(f"exporting 1 spans failed: InvalidHeader: in header value: {CANARY[:8] + chr(10) + CANARY[8:]!r}")
    err = capsys.readouterr().err
    assert err.count("cryostorm: ") == 3 and "****" in err
    assert CANARY not in err and CANARY[::-1] not in err and CANARY[:8] not in err, err


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["authorization", "api-key", "X-Scope"]),
                          st.text(alphabet=" %20AB=c:+/", max_size=12)), min_size=1, max_size=3))
def test_header_lists_read_as_the_sdk_reads_them(pairs: list[tuple[str, str]]) -> None:
    # Upstream is the oracle: OTEL_EXPORTER_OTLP_HEADERS decoded, then stripped, name by name, as
    # the SDK's parse_env_headers has it (it also lower-cases names: header names are case-insensitive).
    from opentelemetry.util.re import parse_env_headers

    from cryostorm_run.common.runtime import parse_pairs

    text = ",".join(f"{name}={value}" for name, value in pairs)
    try:
        expected = parse_env_headers(text, liberal=True)
    except ValueError:  # upstream refuses it (e.g. a lone '%'): nothing to compare
        return
    assert {name.lower(): value for name, value in parse_pairs(text).items()} == expected
