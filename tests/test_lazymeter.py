"""cryostorm_run/export/lazymeter.py: the SDK's MeterProvider only once a meter is asked for.

In real hooked processes against the real OTLP receiver: a process (and its Python child) that never
asks for a meter never imports `opentelemetry.sdk.metrics` and exports no metrics; a program that
records a counter still exports it, also from a forked worker whose parent never asked for a meter.
Then the provider itself, in process: built once under concurrent first use, never by shutdown or
flush, a failed build said once and never fatal.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from conftest import PYTHON, run_launcher
from otlp_receiver import Receiver

from cryostorm_run.export.lazymeter import LazyMeterProvider

NO_METER = """
import json, subprocess, sys
probe = "import sys; print('opentelemetry.sdk.metrics' in sys.modules)"
child = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
print(json.dumps({"main": "opentelemetry.sdk.metrics" in sys.modules, "child": child}))
"""

COUNTER = """
import json, sys
from opentelemetry import metrics
metrics.get_meter("lazy").create_counter("lazy.jobs").add(3)
provider = metrics.get_meter_provider()
print(json.dumps({"type": type(provider).__name__, "sdk": type(provider.sdk_provider).__module__}))
"""

FORKED = """
import json, os, sys
pid = os.fork()
if pid == 0:  # the worker asks for the first meter; it leaves normally (atexit flushes)
    from opentelemetry import metrics
    metrics.get_meter("lazy").create_counter("lazy.forked").add(2)
    sys.exit(0)
_, status = os.waitpid(pid, 0)
print(json.dumps({"worker": pid, "status": status, "parent_sdk": "opentelemetry.sdk.metrics" in sys.modules}))
"""


def _env(rcv: Receiver) -> dict[str, str]:
    return {"CRYOSTORM_EXPORTER_TYPE": "otlp", "CRYOSTORM_COLLECTOR": rcv.grpc_endpoint,
            "CRYOSTORM_SERVICE__NAME": "lazy", "CRYOSTORM_SERVICE__ENVIRONMENT": "production",
            "CRYOSTORM_METRICS__EXPORT_INTERVAL_MILLIS": "60000"}  # only the exit flush delivers


def test_a_process_that_asks_for_no_meter_never_imports_the_metrics_sdk(otlp_receiver: Receiver) -> None:
    result = run_launcher(["--quiet", "--", PYTHON, "-c", NO_METER], _env(otlp_receiver))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"main": False, "child": "False"}
    time.sleep(0.5)  # the exit flush is synchronous; a straggler would still show up here
    assert otlp_receiver.metrics() == []


def test_a_counter_is_exported_through_the_lazy_provider(otlp_receiver: Receiver) -> None:
    result = run_launcher(["--quiet", "--", PYTHON, "-c", COUNTER], _env(otlp_receiver))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"type": "LazyMeterProvider", "sdk": "opentelemetry.sdk.metrics._internal"}
    metrics = otlp_receiver.wait_for_metrics("lazy.jobs", timeout=30)
    [jobs] = [m for m in metrics if m.name == "lazy.jobs"]
    assert [p["value"] for p in jobs.points] == [3]
    assert jobs.resource["service.name"] == "lazy"


def test_a_forked_worker_builds_its_own_provider_and_exports(otlp_receiver: Receiver) -> None:
    result = run_launcher(["--quiet", "--", PYTHON, "-c", FORKED], _env(otlp_receiver))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["status"] == 0 and out["parent_sdk"] is False
    metrics = otlp_receiver.wait_for_metrics("lazy.forked", timeout=30)
    [forked] = [m for m in metrics if m.name == "lazy.forked"]
    assert [p["value"] for p in forked.points] == [2]
    assert forked.resource["process.pid"] == out["worker"]


# -- the provider, in process --------------------------------------------------------------------


class _Built:
    """Stands for the SDK's MeterProvider: counts builds, flushes and shutdowns."""

    def __init__(self) -> None:
        self.meters: list[str] = []
        self.calls: list[str] = []

    def get_meter(self, name: str, *args: Any, **kwargs: Any) -> Any:
        from opentelemetry.metrics import NoOpMeter

        self.meters.append(name)
        return NoOpMeter(name)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        self.calls.append("flush")
        return True

    def shutdown(self, timeout_millis: float = 30_000) -> None:
        self.calls.append("shutdown")


def test_concurrent_first_meters_build_it_once() -> None:
    built: list[_Built] = []

    def build() -> _Built:
        time.sleep(0.05)  # a slow build: every thread arrives while it runs
        built.append(_Built())
        return built[-1]

    provider = LazyMeterProvider(build)
    threads = [threading.Thread(target=provider.get_meter, args=(f"m{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(built) == 1
    assert sorted(built[0].meters) == [f"m{i}" for i in range(8)]
    assert provider.used


def test_flush_and_shutdown_never_build_it(caplog: pytest.LogCaptureFixture) -> None:
    provider = LazyMeterProvider(lambda: pytest.fail("built"))
    assert provider.force_flush() is True
    provider.shutdown()
    assert not provider.built
    meter = provider.get_meter("late")  # after shutdown: a no-op meter and the SDK's warning, as before
    meter.create_counter("late").add(1)
    assert not provider.built
    assert "A shutdown `MeterProvider` can not provide a `Meter`" in caplog.text


def test_flush_and_shutdown_reach_the_built_provider() -> None:
    inner = _Built()
    provider = LazyMeterProvider(lambda: inner)
    provider.get_meter("cryostorm")
    assert provider.built and not provider.used  # cryostorm's own meter is not the program's
    assert provider.force_flush() is True
    provider.shutdown()
    assert inner.calls == ["flush", "shutdown"]


def test_a_failed_build_is_said_once_and_never_breaks_the_program(capsys: pytest.CaptureFixture[str]) -> None:
    attempts: list[int] = []

    def build() -> Any:
        attempts.append(1)
        raise RuntimeError("no reader for you")

    provider = LazyMeterProvider(build)
    for _ in range(3):
        provider.get_meter("app").create_counter("jobs").add(1)
    assert len(attempts) == 1
    assert capsys.readouterr().err == "cryostorm: metrics disabled in this process: RuntimeError: no reader for you\n"
    with pytest.raises(RuntimeError):  # asked for explicitly, the error is the caller's to see
        LazyMeterProvider(build).sdk_provider  # noqa: B018


def test_a_meter_asked_for_by_the_build_itself_follows_the_built_provider() -> None:
    inner = _Built()
    early: list[Any] = []

    def build() -> _Built:
        early.append(provider.get_meter("opentelemetry-sdk"))  # an exporter's own metrics, while building
        return inner

    provider = LazyMeterProvider(build)
    provider.get_meter("app")
    assert inner.meters == ["opentelemetry-sdk", "app"]  # the early meter was handed the built provider
    early[0].create_counter("exported").add(1)


def test_the_first_item_s_callbacks_run_in_an_export_worker_not_the_programs_thread() -> None:
    """cryostorm's own metrics are registered on the first queued item; with the lazy meter provider that
    builds the SDK one (~20 ms): in the first export worker, so the program's first request never waits."""
    import threading
    import time

    from cryostorm_run.export import batch

    seen: list[str] = []
    saved = (list(batch.ON_FIRST_ITEM), batch._first_item_seen)
    batch.ON_FIRST_ITEM[:] = [lambda: seen.append(threading.current_thread().name)]
    batch._first_item_seen = False
    try:
        exported: list[int] = []
        queue = batch.BatchQueue(type("E", (), {"export": lambda self, b: exported.extend(b) or True})(), "spans",
                                 max_queue_size=64, schedule_delay_ms=50, max_export_batch_size=8)
        assert queue.put(1)
        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:
            time.sleep(0.01)
        assert seen == ["cryostorm-export-spans"]
        assert queue.put(2)
        assert queue.shutdown(5000)
        assert sorted(exported) == [1, 2] and seen == ["cryostorm-export-spans"]  # once per process
    finally:
        batch.ON_FIRST_ITEM[:], batch._first_item_seen = saved


def test_without_the_apis_private_proxy_a_meter_asked_for_by_the_build_is_a_no_op(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # the listed fallback (README, "Private attributes"): an API without `_ProxyMeter` costs those metrics only
    import opentelemetry.metrics._internal as internal
    from opentelemetry.metrics import NoOpMeter

    monkeypatch.delattr(internal, "_ProxyMeter")
    inner = _Built()
    early: list[Any] = []

    def build() -> _Built:
        early.append(provider.get_meter("opentelemetry-sdk"))
        return inner

    provider = LazyMeterProvider(build)
    provider.get_meter("app")
    assert isinstance(early[0], NoOpMeter) and inner.meters == ["app"]
    early[0].create_counter("exported").add(1)  # harmless
