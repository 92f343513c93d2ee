"""The hook builds each signal at its first use (export/deferred.py), and the program sees what it saw
when everything was built at start-up: the SDK's own providers, in whatever order it imports things.

Real launcher, real programs as subprocesses, the real OTLP receiver.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import CRYOSTORM_RUN, child_env
from otlp_receiver import Receiver

# What a process that emits nothing must not import (the SDK, the APIs, even `logging`).
NOT_AT_START = ("logging", "opentelemetry.trace", "opentelemetry._logs", "opentelemetry.metrics",
                "opentelemetry.propagate", "opentelemetry.sdk.trace", "opentelemetry.sdk._logs",
                "opentelemetry.sdk.resources", "opentelemetry.context")


def _run(program: str, receiver: Receiver, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {"CRYOSTORM_EXPORTER_TYPE": "otlp", "CRYOSTORM_COLLECTOR": receiver.grpc_endpoint,
           "CRYOSTORM_SERVICE__NAME": "deferred", **extra}
    done = subprocess.run([CRYOSTORM_RUN, "--quiet", "--", sys.executable, "-c", program], env=child_env(env),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "disabled in this process" not in done.stderr, done.stderr
    return done


def test_a_process_that_emits_nothing_imports_no_opentelemetry(otlp_receiver: Receiver) -> None:
    probe = ("import sys, json; print(json.dumps({'hook': 'cryostorm_run.hook.bootstrap' in sys.modules, "
             f"'loaded': sorted(m for m in {NOT_AT_START!r} if m in sys.modules)}}))")
    result = json.loads(_run(probe, otlp_receiver).stdout)
    assert result == {"hook": True, "loaded": []}


def test_a_process_that_emits_nothing_imports_nothing_at_exit_either(otlp_receiver: Receiver) -> None:
    # The exit report imported cryostorm_run.common.shown (its patterns: re, ~3-7 ms) in every process at exit,
    # nothing to report or not. `-X importtime` lists every import, the exit's included: none after site's.
    # Python's own imports after site are not ours: 3.13 imports linecache for `-c` code; the same
    # interpreter run bare, with the same -c, gives that baseline.
    done = _run("pass", otlp_receiver, PYTHONPROFILEIMPORTTIME="1")
    bare = subprocess.run([sys.executable, "-I", "-X", "importtime", "-c", "pass"], capture_output=True,
                          text=True, timeout=60, check=True)
    assert _after_site(done.stderr) - _after_site(bare.stderr) == set(), done.stderr


def _after_site(stderr: str) -> set[str]:
    lines = stderr.splitlines()
    at_start = [i for i, line in enumerate(lines) if line.startswith("import time:") and line.endswith("| site")]
    assert at_start, stderr
    return {line.rsplit("|", 1)[1].strip() for line in lines[at_start[-1] + 1:] if line.startswith("import time:")}


@pytest.mark.parametrize("first", ["from opentelemetry import trace",
                                   "from opentelemetry.sdk.trace import TracerProvider",
                                   "from opentelemetry.sdk.metrics import MeterProvider",
                                   "from opentelemetry.sdk._logs import LoggerProvider",
                                   "import logging"])
def test_the_program_gets_the_sdk_tracer_provider_whatever_it_imports_first(
        otlp_receiver: Receiver, first: str) -> None:
    """Each first import sets up its part right after it runs, inside the import of the SDK's own
    modules where the SDK imports the API: nothing may import a half-loaded module there."""
    program = (f"{first}\n"
               "from opentelemetry import trace\n"
               "from opentelemetry.sdk.trace import TracerProvider\n"
               "provider = trace.get_tracer_provider()\n"
               "print(type(provider).__name__, isinstance(provider, TracerProvider))\n"
               "trace.set_tracer_provider(TracerProvider())  # the program's own: refused, ours stays\n"
               "print(trace.get_tracer_provider() is provider)\n"
               "with trace.get_tracer('app').start_as_current_span('work'): pass\n")
    done = _run(program, otlp_receiver)
    assert done.stdout.split() == ["TracerProvider", "True", "True"]
    [span] = otlp_receiver.wait_for_spans("work")
    assert span.resource["service.name"] == "deferred"


OWN_SET_UP = """
from opentelemetry import _logs, metrics, trace
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
mine = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(mine))
trace.set_tracer_provider(provider)
metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))
_logs.set_logger_provider(LoggerProvider())
with trace.get_tracer("app").start_as_current_span("work"): pass
print(len(mine.get_finished_spans()))
"""


def test_a_programs_own_set_up_refused_is_told_with_what_it_means_and_how_to_keep_it(otlp_receiver: Receiver) -> None:
    # The program's own providers were refused with only the API's "Overriding of current TracerProvider is
    # not allowed": its processors and exporters got nothing, and nothing said why or what to do.
    done = _run(OWN_SET_UP, otlp_receiver)
    assert done.stdout == "0\n"  # its own exporter got nothing; the span went to cryostorm's
    otlp_receiver.wait_for_spans("work")
    told = [line for line in done.stderr.splitlines() if "was not installed" in line]
    assert [line.split(" (set at ")[0] for line in told] == [
        f"cryostorm: warning: the program's own {kind}Provider" for kind in ("Tracer", "Meter", "Logger")]
    assert [line.split(" (set at ")[1].split(")")[0] for line in told] == ["<string>:12", "<string>:13", "<string>:14"]
    assert "span processors and exporters attached to the program's provider receive none of them; fix: remove " \
           "the program's own set-up of traces, or set CRYOSTORM_TRACING__ENABLED=false to leave traces to the " \
           "program" in told[0]
    assert "Overriding of current" not in done.stderr
    # The fix, followed: traces left to the program, its own exporter gets the span
    done = _run(OWN_SET_UP, otlp_receiver, CRYOSTORM_TRACING__ENABLED="false")
    assert done.stdout == "1\n", done.stderr
    assert "own TracerProvider" not in done.stderr and "own MeterProvider" in done.stderr


OWN_INSTRUMENT = """
import requests
from opentelemetry.instrumentation.requests import RequestsInstrumentor
RequestsInstrumentor().instrument(excluded_urls="internal")
print(RequestsInstrumentor().is_instrumented_by_opentelemetry)
"""


def test_a_programs_own_instrument_call_that_does_nothing_is_told_with_how_to_keep_it(otlp_receiver: Receiver) -> None:
    # The program's own RequestsInstrumentor().instrument(excluded_urls=...) found requests instrumented by
    # cryostorm-run: upstream's bare "Attempting to instrument while already instrumented", its options ignored.
    done = _run(OWN_INSTRUMENT, otlp_receiver)
    assert done.stdout == "True\n"
    assert ("cryostorm: warning: the program's own RequestsInstrumentor().instrument() at <string>:4 did nothing: "
            "cryostorm-run had already instrumented requests with its defaults, so the options of the program's call "
            "(hooks, excluded URLs, ...) are not applied; fix: remove the call, or set "
            "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=requests to leave it to the program") in done.stderr, done.stderr
    assert "Attempting to instrument" not in done.stderr
    # The fix, followed: the program's own call instruments requests, nothing is said
    done = _run(OWN_INSTRUMENT, otlp_receiver, OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="requests")
    assert done.stdout == "True\n" and "instrument" not in done.stderr, done.stderr


def test_the_hooks_activation_after_the_programs_own_is_told_as_the_programs_kept() -> None:
    from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

    from cryostorm_run.hook.own_setup import told

    class SomeInstrumentor(BaseInstrumentor):  # type: ignore[misc]
        def instrumentation_dependencies(self) -> list[str]:
            return []

        def _instrument(self, **kwargs: object) -> None:
            pass

        def _uninstrument(self, **kwargs: object) -> None:
            pass

        def instrument(self, **kwargs: object) -> str | None:  # as upstream's: the warning logged in here
            return told("Attempting to instrument while already instrumented")

    # The hook's activation path, as bootstrap's _LazyDistro.load_instrumentor calls it
    space: dict[str, object] = {}
    exec(compile("def load_instrumentor(i):\n    return i.instrument()\n",
                 "/site/cryostorm_run/hook/bootstrap.py", "exec"), space)
    line = space["load_instrumentor"](SomeInstrumentor())  # type: ignore[operator]
    assert line == ("the program instrumented SomeInstrumentor itself (SomeInstrumentor().instrument()) before "
                    "cryostorm-run activated it: the program's own instrumentation and its options are kept")
    assert "did nothing" in str(SomeInstrumentor().instrument())  # called by the program: told as its own


def test_once_built_the_api_functions_are_the_apis_own_again(otlp_receiver: Receiver) -> None:
    # FastAPI asks for the global providers on every request: after the first build those calls no longer
    # pass through cryostorm's wrappers (one taken earlier still works, and still gets ours)
    program = ("from opentelemetry import trace, _logs\n"
               "early = trace.get_tracer_provider\n"
               "names = ['get_tracer_provider', 'set_tracer_provider']\n"
               "before = [hasattr(getattr(trace, n), '__wrapped__') for n in names]\n"
               "provider = trace.get_tracer_provider()\n"
               "after = [hasattr(getattr(trace, n), '__wrapped__') for n in names]\n"
               "logs = [hasattr(getattr(_logs, n), '__wrapped__') for n in ('get_logger_provider', 'get_logger')]\n"
               "_logs.get_logger('x')\n"
               "logs += [hasattr(getattr(_logs, n), '__wrapped__') for n in ('get_logger_provider', 'get_logger')]\n"
               "print(before, after, logs, early() is provider, type(provider).__module__)\n")
    done = _run(program, otlp_receiver)
    assert done.stdout.strip() == ("[True, True] [False, False] [True, True, False, False] True "
                                   "opentelemetry.sdk.trace"), done.stdout


def test_a_span_processor_the_program_adds_gets_the_spans(otlp_receiver: Receiver) -> None:
    """OpenTelemetry half set up: the program adds its own processor to the global provider."""
    program = ("from opentelemetry import trace\n"
               "from opentelemetry.sdk.trace.export import SimpleSpanProcessor\n"
               "from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter\n"
               "mine = InMemorySpanExporter()\n"
               "trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(mine))\n"
               "with trace.get_tracer('app').start_as_current_span('both'): pass\n"
               "print([s.name for s in mine.get_finished_spans()])\n")
    assert _run(program, otlp_receiver).stdout.strip() == "['both']"
    otlp_receiver.wait_for_spans("both")


# What a program imports first decides who imports logging: concurrent.futures does, half-loaded (asyncio's
# import, so every uvicorn and asyncio program). The bridge and the fork gate were then lost ("logs not
# bridged in this process": the gate's import of concurrent.futures.thread failed inside its package's).
@pytest.mark.parametrize("first", ["", "import asyncio\n", "import concurrent.futures.thread\n"],
                         ids=["logging", "asyncio", "concurrent.futures"])
def test_a_log_record_builds_the_logs_and_is_exported_with_its_trace(otlp_receiver: Receiver, first: str) -> None:
    program = (f"{first}import logging, sys\n"
               "print('cryostorm_run.export.forkgate' in sys.modules)\n"
               "logging.getLogger('app').warning('before any span')\n"
               "from opentelemetry import trace, _logs\n"
               "from opentelemetry.sdk._logs import LoggerProvider\n"
               "with trace.get_tracer('app').start_as_current_span('outer') as span:\n"
               "    record = logging.getLogRecordFactory()('app', 30, 'p.py', 1, 'x', (), None)\n"
               "    print(record.otelTraceID == format(span.get_span_context().trace_id, '032x'))\n"
               "    logging.getLogger('app').warning('inside')\n"
               "print(isinstance(_logs.get_logger_provider(), LoggerProvider))\n")
    done = _run(program, otlp_receiver)
    assert done.stdout.split() == ["True", "True", "True"], done.stderr
    assert done.stderr == "before any span\ninside\n"  # the program's own lines (logging's last resort), no other
    logs = otlp_receiver.wait_for_logs(lambda got: {"before any span", "inside"} <= {r.body for r in got})
    [outer] = otlp_receiver.wait_for_spans("outer")
    inside = next(r for r in logs if r.body == "inside")
    assert inside.trace_id == outer.trace_id


def test_metrics_the_program_records_are_exported(otlp_receiver: Receiver) -> None:
    program = ("from opentelemetry import metrics\n"
               "metrics.get_meter('app').create_counter('deferred.count').add(3)\n")
    _run(program, otlp_receiver)
    [metric] = [m for m in otlp_receiver.wait_for_metrics(lambda got: any(m.name == "deferred.count" for m in got))
                if m.name == "deferred.count"]
    assert sum(p["value"] for p in metric.points) == 3


def test_the_names_checked_at_start_up_are_the_ones_the_builders_know() -> None:
    """export/deferred.py checks names at start-up without importing the registries (they import the SDK)."""
    from cryostorm_run.export import deferred, sampling, signals

    registries = {"traces": signals.SPAN_EXPORTERS, "metrics": signals.METRIC_READERS, "logs": signals.LOG_EXPORTERS}
    assert {signal: tuple(sorted(names)) for signal, names in registries.items()} == deferred.EXPORTERS
    assert tuple(sampling.SAMPLERS) == deferred.SAMPLERS
    assert tuple(sampling.PROPAGATORS) == deferred.PROPAGATORS


@pytest.mark.parametrize(("variable", "value", "said"), [
    ("OTEL_TRACES_EXPORTER", "zipkin", "unknown traces exporter 'zipkin'; allowed: console, console_json, in_memory, "
     "otlp, pretty, none"),
    ("OTEL_LOGS_EXPORTER", "syslog", "unknown logs exporter 'syslog'; allowed: console, console_json, in_memory, "
     "otlp, pretty, none"),
    ("OTEL_TRACES_SAMPLER", "sometimes", "unknown sampler 'sometimes'; allowed: always_on, always_off, traceidratio, "
     "parentbased_always_on, parentbased_always_off, parentbased_traceidratio"),
    ("OTEL_PROPAGATORS", "tracecontext,xray", "unknown propagator 'xray'; allowed: tracecontext, baggage, b3, "
     "b3multi, jaeger"),
])
def test_a_name_nothing_knows_is_told_at_start_up_even_if_nothing_is_emitted(variable: str, value: str,
                                                                             said: str) -> None:
    """An environment written by hand (the launcher refuses these): told at once, telemetry off, the program
    runs, as when every provider was built at start-up."""
    from cryostorm_run.launch.plan import hook_dir

    env = child_env({"PYTHONPATH": str(hook_dir()), "OTEL_TRACES_EXPORTER": "console", "OTEL_LOGS_EXPORTER": "console",
                     variable: value, "_CRYOSTORM_REPORT": "quiet"})
    done = subprocess.run([sys.executable, "-c", "print('still here')"], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert (done.returncode, done.stdout) == (0, "still here\n")
    assert done.stderr.splitlines() == [f"cryostorm: telemetry disabled in this process: TelemetrySetupError: {said}"]


FREEZE_PROBE = """
import gc, json, weakref
class Node:
    pass
freed = []
cycle = Node(); cycle.me = cycle; weakref.finalize(cycle, freed.append, "cycle")
gc.collect()  # the cycle, still referenced, is now in the oldest generation
del cycle  # garbage now; only a full collection frees it
before = gc.get_freeze_count()
{first_use}
print(json.dumps({{"frozen_more": gc.get_freeze_count() > before, "cycle_freed": freed == ["cycle"]}}))
"""


@pytest.mark.parametrize(("first_use", "frozen"), [
    ("import requests", True),  # its instrumentation asks for a tracer while the program imports it
    ("from opentelemetry import trace; trace.get_tracer('app')", False),  # the program's own first use: no freeze
])
def test_the_first_build_during_a_library_import_frees_garbage_then_freezes(
        otlp_receiver: Receiver, first_use: str, frozen: bool) -> None:
    """Built while the program imports a library (start-up in all but name), the SDK's objects are frozen as
    when the hook built them at start-up; garbage cycles that already existed are freed first, never kept."""
    result = json.loads(_run(FREEZE_PROBE.format(first_use=first_use), otlp_receiver).stdout)
    assert result["frozen_more"] is frozen
    if frozen:  # (without a freeze, a full collection of the program's own may or may not have run yet)
        assert result["cycle_freed"] is True


FORK_DURING_BUILD = """
import logging, os, sys, threading, time
from opentelemetry import trace  # the program's own imports, done: the thread only builds
def first_use():
    if sys.argv[1] == "logs":
        logging.getLogger("app").warning("first, from a thread")
    else:
        with trace.get_tracer("app").start_as_current_span("first, from a thread"):
            pass
thread = threading.Thread(target=first_use)
thread.start()
time.sleep(float(sys.argv[2]))  # the thread is building the provider now (~50 ms of imports)
pid = os.fork()
if pid == 0:
    logging.getLogger("app").warning("from the child " + sys.argv[2])
    with trace.get_tracer("app").start_as_current_span("from the child " + sys.argv[2]):
        pass
    sys.exit(0)
thread.join()
print("child", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
"""


SLOW_GATE = """
import os, sys, threading, time
class SlowDisk:  # holds the fork gate's module lock for 0.5 s while it is imported, as a slow volume would
    def find_spec(self, name, path=None, target=None):
        if name == "cryostorm_run.export.forkgate":
            time.sleep(0.5)
sys.meta_path.insert(0, SlowDisk())
import logging
from opentelemetry import trace
def first_use():
    with trace.get_tracer("app").start_as_current_span("first, from a thread"):
        pass
thread = threading.Thread(target=first_use)
thread.start()
time.sleep(0.2)
pid = os.fork()
if pid == 0:
    with trace.get_tracer("app").start_as_current_span("from the child"):
        pass
    sys.exit(0)
thread.join()
print("child", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
"""


def _forking_program(receiver: Receiver, *argv: str) -> tuple[int, str, str]:
    """(status, stdout, stderr) of `python -c argv...` under cryostorm-run; the test fails if it hangs."""
    import os
    import signal

    env = child_env({"CRYOSTORM_EXPORTER_TYPE": "otlp", "CRYOSTORM_COLLECTOR": receiver.grpc_endpoint,
                     "CRYOSTORM_SERVICE__NAME": "deferred", "CRYOSTORM_METRICS__ENABLED": "false"})
    proc = subprocess.Popen([CRYOSTORM_RUN, "--quiet", "--", sys.executable, "-c", *argv], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"hung ({argv[1:]}): {out} {err}")
    return proc.returncode, out, err


def test_a_fork_while_another_thread_would_load_the_fork_gate(otlp_receiver: Receiver) -> None:
    """The fork gate is loaded with logging (hook/bootstrap.py), before any build. Before, the first build
    loaded it: a fork during that import (CI, Python 3.12: 1 run in ~75 under load) left its module lock
    held in the child, whose own build then waited for it for good."""
    status, out, err = _forking_program(otlp_receiver, SLOW_GATE)
    assert (status, out) == (0, "child 0\n"), err
    otlp_receiver.wait_for_spans("from the child", timeout=30)


@pytest.mark.parametrize("first", ["logs", "traces"])
def test_a_fork_while_another_thread_builds_the_first_provider(otlp_receiver: Receiver, first: str) -> None:
    """The fork waits for the build (export/forkgate.py). Before, the child waited for good on an import
    lock held by the building thread, which it does not have (every run, at each of these delays); and
    with the fork waiting, on logging's and concurrent.futures' locks, taken by their fork handlers."""
    for delay in ("0.005", "0.02"):
        status, out, err = _forking_program(otlp_receiver, FORK_DURING_BUILD, first, delay)
        assert (status, out) == (0, "child 0\n"), err
        assert "forked while" not in err, err  # the wait was enough: nothing to tell
        otlp_receiver.wait_for_logs(f"from the child {delay}", timeout=30)
        otlp_receiver.wait_for_spans(f"from the child {delay}", timeout=30)
