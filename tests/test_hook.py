"""The real hook in a real interpreter: `cryostorm-run -- python ...` end to end, no mocks."""

from __future__ import annotations

import functools
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import CRYOSTORM_RUN, PYTHON, ROOT, child_env, run_launcher
from otlp_receiver import Receiver

from cryostorm_run.launch.plan import hook_dir

APPS = ROOT / "tests" / "apps"
HOOK_DIR = str(hook_dir())
CANARY = "canary-s3cr3t-123"
PROTOCOLS = ["grpc", "http/protobuf"]


def otlp_env(rcv: Receiver, protocol: str = "grpc", **extra: str) -> dict[str, str]:
    port = rcv.grpc_port if protocol == "grpc" else rcv.http_port
    collector = f"http://127.0.0.1:{port}"
    env = {"CRYOSTORM_EXPORTER_TYPE": "otlp", "CRYOSTORM_COLLECTOR": collector, "CRYOSTORM_OTLP__PROTOCOL": protocol}
    return {**env, "CRYOSTORM_SERVICE__NAME": "hook-test", **extra}


class Launched:
    """`cryostorm-run ARGS` started with Popen; both pipes drained by threads, cleaned up on exit."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [CRYOSTORM_RUN, *args], env=child_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self._err: list[str] = []
        pumps = ((self.proc.stdout, self.lines.put), (self.proc.stderr, self._err.append))
        self._threads = [threading.Thread(target=self._pump, args=pump, daemon=True) for pump in pumps]
        for t in self._threads:
            t.start()

    @staticmethod
    def _pump(stream, put) -> None:
        for line in stream:
            put(line)

    def __enter__(self) -> Launched:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.finish()

    def finish(self, timeout: float = 60) -> int:
        """Wait for the exit (and the pipes' end); the exit status."""
        code = self.proc.wait(timeout=timeout)
        for t in self._threads:
            t.join(timeout)
        self.proc.stdout.close()
        self.proc.stderr.close()
        return code

    @property
    def stderr(self) -> str:
        return "".join(self._err)

    def stdout(self) -> str:
        """The stdout lines not yet taken by `next_line`."""
        return "".join(self.lines.queue)

    def next_line(self, timeout: float = 60) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no line on stdout within {timeout} s; stderr so far: {self.stderr!r}")


def _candidate_interpreters() -> list[str]:
    found = [shutil.which(f"python3.{minor}") for minor in range(14, 9, -1)]
    pyenv = shutil.which("pyenv")
    if pyenv:
        root = subprocess.run([pyenv, "root"], capture_output=True, text=True, check=False).stdout.strip()
        found += [str(p) for p in sorted(Path(root).glob("versions/3.*/bin/python3"), reverse=True)] if root else []
    found += [shutil.which("python3")]
    return [c for c in dict.fromkeys(found) if c]


@functools.cache
def foreign_python() -> str:
    """A Python 3.10+ of another environment than the suite's, without cryostorm_run: found on PATH
    (python3.X) or among pyenv's versions. Fails, naming what was tried, when there is none."""
    probe = ("import importlib.util, sys; print(sys.executable); print(sys.prefix); "
             "print(sys.version_info >= (3, 10) and importlib.util.find_spec('cryostorm_run') is None)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    tried = []
    for candidate in _candidate_interpreters():
        result = subprocess.run([candidate, "-c", probe], capture_output=True, text=True, env=env, cwd="/",
                                check=False)  # not the repository root: its cryostorm_run/ would be importable
        lines = result.stdout.split()
        tried.append(f"{candidate}: {lines or result.stderr.strip()[-80:]}")
        if result.returncode == 0 and lines[1] != sys.prefix and lines[2] == "True":
            return lines[0]  # the interpreter itself, not a pyenv shim in front of it
    pytest.fail("no Python 3.10+ of another environment (without cryostorm-run) found: install one, e.g. "
                f"with pyenv or apt (python3.X); tried: {'; '.join(tried) or 'nothing on PATH'}")


FOREIGN_SITECUSTOMIZE_MARKER = "the foreign venv's own sitecustomize ran"


@pytest.fixture(scope="module")
def foreign_venv(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A virtualenv of a foreign interpreter, without cryostorm, with a sitecustomize of its own that
    prints a marker line on stdout. Returns its python."""
    venv = tmp_path_factory.mktemp("foreign") / "venv"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    made = subprocess.run([foreign_python(), "-m", "venv", "--without-pip", str(venv)], capture_output=True,
                          text=True, env=env, check=False)
    assert made.returncode == 0, f"cannot make a venv with {foreign_python()}: {made.stderr}"
    python = str(venv / "bin" / "python")
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             capture_output=True, text=True, env=env, check=True).stdout.strip()
    Path(purelib, "sitecustomize.py").write_text(f"print({FOREIGN_SITECUSTOMIZE_MARKER!r}, flush=True)\n")
    alone = subprocess.run([python, "-c", "pass"], capture_output=True, text=True, env=env, check=True)
    assert alone.stdout == FOREIGN_SITECUSTOMIZE_MARKER + "\n", "the venv's sitecustomize does not run on its own"
    return python


# -- 1. spans, resource and PID --------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_traced_script_sends_nested_spans_from_the_launchers_pid(otlp_receiver: Receiver, protocol: str) -> None:
    env = otlp_env(otlp_receiver, protocol, CRYOSTORM_TRACING__PROCESSOR_TYPE="simple")
    with Launched(["--", PYTHON, str(APPS / "traced.py")], env) as run:
        assert run.finish() == 0, run.stderr
        printed_pid = int(run.stdout())
    assert printed_pid == run.proc.pid, "exec must keep the launcher's PID"
    spans = {s.name: s for s in otlp_receiver.wait_for_spans(lambda s: {"outer", "inner"} <= {x.name for x in s})}
    outer, inner = spans["outer"], spans["inner"]
    assert outer.parent_span_id is None
    assert inner.parent_span_id == outer.span_id
    assert inner.trace_id == outer.trace_id
    for span in (outer, inner):
        assert span.resource["service.name"] == "hook-test"
        assert span.resource["process.pid"] == printed_pid
        assert span.transport == ("grpc" if protocol == "grpc" else "http")


# -- 2. the user's own sitecustomize ---------------------------------------------------------------


def test_users_sitecustomize_still_runs_and_program_is_instrumented(otlp_receiver: Receiver, tmp_path: Path) -> None:
    site = tmp_path / "usersite"
    site.mkdir()
    marker = tmp_path / "user-sitecustomize-ran"
    # It records which program it ran in (the launcher, a Python program too, also imports it).
    (site / "sitecustomize.py").write_text(
        f"import sys\nwith open({str(marker)!r}, 'a') as f:\n    f.write(sys.argv[0] + '\\n')\n"
    )
    script = str(APPS / "traced.py")
    env = otlp_env(otlp_receiver, PYTHONPATH=str(site))
    result = run_launcher(["--quiet", "--", PYTHON, script], env)
    assert result.returncode == 0, result.stderr
    assert marker.exists(), "the user's sitecustomize never ran"
    assert script in marker.read_text().splitlines(), "the user's sitecustomize did not run in the program"
    assert result.stderr == ""
    otlp_receiver.wait_for_spans(lambda s: {"outer", "inner"} <= {x.name for x in s})


# -- 3. exit status and stdout ---------------------------------------------------------------------


def test_sys_exit_status_is_the_programs() -> None:
    result = run_launcher(["--", PYTHON, str(APPS / "exits.py"), "code"])
    assert result.returncode == 7, result.stderr
    assert result.stdout == "before exit\n"
    assert "cryostorm: service=" in result.stderr  # the report goes to stderr, never stdout


def test_uncaught_exception_exits_1_with_traceback_on_stderr() -> None:
    result = run_launcher(["--", PYTHON, str(APPS / "exits.py"), "raise"])
    assert result.returncode == 1, result.stderr
    assert result.stdout == "before exit\n"
    assert "Traceback (most recent call last)" in result.stderr
    assert "RuntimeError: boom from the program" in result.stderr


# -- 4. SIGTERM ------------------------------------------------------------------------------------


def test_sigterm_runs_the_programs_own_handler() -> None:
    with Launched(["--quiet", "--", PYTHON, str(APPS / "sigterm.py"), "handler"], {}) as run:
        assert run.next_line() == "ready\n", run.stderr
        run.proc.send_signal(signal.SIGTERM)
        assert run.finish() == 0, run.stderr
        assert run.stdout() == "handled\n"


def test_sigterm_without_handler_dies_by_the_signal_and_flushes_buffered_span(otlp_receiver: Receiver) -> None:
    # A long schedule delay: the span can only reach the receiver through the SIGTERM flush.
    env = otlp_env(otlp_receiver, CRYOSTORM_TRACING__EXPORT_CONFIG__SCHEDULE_DELAY_MILLIS="600000")
    with Launched(["--quiet", "--", PYTHON, str(APPS / "sigterm.py"), "none"], env) as run:
        assert run.next_line() == "ready\n", run.stderr
        assert otlp_receiver.spans() == [], "the span was exported before SIGTERM: the test proves nothing"
        run.proc.send_signal(signal.SIGTERM)
        assert run.finish() == -signal.SIGTERM, run.stderr
    otlp_receiver.wait_for_spans("buffered-before-sigterm", timeout=10)


# -- 5. commands that cannot run -------------------------------------------------------------------


def test_missing_command_exits_127_with_one_line() -> None:
    result = run_launcher(["--", "nosuchcmd-cryostorm-test", "arg"])
    assert result.returncode == 127
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("cryostorm-run: nosuchcmd-cryostorm-test")
    assert "command not found" in lines[0]


def test_non_executable_file_exits_126(tmp_path: Path) -> None:
    script = tmp_path / "not-executable.sh"
    script.write_text("#!/bin/sh\necho should-not-run\n")
    script.chmod(0o644)
    result = run_launcher(["--", str(script)])
    assert result.returncode == 126, result.stderr
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"cryostorm-run: {script}")
    assert "Traceback" not in result.stderr


# -- 6. disabled -----------------------------------------------------------------------------------


def test_disabled_runs_the_program_untouched() -> None:
    enabled = run_launcher(["--quiet", "--", PYTHON, str(APPS / "show_env.py")])
    assert enabled.returncode == 0, enabled.stderr
    assert HOOK_DIR in enabled.stdout  # control: enabled, the hook is on PYTHONPATH
    assert "OTEL_TRACES_EXPORTER=console" in enabled.stdout

    for switch, run in [({"CRYOSTORM_ENABLED": "false"}, 1), ({"CRYOSTORM_ENABLED": "false"}, 2),  # 2: cached plan
                        ({"OTEL_SDK_DISABLED": "true"}, 1)]:
        result = run_launcher(["--", PYTHON, str(APPS / "show_env.py")], switch)
        assert result.returncode == 0, result.stderr
        assert result.stdout == ("PYTHONPATH=<unset>\nOTEL_TRACES_EXPORTER=<unset>\n"
                                 "OTEL_SEMCONV_STABILITY_OPT_IN=<unset>\n")
        # Said in the start-up report's place (a kill switch left in a base image is not silent), run after run
        assert result.stderr == f"cryostorm: telemetry off ({next(iter(switch))}): the program runs without it\n", run
    quiet = run_launcher(["--quiet", "--", PYTHON, str(APPS / "show_env.py")], {"CRYOSTORM_ENABLED": "false"})
    assert (quiet.returncode, quiet.stderr) == (0, "")


# -- 7. foreign interpreters -----------------------------------------------------------------------


def test_foreign_interpreter_child_steps_aside_quietly(foreign_venv: str) -> None:
    # The child is a virtualenv's python with a sitecustomize of its own: the hook (first on the
    # child's PYTHONPATH) must still chain to it, then step aside without a word.
    result = run_launcher(
        ["--quiet", "--", PYTHON, str(APPS / "foreign_child.py"), foreign_venv], {"CRYOSTORM_EXPORTER_TYPE": "none"}
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{FOREIGN_SITECUSTOMIZE_MARKER}\nforeign ok\n"
    assert result.stderr == ""


def test_foreign_interpreter_as_target_warns_not_instrumented() -> None:
    foreign = foreign_python()
    result = run_launcher(["--", foreign, "-c", "print(1)"])
    assert result.returncode == 0, result.stderr
    assert result.stdout == "1\n"
    warnings = [line for line in result.stderr.splitlines() if line.startswith("cryostorm: NOT instrumented")]
    assert len(warnings) == 1, result.stderr
    assert foreign in warnings[0]


# -- 8. invalid configuration ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("CRYOSTORM_TRACING__SAMPLE_RATE", "2", ["'2'", "<= 1"]),
        ("OTEL_TRACES_SAMPLER", "bogus", ["'bogus'", "allowed", "always_on", "parentbased_traceidratio"]),
    ],
)
def test_invalid_config_is_refused_before_anything_runs(
    tmp_path: Path, name: str, value: str, expected: list[str]
) -> None:
    marker = tmp_path / "program-ran"
    result = run_launcher(["--", PYTHON, str(APPS / "touch_marker.py"), str(marker)], {name: value})
    assert result.returncode == 2, result.stderr
    assert not marker.exists(), "the program ran despite the invalid configuration"
    assert name in result.stderr
    for text in expected:
        assert text in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


# -- 9. secrets ------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("report", ["--quiet", "--verbose", None])
def test_otlp_header_secret_is_sent_but_never_printed(protocol: str, report: str | None) -> None:
    with Receiver(required_headers={"authorization": f"Bearer {CANARY}"}) as rcv:
        env = otlp_env(rcv, protocol, CRYOSTORM_OTLP__HEADERS=f"authorization=Bearer {CANARY}")
        args = [report] if report else []
        result = run_launcher([*args, "--", PYTHON, str(APPS / "traced.py")], env)
        assert result.returncode == 0, result.stderr
        assert CANARY not in result.stdout
        assert CANARY not in result.stderr
        rcv.wait_for_spans(lambda s: {"outer", "inner"} <= {x.name for x in s})
        traces = [r for r in rcv.requests() if r.signal == "traces"]
        assert traces
        assert all(r.accepted for r in traces)
        assert all(r.headers.get("authorization") == f"Bearer {CANARY}" for r in traces)


# -- 10. logging as the app sees it ----------------------------------------------------------------


@pytest.mark.parametrize("environment", ["production", "development"])
def test_unconfigured_logging_warning_printed_once_as_without_cryostorm(
    otlp_receiver: Receiver, environment: str
) -> None:
    script = str(APPS / "log_plain.py")
    plain = subprocess.run([PYTHON, script], env=child_env(), capture_output=True, text=True, timeout=60, check=False)
    assert plain.returncode == 0, plain.stderr
    assert plain.stderr == "careful\n"
    env = otlp_env(otlp_receiver, CRYOSTORM_SERVICE__ENVIRONMENT=environment)
    result = run_launcher(["--quiet", "--", PYTHON, script], env)
    assert result.returncode == 0, result.stderr
    # development too: records sent to OTLP are not also echoed unless logging.console_echo asks (issue 15)
    assert result.stderr == plain.stderr
    otlp_receiver.wait_for_logs("careful")  # and the record was exported too


UNFORMATTABLE = """
import logging, sys
class Unprintable:
    def __str__(self):
        raise ValueError("no str")
handler = logging.StreamHandler(sys.stderr)
handler.setLevel(logging.WARNING)
logging.basicConfig(level=logging.INFO, handlers=[handler])
log = logging.getLogger("app")
log.info("user %s logged in from %s", "bob")  # below the program's handler: only the bridge formats it
log.warning("bad %d", "x")  # the program's handler prints Python's own "--- Logging error ---"
log.info(Unprintable())
log.info("fine %s", "record")
print("done", flush=True)
"""


def _without_call_stacks(stderr: str) -> list[str]:
    """Python's "--- Logging error ---" blocks without their "Call stack:" part (under the hook it also shows the
    frame of cryostorm's `Logger.callHandlers`, README Known limits)."""
    kept, skipping = [], False
    for line in stderr.splitlines():
        skipping = line == "Call stack:" or (skipping and not line.startswith("Message: "))
        if not skipping:
            kept.append(line)
    return kept


def test_a_record_whose_message_cannot_be_formatted_gets_no_traceback_of_cryostorms(otlp_receiver: Receiver) -> None:
    """Bad %-arguments or a `__str__` that raises: the program's own handler prints Python's "--- Logging error ---"
    exactly as without cryostorm, and nothing more; the bridge exports the message unformatted (a string) or
    skips the record, and says so on one rate-limited line (was one more full traceback per record)."""
    plain = subprocess.run([PYTHON, "-c", UNFORMATTABLE], env=child_env(), capture_output=True, text=True, timeout=60,
                           check=False)
    assert (plain.returncode, plain.stdout) == (0, "done\n"), plain
    assert plain.stderr.count("--- Logging error ---") >= 1, plain  # 3.13 prints one more than 3.11
    env = otlp_env(otlp_receiver, CRYOSTORM_SERVICE__ENVIRONMENT="production")
    result = run_launcher(["--quiet", "--", PYTHON, "-c", UNFORMATTABLE], env)
    assert (result.returncode, result.stdout) == (0, "done\n"), result.stderr
    ours = [line for line in result.stderr.splitlines() if line.startswith("cryostorm: ")]
    assert ours == ["cryostorm: a log record of logger 'app' (<string>:10) has a message that cannot be formatted "
                    "(TypeError: not enough arguments for format string): exported with its message unformatted"]
    theirs = "".join(line for line in result.stderr.splitlines(keepends=True) if not line.startswith("cryostorm: "))
    assert _without_call_stacks(theirs) == _without_call_stacks(plain.stderr), result.stderr
    bodies = [log.body for log in otlp_receiver.wait_for_logs("fine record")]
    assert bodies == ["user %s logged in from %s", "bad %d", "fine record"], bodies


def test_basic_config_still_works_under_the_hook(otlp_receiver: Receiver) -> None:
    script = str(APPS / "log_basic.py")
    # production: log records are not also echoed to the console as JSON (development's aid, seed 3.10)
    env = otlp_env(otlp_receiver, CRYOSTORM_SERVICE__ENVIRONMENT="production")
    result = run_launcher(["--quiet", "--", PYTHON, script], env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "APP hello\n"
    otlp_receiver.wait_for_logs("hello")


@pytest.mark.parametrize(("mode", "activation"), [
    ("native", " instrumented fastapi (FastAPI's native telemetry, one SERVER span per request)"),
    ("contrib", " instrumented fastapi"),
])
def test_startup_report_lists_fastapi_as_instrumented(mode: str, activation: str) -> None:
    script = "import fastapi; app = fastapi.FastAPI(); print('ok')"
    result = run_launcher(["--verbose", "--", PYTHON, "-c", script],
                          env={"CRYOSTORM_SERVICE__NAME": "report", "CRYOSTORM_SERVICE__ENVIRONMENT": "production",
                               "CRYOSTORM_FASTAPI_TELEMETRY": mode})
    assert (result.returncode, result.stdout) == (0, "ok\n"), result.stderr
    lines = result.stderr.splitlines()
    [summary] = [line for line in lines if line.startswith("cryostorm: service=report ")]
    assert " on-import=" in summary and " hook=" in summary
    assert "cryostorm:   on import of fastapi: fastapi" in lines  # waiting, at start-up
    import fastapi  # noqa: F401  # native_supported() looks at the imported FastAPI

    from cryostorm_run.hook.fastapi_native import native_supported

    if not native_supported():  # this line's FastAPI predates FastAPI(telemetry=...): contrib whatever the mode
        activation = " instrumented fastapi"
    assert any(line.startswith("cryostorm: pid=") and line.endswith(activation) for line in lines), lines
    assert "cryostorm:   skipped: logging (handled by cryostorm's log bridge)" in lines


def _future_instrumentation(tmp_path: Path) -> None:
    """An instrumentation on `tmp_path` that supports only fastapi>=999.0 (a version conflict)."""
    (tmp_path / "future_instr.py").write_text("class Instrumentor:\n    def instrument(self, **kw):\n        pass\n")
    dist = tmp_path / "opentelemetry_instrumentation_future-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: opentelemetry-instrumentation-future\nVersion: 1.0\n"
        "Provides-Extra: instruments\nRequires-Dist: fastapi>=999.0; extra == \"instruments\"\n")
    (dist / "entry_points.txt").write_text("[opentelemetry_instrumentor]\nfastapi_future = future_instr:Instrumentor\n")


def test_verbose_report_shows_a_version_conflict_with_both_versions(tmp_path: Path) -> None:
    import fastapi

    _future_instrumentation(tmp_path)
    result = run_launcher(["--verbose", "--", PYTHON, "-c", "pass"],
                          env={"PYTHONPATH": str(tmp_path), "CRYOSTORM_SERVICE__ENVIRONMENT": "production"})
    assert result.returncode == 0, result.stderr
    [line] = [x for x in result.stderr.splitlines() if x.startswith("cryostorm:   skipped: fastapi_future")]
    assert "fastapi>=999.0" in line and f"fastapi {fastapi.__version__}" in line


def test_the_hooks_own_objects_are_frozen_out_of_full_collections() -> None:
    script = ("import gc, cryostorm_run.export.providers as sdk; "
              "print(gc.get_freeze_count(), any(o is sdk.Providers for o in gc.get_objects()))")
    bare = subprocess.run([PYTHON, "-c", script], capture_output=True, text=True, check=True, env=child_env())
    bare_frozen, bare_walked = bare.stdout.split()  # Python 3.12 starts with a few hundred frozen
    result = run_launcher(["--quiet", "--", PYTHON, "-c", script], env={"CRYOSTORM_SERVICE__NAME": "gc"})
    frozen, walked = result.stdout.split()
    assert int(frozen) > int(bare_frozen) + 5_000, result.stderr  # the SDK and cryostorm's modules
    assert (bare_walked, walked) == ("True", "False")  # the hook's objects are in the permanent generation


def test_spans_are_queued_encoded_from_the_first_one() -> None:
    # Collector down: nothing has been exported yet (no grpc imported), the queue already holds bytes.
    script = ("import sys; from opentelemetry import trace; from cryostorm_run.export.batch import BATCH_QUEUES\n"
              "with trace.get_tracer('t').start_as_current_span('first'): pass\n"
              "[p] = [p for p in BATCH_QUEUES if p.kind == 'spans']\n"
              "item = p.queue[0]\n"
              "print(type(item).__name__, type(item[2]).__name__, 'grpc' in sys.modules)")
    env = {"CRYOSTORM_EXPORTER_TYPE": "otlp", "CRYOSTORM_COLLECTOR": "http://127.0.0.1:9",
           "CRYOSTORM_SERVICE__NAME": "queued", "CRYOSTORM_SHUTDOWN_TIMEOUT_MILLIS": "200"}
    result = run_launcher(["--quiet", "--", PYTHON, "-c", script], env=env)
    assert result.stdout.split() == ["tuple", "bytes", "False"], result.stderr


def test_a_library_version_its_instrumentation_refuses_is_told_without_verbose(tmp_path: Path) -> None:
    # The installed library is outside what its instrumentation supports: one line says so on every
    # run (default and --quiet report modes alike), naming both versions; no program output changes.
    import fastapi

    _future_instrumentation(tmp_path)
    for mode in ([], ["--quiet"]):
        result = run_launcher([*mode, "--", PYTHON, "-c", "import fastapi; print('ok')"],
                              env={"PYTHONPATH": str(tmp_path), "CRYOSTORM_SERVICE__ENVIRONMENT": "production"})
        assert (result.returncode, result.stdout) == (0, "ok\n"), result.stderr
        [line] = [x for x in result.stderr.splitlines() if "is NOT instrumented" in x]
        assert line.startswith(f"cryostorm: fastapi {fastapi.__version__} is NOT instrumented: "
                               "opentelemetry-instrumentation-future 1.0 supports fastapi>=999.0"), line
