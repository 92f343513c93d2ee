"""Warnings for valid but likely mistaken settings: the exact text of each, and where they are printed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from conftest import run_launcher, tls_files
from typer.testing import CliRunner

from cryostorm_run.cli._app import app
from cryostorm_run.config.advice import KNOWN_OTEL, is_known_otel_name
from cryostorm_run.config.loading import Override, load_settings

OTLP = {"CRYOSTORM_EXPORTER_TYPE": "otlp", "CRYOSTORM_SERVICE__NAME": "checkout"}


def warnings_for(environ: dict[str, str], overrides: tuple[Override, ...] = (), env_file: Path | None = None,
                 ) -> list[str]:
    loaded = load_settings(environ, overrides=overrides, env_file=env_file, config_dir=None)
    return [str(w) for w in loaded.warnings]


def test_clean_configurations_have_no_warnings() -> None:
    assert warnings_for({}) == []
    assert warnings_for({**OTLP, "CRYOSTORM_COLLECTOR": "http://collector:4317"}) == []
    assert warnings_for({**OTLP, "OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector:4318/otlp",
                         "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_TIMEOUT": "10",
                         "OTEL_PYTHON_FLASK_EXCLUDED_URLS": "/health", "OTEL_SEMCONV_STABILITY_OPT_IN": "http"}) == []


def test_unknown_otel_variable_with_did_you_mean() -> None:
    assert warnings_for({"OTEL_EXPORTER_OTLP_ENDPIONT": "http://collector:4317"}) == [
        "OTEL_EXPORTER_OTLP_ENDPIONT is not an OpenTelemetry variable and is ignored "
        "(did you mean OTEL_EXPORTER_OTLP_ENDPOINT?)"
    ]
    assert warnings_for({"OTEL_NOTHING_LIKE_IT": "1"}) == [
        "OTEL_NOTHING_LIKE_IT is not an OpenTelemetry variable and is ignored (check the spelling)"
    ]


def test_unknown_otel_variable_in_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / "prod.env"
    env_file.write_text("OTEL_SERVICE_NAEM=checkout\n")
    assert warnings_for({}, env_file=env_file) == [
        f"OTEL_SERVICE_NAEM in {env_file} is not an OpenTelemetry variable and is ignored "
        "(did you mean OTEL_SERVICE_NAME?)"
    ]


def test_unknown_otel_variable_never_shows_its_value() -> None:
    messages = warnings_for({"OTEL_EXPORTER_OTLP_HEADRES": "authorization=Bearer s3cret-value"})
    assert messages == ["OTEL_EXPORTER_OTLP_HEADRES is not an OpenTelemetry variable and is ignored "
                        "(did you mean OTEL_EXPORTER_OTLP_HEADERS?)"]


def test_every_variable_installed_opentelemetry_code_names_is_known() -> None:
    import re

    import opentelemetry

    names: set[str] = set()
    for root in opentelemetry.__path__:
        for source in Path(root).rglob("*.py"):
            names.update(re.findall(r"[\"'](OTEL_[A-Z0-9_]+)[\"']", source.read_text(errors="replace")))
    assert len(names) > 50, "the SDK, exporters and instrumentations name their variables"
    assert sorted(n for n in names if not is_known_otel_name(n)) == []
    assert "OTEL_PYTHON_SANIC_EXCLUDED_URLS" not in KNOWN_OTEL and is_known_otel_name("OTEL_PYTHON_SANIC_EXCLUDED_URLS")
    assert is_known_otel_name("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE")
    assert is_known_otel_name("OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY")


def test_grpc_to_the_http_port() -> None:
    assert warnings_for({**OTLP, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}) == [
        "traces, metrics, logs export with gRPC to port 4318, the OTLP/HTTP port "
        "(port from OTEL_EXPORTER_OTLP_ENDPOINT): use port 4317, or set otlp.protocol=http/protobuf"
    ]


def test_http_to_the_grpc_port_for_one_signal() -> None:
    env = {**OTLP, "CRYOSTORM_COLLECTOR": "http://collector:4317", "CRYOSTORM_TRACING__PROTOCOL": "http/protobuf"}
    assert warnings_for(env) == [
        "traces export with http/protobuf to port 4317, the OTLP/gRPC port (port from CRYOSTORM_COLLECTOR): "
        "use port 4318, or set otlp.protocol=grpc"
    ]


def test_http_base_endpoint_already_ending_in_the_signal_path() -> None:
    env = {**OTLP, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
           "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/v1/traces"}
    assert warnings_for(env) == [
        "HTTP collector URL http://collector:4318/v1/traces already ends in /v1/traces (from "
        "OTEL_EXPORTER_OTLP_ENDPOINT): cryostorm adds /v1/<signal>, so traces go to "
        "http://collector:4318/v1/traces/v1/traces; use the base URL http://collector:4318"
    ]
    # The per-signal variable takes the full URL, as the spec says: nothing to warn about.
    assert warnings_for({**OTLP, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                         "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}) == []


def test_scheme_less_grpc_endpoint_stays_an_error() -> None:
    result = CliRunner().invoke(app, ["check-config"], env={**OTLP, "OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317"})
    assert result.exit_code == 2
    assert "(no scheme)" in result.stderr


def test_timeout_that_looks_like_milliseconds() -> None:
    assert warnings_for({**OTLP, "OTEL_EXPORTER_OTLP_TIMEOUT": "10000"}) == [
        "OTEL_EXPORTER_OTLP_TIMEOUT=10000 is read as 10000 seconds (about 2.8 hours) by the Python SDK; "
        "if you meant milliseconds, use OTEL_EXPORTER_OTLP_TIMEOUT=10 or CRYOSTORM_OTLP__TIMEOUT_MILLIS=10000"
    ]
    assert warnings_for({**OTLP, "OTEL_EXPORTER_OTLP_TIMEOUT": "999"}) == []
    # Overridden by the CRYOSTORM_* setting: the OTEL value is not what will be used.
    assert warnings_for({**OTLP, "OTEL_EXPORTER_OTLP_TIMEOUT": "10000", "CRYOSTORM_OTLP__TIMEOUT_MILLIS": "5000"}) == []



def test_a_per_signal_timeout_that_looks_like_milliseconds(tmp_path: Path) -> None:
    """The per-signal variables are read in seconds too. Break checked: only otlp.timeout_millis looked at."""
    assert warnings_for({**OTLP, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "5000"}) == [
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT=5000 is read as 5000 seconds (about 1.4 hours) by the Python SDK; "
        "if you meant milliseconds, use OTEL_EXPORTER_OTLP_TRACES_TIMEOUT=5 or CRYOSTORM_TRACING__TIMEOUT_MILLIS=5000"
    ]
    env_file = tmp_path / ".env"
    env_file.write_text("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT=30000\n")
    assert warnings_for({**OTLP, "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT": "1000"}, env_file=env_file) == [
        "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT=1000 is read as 1000 seconds (about 16.7 minutes) by the Python SDK; "
        "if you meant milliseconds, use OTEL_EXPORTER_OTLP_METRICS_TIMEOUT=1 or CRYOSTORM_METRICS__TIMEOUT_MILLIS=1000",
        f"OTEL_EXPORTER_OTLP_LOGS_TIMEOUT=30000 (in {env_file}) is read as 30000 seconds (about 8.3 hours) by the "
        "Python SDK; if you meant milliseconds, use OTEL_EXPORTER_OTLP_LOGS_TIMEOUT=30 or "
        "CRYOSTORM_LOGGING__TIMEOUT_MILLIS=30000",
    ]
    assert warnings_for({**OTLP, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "999"}) == []
    # Overridden by the CRYOSTORM_* setting: the OTEL value is not what will be used.
    assert warnings_for({**OTLP, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "5000",
                         "CRYOSTORM_TRACING__TIMEOUT_MILLIS": "5000"}) == []

def test_endpoint_set_while_the_exporter_is_console() -> None:
    assert warnings_for({"CRYOSTORM_COLLECTOR": "http://collector:4317"}) == [
        "collector is set (from CRYOSTORM_COLLECTOR) but no signal using it exports with OTLP (traces: console, "
        "metrics: console, logs: console): set CRYOSTORM_EXPORTER_TYPE=otlp (or --exporter otlp) to send "
        "telemetry there"
    ]
    traces_only = {**OTLP, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:4317", "OTEL_TRACES_EXPORTER": "console"}
    assert warnings_for(traces_only) == [
        "tracing.collector is set (from OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) but no signal using it exports with "
        "OTLP (traces: console): set CRYOSTORM_TRACING__EXPORTER_TYPE=otlp to send telemetry there"
    ]


def test_headers_on_the_command_line() -> None:
    overrides = (Override("--set otlp.headers", ("otlp", "headers"), "authorization=Bearer x"),)
    assert warnings_for(OTLP, overrides) == [
        "OTLP headers given on the command line (--set otlp.headers) are visible to other users (ps, /proc) and "
        "kept in shell history: put them in CRYOSTORM_OTLP__HEADERS or an --env-file instead"
    ]
    per_signal = (Override("--set tracing.headers.a", ("tracing", "headers", "a"), "s"),
                  Override("--set logging.headers", ("logging", "headers"), "a=s"))
    assert warnings_for(OTLP, per_signal) == [
        "OTLP headers given on the command line (--set logging.headers, --set tracing.headers.a) are visible to other "
        "users (ps, /proc) and kept in shell history: put them in CRYOSTORM_OTLP__HEADERS or an --env-file instead"
    ]


def test_ca_bundle_overrides_the_http_certificate(tmp_path: Path) -> None:
    ca = tls_files(tmp_path, ["ca"])["ca"]
    env = {**OTLP, "CRYOSTORM_OTLP__PROTOCOL": "http/protobuf", "CRYOSTORM_COLLECTOR": "https://collector:4318",
           "OTEL_EXPORTER_OTLP_CERTIFICATE": str(ca), "REQUESTS_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt"}
    assert warnings_for(env) == [
        "REQUESTS_CA_BUNDLE is set: the OTLP/HTTP exporter (requests) verifies the collector with it instead of "
        "otlp.certificate_file (from OTEL_EXPORTER_OTLP_CERTIFICATE); unset REQUESTS_CA_BUNDLE for the program, "
        "or point it at the same CA bundle"
    ]
    assert warnings_for({**env, "CRYOSTORM_OTLP__PROTOCOL": "grpc", "CRYOSTORM_COLLECTOR": "https://c:4317"}) == []


def test_sample_rate_without_a_ratio_sampler() -> None:
    assert warnings_for({"OTEL_TRACES_SAMPLER_ARG": "0.25"}) == [
        "tracing.sample_rate=0.25 (from OTEL_TRACES_SAMPLER_ARG) has no effect with sampling strategy "
        "parentbased_always_on: set tracing.sampling_strategy to parentbased_traceidratio or traceidratio"
    ]
    assert warnings_for({"OTEL_TRACES_SAMPLER_ARG": "0.25", "OTEL_TRACES_SAMPLER": "parentbased_traceidratio"}) == []


def test_default_service_name_with_otlp() -> None:
    assert warnings_for({"CRYOSTORM_EXPORTER_TYPE": "otlp"}) == [
        'service.name is not set: telemetry is exported as "unknown-service"; set CRYOSTORM_SERVICE__NAME, '
        "OTEL_SERVICE_NAME or --service-name"
    ]


def test_grpc_collector_with_a_path() -> None:
    assert warnings_for({**OTLP, "CRYOSTORM_COLLECTOR": "http://collector:4317/otlp"}) == [
        "collector path /otlp is ignored by gRPC (traces, metrics, logs; from CRYOSTORM_COLLECTOR): gRPC exports "
        "go to http://collector:4317; remove the path, or set otlp.protocol=http/protobuf"
    ]


def test_disabled_settings_only_warn_about_what_is_wrong_anyway() -> None:
    env = {"CRYOSTORM_ENABLED": "false", "CRYOSTORM_COLLECTOR": "http://collector:4318", "OTEL_TRACES_SAMPLER_ARG": "1",
           "OTEL_SERVCE_NAME": "x"}
    assert warnings_for(env) == ["OTEL_SERVCE_NAME is not an OpenTelemetry variable and is ignored "
                                 "(did you mean OTEL_SERVICE_NAME?)"]


def test_check_config_prints_warnings_on_stderr_and_strict_exits_2() -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPIONT": "http://collector:4317"}
    result = CliRunner().invoke(app, ["check-config"], env=env)
    assert result.exit_code == 0
    assert result.stdout == ""
    assert ("cryostorm: warning: OTEL_EXPORTER_OTLP_ENDPIONT is not an OpenTelemetry variable and is ignored "
            "(did you mean OTEL_EXPORTER_OTLP_ENDPOINT?)\n") in result.stderr
    strict = CliRunner().invoke(app, ["check-config", "--strict"], env=env)
    assert strict.exit_code == 2
    assert "cryostorm-run: --strict: 1 warning treated as errors" in strict.stderr
    assert CliRunner().invoke(app, ["check-config", "--strict"], env={}).exit_code == 0
    # The JSON said "valid": true beside exit 2: it agrees with the exit status now, and keeps the warning.
    for args, valid, code in ((["--strict", "--json"], False, 2), (["--json"], True, 0)):
        shown = CliRunner().invoke(app, ["check-config", *args], env=env)
        document = json.loads(shown.stdout)
        assert (shown.exit_code, document["valid"], len(document["warnings"])) == (code, valid, 1), shown.stdout


def test_check_config_json_lists_warnings() -> None:
    result = CliRunner().invoke(app, ["check-config", "--json"], env={"OTEL_TRACES_SAMPLER_ARG": "0.5"})
    data = json.loads(result.stdout)
    assert [w["code"] for w in data["warnings"]] == ["sample-rate-unused"]
    assert "cryostorm: warning: tracing.sample_rate=0.5" in result.stderr


def test_run_path_prints_the_same_warnings_before_exec() -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPIONT": "http://collector:4317", "CRYOSTORM_EXPORTER_TYPE": "none"}
    result = run_launcher(["--set", "otlp.headers=authorization=Bearer x", "--", sys.executable, "-c", "pass"], env=env)
    assert result.returncode == 0, result.stderr
    assert ("cryostorm: warning: OTEL_EXPORTER_OTLP_ENDPIONT is not an OpenTelemetry variable and is ignored "
            "(did you mean OTEL_EXPORTER_OTLP_ENDPOINT?)\n") in result.stderr
    assert "cryostorm: warning: OTLP headers given on the command line (--set otlp.headers)" in result.stderr


def test_advice_module_stays_off_typer_and_rich() -> None:
    import subprocess

    code = ("import sys; import cryostorm_run.config.advice, cryostorm_run.config.loading, "
            "cryostorm_run.config.configfile; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('typer', 'rich', 'click')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_leaf_names_reach_into_optional_nested_models() -> None:
    from cryostorm_run.config.names import iter_leaf_names

    names = set(iter_leaf_names())
    assert {"CRYOSTORM_SERVICE__NAME", "CRYOSTORM_COLLECTOR__PORT"} <= names
    # `tracing.collector` is `CollectorEndpoint | None`: its fields are names too
    assert {"CRYOSTORM_TRACING__COLLECTOR", "CRYOSTORM_TRACING__COLLECTOR__PORT"} <= names


def test_signals_left_to_the_console_default_beside_otlp_are_told() -> None:
    # opentelemetry-instrument's way: only OTEL_TRACES_EXPORTER=otlp set; with the distro, metrics and logs went
    # over OTLP too, here they would be written on the program's stderr without a word
    env = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317",
           "OTEL_SERVICE_NAME": "checkout"}
    assert warnings_for(env) == [
        "metrics and logs go to the default exporter, console (written on the program's stderr), while traces go "
        "over OTLP: set OTEL_METRICS_EXPORTER=otlp and OTEL_LOGS_EXPORTER=otlp to send them there too (or "
        "CRYOSTORM_EXPORTER_TYPE=otlp for every signal), or =none to turn them off"]
    # chosen for each signal: nothing to say
    assert warnings_for({**env, "OTEL_METRICS_EXPORTER": "console", "OTEL_LOGS_EXPORTER": "none"}) == []
    assert warnings_for({**env, "CRYOSTORM_EXPORTER_TYPE": "console"}) == []


def test_a_service_identity_with_a_line_break_or_space_at_an_end_is_told() -> None:
    # A Kubernetes ConfigMap or Secret made with --from-file keeps the file's last line break.
    assert warnings_for({"OTEL_SERVICE_NAME": "checkout\n", "CRYOSTORM_SERVICE__VERSION": " 1.2"}) == [
        "service.name 'checkout\\n' (from OTEL_SERVICE_NAME) begins or ends with a space or a line break (a value "
        "read from a file?): telemetry is exported under exactly that; set it to 'checkout'",
        "service.version ' 1.2' (from CRYOSTORM_SERVICE__VERSION) begins or ends with a space or a line break (a "
        "value read from a file?): telemetry is exported under exactly that; set it to '1.2'",
    ]
    assert warnings_for({"OTEL_SERVICE_NAME": "check out", "CRYOSTORM_SERVICE__VERSION": "1.2"}) == []


def test_a_reference_nothing_expanded_is_told_by_name_never_by_value(tmp_path: Path) -> None:
    # Kubernetes leaves $(POD_NAME) as written when POD_NAME is listed below the variable (or not at all).
    assert warnings_for({"OTEL_RESOURCE_ATTRIBUTES": "k8s.pod.name=$(POD_NAME),k8s.node.name=$(NODE),a=$(NODE)",
                         "CRYOSTORM_OTLP__HEADERS": "authorization=Bearer s3cret${TOKEN}"}) == [
        "CRYOSTORM_OTLP__HEADERS holds ${TOKEN} as written: nothing expanded it (no shell runs in an exec-form "
        "ENTRYPOINT or a Kubernetes env: value, where a reference is written $(NAME) and defined above); until then "
        "it is used as that text",
        "OTEL_RESOURCE_ATTRIBUTES holds $(POD_NAME) and $(NODE) as written: Kubernetes expands $(NAME) in an env: "
        "value only from variables defined above it in the container's env: list, so define POD_NAME and NODE "
        "above OTEL_RESOURCE_ATTRIBUTES; until then it is used as that text",
    ]
    env_file = tmp_path / "app.env"
    env_file.write_text("OTEL_SERVICE_NAME='$(SERVICE)'\n")  # python-dotenv expands ${X}, not $(X)
    assert warnings_for({}, env_file=env_file) == [
        f"OTEL_SERVICE_NAME in {env_file} holds $(SERVICE) as written: Kubernetes expands $(NAME) in an env: value "
        "only from variables defined above it in the container's env: list, so define SERVICE above "
        "OTEL_SERVICE_NAME; until then it is used as that text"]
    # a dollar that is not a reference, and variables that are not settings: nothing to say
    assert warnings_for({"OTEL_SERVICE_NAME": "pay$(", "CRYOSTORM_SERVICE__VERSION": "$1.2",
                         "APP_GREETING": "$(NAME)"}) == []
    result = run_launcher(["--", sys.executable, "-c", "pass"], env={"OTEL_SERVICE_NAME": "$(SVC)"})
    assert result.returncode == 0 and "cryostorm: warning: OTEL_SERVICE_NAME holds $(SVC) as written" in result.stderr


def test_a_value_in_quotes_a_deployment_kept_is_told_and_a_refused_one_says_so_first() -> None:
    # compose's `- OTEL_SERVICE_NAME="checkout"` and docker run --env-file keep the quotes as part of the value
    assert warnings_for({"OTEL_SERVICE_NAME": '"checkout"', "CRYOSTORM_SERVICE__VERSION": "'1.2'",
                         "OTEL_EXPORTER_OTLP_HEADERS": "'authorization=Bearer s3cret'", "APP_MODE": '"x"'}) == [
        "CRYOSTORM_SERVICE__VERSION: its single quotes are part of the value, as docker run --env-file and compose's "
        '`- NAME="value"` list keep them: it is used with them; write it without them',
        "OTEL_EXPORTER_OTLP_HEADERS: its single quotes are part of the value, as docker run --env-file and "
        'compose\'s `- NAME="value"` list keep them: it is used with them; write it without them',
        "OTEL_SERVICE_NAME: its double quotes are part of the value, as docker run --env-file and compose's "
        '`- NAME="value"` list keep them: it is used with them; write it without them',
    ]
    assert warnings_for({"OTEL_SERVICE_NAME": '"', "CRYOSTORM_SERVICE__VERSION": "'1.2\""}) == []
    result = run_launcher(["--", sys.executable, "-c", "pass"], env={
        "OTEL_TRACES_SAMPLER": "'always_on'", "OTEL_EXPORTER_OTLP_ENDPOINT": '"http://c:4317"'})
    assert result.returncode == 2
    assert ("  OTEL_TRACES_SAMPLER = ''always_on''\n    not an allowed value (its single quotes are part of the value, "
            "as docker run --env-file and compose's `- NAME=\"value\"` list keep them: write it without them; allowed: "
            "always_on, always_off, traceidratio") in result.stderr
    assert ("  OTEL_EXPORTER_OTLP_ENDPOINT = '\"http://c:4317\"'\n    URL scheme must be http or https, got '\"http' "
            "(its double quotes are part of the value") in result.stderr


def test_an_otel_variable_written_in_lower_case_is_told_as_ignored(tmp_path: Path) -> None:
    env_file = tmp_path / "app.env"
    env_file.write_text("otel_exporter_otlp_endpoint=http://collector:4317\n")
    assert warnings_for({"otel_service_name": "checkout", "Otel_Traces_Sampler": "always_off",
                         "cryostorm_service__version": "1.2"}, env_file=env_file) == [
        "Otel_Traces_Sampler is ignored: OpenTelemetry's variable names are upper case "
        "(did you mean OTEL_TRACES_SAMPLER?)",
        "otel_service_name is ignored: OpenTelemetry's variable names are upper case (did you mean OTEL_SERVICE_NAME?)",
        f"otel_exporter_otlp_endpoint in {env_file} is ignored: OpenTelemetry's variable names are upper case "
        "(did you mean OTEL_EXPORTER_OTLP_ENDPOINT?)",
    ]
    # cryostorm's own names are read in any case: that one is used, not ignored
    loaded = load_settings({"cryostorm_service__version": "1.2"}, config_dir=None)
    assert loaded.settings.service.version == "1.2"
    # told even when cryostorm is switched off (the program still reads OTEL_* itself)
    assert warnings_for({"CRYOSTORM_ENABLED": "false", "otel_sdk_disabled": "true"}) == [
        "otel_sdk_disabled is ignored: OpenTelemetry's variable names are upper case (did you mean OTEL_SDK_DISABLED?)"]


def test_an_insecure_setting_the_grpc_exporter_overrides_is_told() -> None:
    # the SDK's gRPC exporter: an https URL is TLS whatever insecure says; false makes an http URL TLS too
    assert warnings_for({**OTLP, "OTEL_EXPORTER_OTLP_ENDPOINT": "https://c:4317", "OTEL_EXPORTER_OTLP_INSECURE": "true"}
                        ) == ["otlp.insecure=true (from OTEL_EXPORTER_OTLP_INSECURE) has no effect on traces, metrics, "
                              "logs: an https:// collector URL is always TLS; for plaintext use an http:// URL"]
    assert warnings_for({**OTLP, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317",
                         "OTEL_EXPORTER_OTLP_TRACES_INSECURE": "false"}) == [
        "tracing.insecure=false (from OTEL_EXPORTER_OTLP_TRACES_INSECURE) makes traces use TLS with an http:// "
        "collector URL: write https:// if TLS is meant, or unset it for plaintext"]
    # as meant, and OTLP/HTTP (which has no such option): nothing to say
    assert warnings_for({**OTLP, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_INSECURE": "true"}
                        ) == []
    assert warnings_for({**OTLP, "OTEL_EXPORTER_OTLP_ENDPOINT": "https://c:4318", "OTEL_EXPORTER_OTLP_INSECURE": "true",
                         "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}) == []


def test_a_local_collector_reached_through_a_proxy_is_told_per_transport() -> None:
    # gRPC reads grpc_proxy/https_proxy/http_proxy and no_proxy in lower case only; requests reads either case
    local = {**OTLP, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317",
             "http_proxy": "http://user:pw@proxy.corp:3128", "NO_PROXY": "127.0.0.1,localhost"}
    assert warnings_for(local) == [
        "traces, metrics, logs go to 127.0.0.1:4317 through the proxy http://****:****@proxy.corp:3128 (http_proxy "
        "is set and no_proxy does not name 127.0.0.1): a refusal or a failure of the proxy will be told as the "
        "collector's; if the collector is reached directly, add its host to no_proxy (lower case: gRPC reads no "
        "other)"]
    http = {**local, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_EXPORTER_OTLP_PROTOCOL":
            "http/protobuf"}
    assert warnings_for(http) == []  # requests reads NO_PROXY
    assert warnings_for({**local, "no_proxy": ".svc.cluster.local,10.0.0.0/8,127.0.0.1"}) == []
    cluster = {**OTLP, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector.obs.svc.cluster.local:4317",
               "https_proxy": "http://proxy:3128", "no_proxy": ".svc.cluster.local"}
    assert warnings_for(cluster) == []
    assert warnings_for({**cluster, "no_proxy": "example.com"})[0].startswith(
        "traces, metrics, logs go to otel-collector.obs.svc.cluster.local:4317 through the proxy http://proxy:3128 "
        "(https_proxy is set")
    # a collector on the internet: a proxy is what reaches it
    assert warnings_for({**OTLP, "OTEL_EXPORTER_OTLP_ENDPOINT": "https://otlp.example.com:4317",
                         "https_proxy": "http://proxy:3128"}) == []
