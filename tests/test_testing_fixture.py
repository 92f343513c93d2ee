"""`cryostorm_run.testing`: the fixture users put in their own test suites, used as they would."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from opentelemetry import trace

from cryostorm_run import Telemetry, TelemetrySettings
from cryostorm_run.testing import (
    SequentialIdGenerator,
    TelemetryCapture,
    capture_settings,
    capture_telemetry_fixture,  # noqa: F401  (users enable it with pytest_plugins: see the last test)
    captured_telemetry,
    reset_telemetry,
)

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _fresh_telemetry() -> Iterator[None]:
    reset_telemetry()
    yield
    reset_telemetry()


def test_fixture_captures_spans_metrics_and_logs_with_sequential_ids(capture_telemetry: TelemetryCapture) -> None:
    telemetry = capture_telemetry.telemetry
    assert telemetry is Telemetry.get_instance() and telemetry.initialized

    @telemetry.traced(span_name="checkout")
    def checkout() -> None:
        telemetry.create_counter("orders").add(1)
        telemetry.log(logging.INFO, "paid")

    with telemetry.start_as_current_span("request"):
        checkout()
    with telemetry.start_as_current_span("second-trace"):
        pass

    spans = {s.name: s for s in capture_telemetry.spans()}
    assert [(s.name, s.context.trace_id, s.context.span_id) for s in capture_telemetry.spans()] == [
        ("checkout", 1, 2),
        ("request", 1, 1),
        ("second-trace", 2, 3),
    ]
    assert spans["checkout"].parent is not None and spans["checkout"].parent.span_id == 1
    assert [m.name for m in capture_telemetry.metrics()] == ["orders"]
    (record,) = capture_telemetry.logs()
    assert (record.log_record.body, record.log_record.trace_id, record.log_record.span_id) == ("paid", 1, 2)


@pytest.mark.parametrize("enabled", ["", "true"])
def test_the_sdks_own_span_metrics_only_when_asked_for(enabled: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # SDK 1.40 recorded otel.sdk.span.* always, 1.44+ only when enabled: cryostorm applies the latter on every line.
    monkeypatch.setenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", enabled)
    with captured_telemetry() as capture:
        with capture.telemetry.start_as_current_span("job"):
            capture.telemetry.create_counter("jobs").add(1)
        names = {m.name for m in capture.metrics()}
    if enabled:  # newer SDKs add more of their own (processor metrics)
        assert {"jobs", "otel.sdk.span.live", "otel.sdk.span.started"} <= names
    else:
        assert names == {"jobs"}


def test_each_test_starts_from_scratch(capture_telemetry: TelemetryCapture) -> None:
    assert capture_telemetry.spans() == [] and capture_telemetry.logs() == []
    with capture_telemetry.telemetry.start_as_current_span("again"):
        pass
    assert capture_telemetry.spans()[0].context.trace_id == 1  # ids restart in every test


def test_clear_forgets_spans_and_logs(capture_telemetry: TelemetryCapture) -> None:
    with capture_telemetry.telemetry.start_as_current_span("before"):
        capture_telemetry.telemetry.log(logging.WARNING, "before")
    capture_telemetry.clear()
    assert capture_telemetry.spans() == [] and capture_telemetry.logs() == []


def test_the_fixture_leaves_nothing_behind() -> None:
    with captured_telemetry() as capture:
        telemetry = capture.telemetry
    assert not telemetry.initialized
    assert not Telemetry.get_instance().initialized
    assert trace.get_tracer_provider().__class__.__name__ == "ProxyTracerProvider"


def test_sequential_ids_are_thread_safe_and_not_random() -> None:
    import threading

    ids = SequentialIdGenerator()
    seen: list[int] = []
    threads = [
        threading.Thread(target=lambda: seen.extend(ids.generate_span_id() for _ in range(100))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(seen) == list(range(1, 801))
    assert ids.is_trace_id_random() is False


def test_capture_settings_are_in_memory_and_quiet() -> None:
    settings = capture_settings("billing")
    assert settings.service.name == "billing"
    assert settings.service.environment.value != "development"  # no console echo of log records
    assert settings.tracing.processor_type.value == settings.logging.processor_type.value == "simple"


def test_capture_refuses_settings_that_do_not_export_in_memory() -> None:
    console = TelemetrySettings(exporter_type="in_memory", metrics={"exporter_type": "console"})
    with pytest.raises(RuntimeError, match="in_memory exporter for metrics"), captured_telemetry(console):
        pass
    assert not Telemetry.get_instance().initialized


def test_the_documented_plugin_setup_works_in_a_users_suite(pytester: pytest.Pytester) -> None:
    pytester.makeconftest('pytest_plugins = ["cryostorm_run.testing"]\n')
    pytester.makepyfile(
        test_user="""
        import logging

        def test_checkout_is_traced(capture_telemetry):
            telemetry = capture_telemetry.telemetry
            with telemetry.start_as_current_span("checkout"):
                telemetry.log(logging.INFO, "paid")
            assert [span.name for span in capture_telemetry.spans()] == ["checkout"]
            assert capture_telemetry.logs()[0].log_record.body == "paid"
        """
    )
    result = pytester.runpytest_subprocess("-W", "error", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize(("module", "name"), [("opentelemetry.trace", "_TRACER_PROVIDER_SET_ONCE"),
                                              ("opentelemetry.metrics._internal", "_PROXY_METER_PROVIDER"),
                                              ("opentelemetry._logs._internal", "_LOGGER_PROVIDER")])
def test_resetting_globals_an_api_no_longer_has_is_refused_and_changes_nothing(module: str, name: str) -> None:
    # the listed fallback (README, "Private attributes"): a clear error, not a half-reset process
    import importlib

    from cryostorm_run.testing import reset_opentelemetry_globals

    provider = trace.get_tracer_provider()
    with pytest.MonkeyPatch.context() as patch:
        patch.delattr(importlib.import_module(module), name)
        with pytest.raises(RuntimeError, match=rf"cannot reset .*{module}\.{name} missing.*own process"):
            reset_opentelemetry_globals()
        assert trace.get_tracer_provider() is provider
