"""Console output for people (issue 15): the program's stderr is its own, byte for byte, while its log
records are exported; cryostorm's console exporters write one line per log record on a terminal and with
`pretty`; JSON stays for machines (`console` off a terminal, `console_json` always); the echo of exported
records happens only when asked."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import CRYOSTORM_RUN, PYTHON, ROOT, child_env, drain_pty, run_launcher
from otlp_receiver import Receiver

APPS = ROOT / "tests" / "apps"

# Each program logs the way real ones do; `body` is a record it emits (exported under cryostorm), or None.
PROGRAMS = {
    "no config": ("""
        import logging
        logging.getLogger("app").info("not shown, not exported (below WARNING and INFO for the root)")
        logging.getLogger("app").warning("careful")
        logging.getLogger("app.db").error("failed")
        """, "failed"),
    "basicConfig": ("""
        import logging
        logging.basicConfig(level=logging.INFO)
        logging.getLogger("app").info("hello")
        try:
            1 / 0
        except ZeroDivisionError:
            logging.getLogger("app").exception("division")
        """, "division"),
    "dictConfig": ("""
        import logging.config
        logging.config.dictConfig({
            "version": 1,
            "formatters": {"short": {"format": "%(levelname)s [%(name)s] %(message)s"}},
            "handlers": {"err": {"class": "logging.StreamHandler", "formatter": "short"}},
            "root": {"handlers": ["err"], "level": "INFO"},
        })
        logging.getLogger("svc").info("started")
        logging.getLogger("svc").error("stopped")
        """, "stopped"),
    "library with a NullHandler": ("""
        import logging
        library = logging.getLogger("library")
        library.addHandler(logging.NullHandler())
        library.warning("quiet unless configured")
        print("done")
        """, "quiet unless configured"),
    "print to stderr": ("""
        import sys
        sys.stderr.write("plain text\\n")
        """, None),
}


def own_lines(stderr: str) -> str:
    """The program's stderr: cryostorm's own lines (`cryostorm:`, the launcher's `cryostorm-run:`) taken out."""
    return "".join(line for line in stderr.splitlines(keepends=True)
                   if not line.startswith(("cryostorm: ", "cryostorm-run: ")))


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_the_programs_stderr_is_unchanged_and_its_records_exported(
        otlp_receiver: Receiver, tmp_path: Path, name: str) -> None:
    source, body = PROGRAMS[name]
    script = tmp_path / "program.py"
    script.write_text(textwrap.dedent(source))
    plain = subprocess.run([PYTHON, str(script)], env=child_env(), capture_output=True, text=True, timeout=60,
                           check=False)
    assert plain.returncode == 0, plain.stderr
    env = {"CRYOSTORM_SERVICE__NAME": "matrix", "CRYOSTORM_EXPORTER_TYPE": "otlp",
           "CRYOSTORM_COLLECTOR": otlp_receiver.grpc_endpoint,
           "CRYOSTORM_LOGGING__EXPORT_CONFIG__SCHEDULE_DELAY_MILLIS": "100"}  # development: the default
    under = run_launcher(["--", PYTHON, str(script)], env)
    assert under.returncode == 0, under.stderr
    assert under.stderr.startswith("cryostorm: service=")  # cryostorm's line is there; the rest is the program's
    assert own_lines(under.stderr) == plain.stderr
    assert under.stdout == plain.stdout
    if body is not None:
        otlp_receiver.wait_for_logs(body)


def test_console_echo_when_asked_is_one_line_per_record(otlp_receiver: Receiver, tmp_path: Path) -> None:
    script = tmp_path / "program.py"
    script.write_text(textwrap.dedent(PROGRAMS["no config"][0]))
    env = {"CRYOSTORM_EXPORTER_TYPE": "otlp", "CRYOSTORM_COLLECTOR": otlp_receiver.grpc_endpoint,
           "CRYOSTORM_LOGGING__CONSOLE_ECHO": "true"}
    result = run_launcher(["--quiet", "--", PYTHON, str(script)], env)
    assert result.returncode == 0, result.stderr
    echoed = [line for line in result.stderr.splitlines() if re.match(r"\d\d:\d\d:\d\d\.\d{3} ", line)]
    assert [line[13:] for line in echoed] == ["WARNING  app: careful", "ERROR    app.db: failed"], result.stderr
    otlp_receiver.wait_for_logs("failed")


SPAN_AND_LOG = """
import logging
from opentelemetry import trace
with trace.get_tracer("demo").start_as_current_span("work") as span:
    logging.getLogger("demo").warning("inside %s", "work")
    print(format(span.get_span_context().trace_id, "032x"))
"""


def run_on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[str, str]:
    """stdout (a pipe) and stderr (a pseudo-terminal) of `cryostorm-run ARGS`."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([CRYOSTORM_RUN, *args], env=child_env(env), stdout=subprocess.PIPE, stderr=follower,
                            stdin=subprocess.DEVNULL)
    os.close(follower)
    received = drain_pty(leader)
    stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    return stdout.decode(), received.decode().replace("\r\n", "\n")


@pytest.mark.parametrize("exporter", ["console", "pretty"])
def test_on_a_terminal_a_log_record_is_one_readable_line(tmp_path: Path, exporter: str) -> None:
    script = tmp_path / "program.py"
    script.write_text(SPAN_AND_LOG)
    stdout, stderr = run_on_a_terminal(["--quiet", "--", PYTHON, str(script)], {
        "CRYOSTORM_EXPORTER_TYPE": exporter, "CRYOSTORM_METRICS__ENABLED": "false", "NO_COLOR": "1"})
    trace_id = stdout.strip()
    lines = stderr.splitlines()
    assert lines[0] == "inside work"  # the program's own (last-resort) line, as without cryostorm
    record = rf"\d\d:\d\d:\d\d\.\d{{3}} WARNING  demo: inside work  trace={trace_id[:8]}"
    assert [line for line in lines if re.fullmatch(record, line)], lines  # the exported record: one line
    # the span: a tree, not JSON
    assert f"trace {trace_id}  unknown-service" in lines and any(line.startswith("work  ") for line in lines)
    assert "{" not in stderr
    assert len(lines) <= 4, stderr


def json_documents(text: str) -> tuple[list[dict[str, Any]], str]:
    """The JSON documents the SDK's console exporters wrote (each starts a line with `{`), and every
    other line."""
    decoder = json.JSONDecoder()
    documents: list[dict[str, Any]] = []
    rest: list[str] = []
    at = 0
    while at < len(text):
        if text.startswith("{", at):
            document, at = decoder.raw_decode(text, at)
            documents.append(document)
            if text.startswith("\n", at):
                at += 1
        else:
            end = text.find("\n", at) + 1 or len(text)
            rest.append(text[at:end])
            at = end
    return documents, "".join(rest)


@pytest.mark.parametrize(("exporter", "stderr_is"), [("console_json", "a terminal"), ("console_json", "a pipe"),
                                                      ("console", "a pipe")])
def test_json_for_machines_for_every_signal(tmp_path: Path, exporter: str, stderr_is: str) -> None:
    # `console_json` always, `console` off a terminal: the SDK's own JSON documents (on a terminal,
    # `console` writes lines: test_on_a_terminal_a_log_record_is_one_readable_line).
    script = tmp_path / "program.py"
    script.write_text("from opentelemetry import metrics\n"
                      "metrics.get_meter('demo').create_counter('jobs').add(3, {'queue': 'q1'})\n" + SPAN_AND_LOG)
    # The echo would add a line per record: with a console exporter, the records are on stderr already.
    env = {"CRYOSTORM_EXPORTER_TYPE": exporter, "CRYOSTORM_LOGGING__CONSOLE_ECHO": "true", "NO_COLOR": "1"}
    args = ["--quiet", "--", PYTHON, str(script)]
    if stderr_is == "a terminal":
        stdout, stderr = run_on_a_terminal(args, env)
    else:
        result = run_launcher(args, env)
        assert result.returncode == 0, result.stderr
        stdout, stderr = result.stdout, result.stderr
    trace_id = "0x" + stdout.strip()
    documents, rest = json_documents(stderr)
    assert rest == "inside work\n"  # the program's own line; not one line for people
    spans = [d for d in documents if "context" in d]
    records = [d for d in documents if "body" in d]
    points = [(m["name"], p["value"]) for d in documents for rm in d.get("resource_metrics", ())
              for sm in rm["scope_metrics"] for m in sm["metrics"] for p in m["data"]["data_points"]]
    assert [(s["name"], s["context"]["trace_id"]) for s in spans] == [("work", trace_id)]
    assert [(r["body"], r["severity_text"], r["trace_id"]) for r in records] == [("inside work", "WARN", trace_id)]
    assert ("jobs", 3) in points
    assert spans[0]["resource"]["attributes"]["service.name"] == "unknown-service"


def test_console_json_is_an_exporter_name_for_every_signal() -> None:
    result = run_launcher(["print-env", "--format", "json", "--exporter", "console_json"])
    assert result.returncode == 0, result.stderr
    env = json.loads(result.stdout)
    assert [env[f"OTEL_{s}_EXPORTER"] for s in ("TRACES", "METRICS", "LOGS")] == ["console_json"] * 3
    # ...read back as cryostorm's own name, like `pretty`
    result = run_launcher(["print-env", "--format", "json"], {"OTEL_TRACES_EXPORTER": "console_json"})
    assert json.loads(result.stdout)["OTEL_TRACES_EXPORTER"] == "console_json"


def test_a_wrong_exporter_name_is_refused_listing_console_json() -> None:
    result = run_launcher(["check-config", "--exporter", "console-json"])
    assert result.returncode == 2
    assert "--exporter = 'console-json'" in result.stderr
    assert "(allowed: console, pretty, console_json, otlp, in_memory, prometheus or none)" in result.stderr


def test_pretty_metrics_are_one_line_per_point(tmp_path: Path) -> None:
    script = tmp_path / "program.py"
    script.write_text("import logging\nfrom opentelemetry import metrics\n"
                      "metrics.get_meter('demo').create_counter('jobs').add(3, {'queue': 'q1'})\n"
                      "logging.getLogger('demo').warning('one record')\n")  # cryostorm's counters start
    result = run_launcher(["--quiet", "--", PYTHON, str(script)], {"CRYOSTORM_EXPORTER_TYPE": "pretty"})
    assert result.returncode == 0, result.stderr
    assert re.search(r"^\d\d:\d\d:\d\d\.\d{3} metric   jobs\{queue=q1\} 3$", result.stderr, re.M), result.stderr
    assert "cryostorm.exporter.dropped" not in result.stderr  # cryostorm's own counters: only once not 0
    assert "{\n" not in result.stderr


# command, request path, request lines on stderr (uvicorn writes its access lines to stdout), directory
SERVERS = {
    "flask dev server": (["-m", "flask", "--app", "workers_flask", "run", "--port", "{port}"], "/work", 3, APPS),
    "uvicorn": (["-m", "uvicorn", "workers_fastapi:app", "--port", "{port}"], "/work", 0, APPS),
    "django runserver": (["manage.py", "runserver", "--noreload", "127.0.0.1:{port}"], "/items/7", 3,
                         APPS / "django_site"),
}


def serve_three_requests(command: list[str], path: str, env: dict[str, str], cwd: Path) -> str:
    """Start a server, send it three requests, stop it with Ctrl-C; its stderr, every number as N."""
    import signal
    import socket
    import time
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([arg.format(port=port) for arg in command], cwd=cwd, env=child_env(env),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read()
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)
        for _ in range(3):
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10).read()
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    return re.sub(r"\d+", "N", stderr)  # pids, ports, dates and times differ from run to run


@pytest.mark.parametrize("name", list(SERVERS))
def test_a_servers_stderr_is_unchanged(otlp_receiver: Receiver, tmp_path: Path, name: str) -> None:
    command, path, request_lines, cwd = SERVERS[name]
    database = {"DJANGO_SITE_DB": str(tmp_path / "items.sqlite")}
    plain = serve_three_requests([PYTHON, *command], path, database, cwd)
    env = {**database, "CRYOSTORM_SERVICE__NAME": "matrix", "CRYOSTORM_EXPORTER_TYPE": "otlp",
           "CRYOSTORM_COLLECTOR": otlp_receiver.grpc_endpoint,
           "CRYOSTORM_LOGGING__EXPORT_CONFIG__SCHEDULE_DELAY_MILLIS": "100"}
    under = serve_three_requests([CRYOSTORM_RUN, "--", PYTHON, *command], path, env, cwd)
    assert "cryostorm: service=matrix" in under
    assert own_lines(under) == plain
    shown_path = re.sub(r"\d+", "N", path)
    assert plain.count(f"GET {shown_path}") == request_lines  # the server's own request lines, there in both


def celery_worker_output(argv: list[str], env: dict[str, str], broker: Path) -> str:
    """A celery prefork worker runs two tasks, one after the other, then gets SIGTERM: its output, with
    task ids, addresses and numbers normalised."""
    import signal
    import time

    celery = str(Path(PYTHON).parent / "celery")
    log = broker.parent / f"worker-{len(list(broker.parent.glob('worker-*')))}.log"
    env = {**env, "CELERY_FS_DIR": str(broker)}
    worker_argv = [*argv, celery, "-A", "celery_app", "worker", "--pool", "prefork", "--concurrency", "1",
                   "--loglevel", "info", "--without-mingle", "--without-gossip", "--hostname", "matrix@host"]
    with log.open("wb") as out:  # a file: the worker never blocks on it
        worker = subprocess.Popen(worker_argv, env=child_env(env), cwd=APPS, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        for done in (1, 2):
            # written aside, then renamed into the queue whole: the worker never sees a half-written message
            outbox = broker / f"outbox-{done}"
            outbox.mkdir(parents=True)
            send = "from celery_app import add; add.delay(1, 2)"
            subprocess.run([PYTHON, "-c", send], cwd=APPS, env=child_env({**env, "CELERY_FS_OUT": str(outbox)}),
                           check=True, timeout=60)
            (message,) = outbox.iterdir()
            message.rename(broker / "queue" / message.name)
            deadline = time.monotonic() + 60
            while log.read_text(errors="replace").count(" succeeded in ") < done:
                assert time.monotonic() < deadline, log.read_text(errors="replace")
                time.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    text = log.read_text(errors="replace")
    text = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "UUID", text)
    text = re.sub(r"0x[0-9a-f]+", "0xADDR", text)
    return re.sub(r"\d+(\.\d+)?", "N", text)


def test_a_celery_workers_output_is_unchanged(otlp_receiver: Receiver, tmp_path: Path) -> None:
    plain = celery_worker_output([], {}, tmp_path / "broker-plain")
    env = {"CRYOSTORM_SERVICE__NAME": "matrix", "CRYOSTORM_EXPORTER_TYPE": "otlp",
           "CRYOSTORM_COLLECTOR": otlp_receiver.grpc_endpoint,
           "CRYOSTORM_LOGGING__EXPORT_CONFIG__SCHEDULE_DELAY_MILLIS": "100"}
    under = celery_worker_output([CRYOSTORM_RUN, "--"], env, tmp_path / "broker-under")
    assert "cryostorm: service=matrix" in under
    assert own_lines(under) == plain
    assert plain.count(" succeeded in ") == 2
    otlp_receiver.wait_for_logs(lambda logs: sum(r.body.startswith("adding 1 and 2") for r in logs) >= 2)
