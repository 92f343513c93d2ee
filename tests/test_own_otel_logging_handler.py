"""A program that attaches OpenTelemetry's own logging handler (the pattern of OpenTelemetry's docs) exports
its records itself: cryostorm's log bridge steps aside for them, says so once, and each record is exported
once (it was exported twice, silently)."""

from __future__ import annotations

import pytest
from conftest import PYTHON, run_launcher
from otlp_receiver import Receiver

SDK_HANDLER_ON_ROOT = """
import logging
from opentelemetry._logs import get_logger_provider
from opentelemetry.sdk._logs import LoggingHandler
logging.getLogger().addHandler(LoggingHandler(logger_provider=get_logger_provider()))
for i in range(5):
    logging.getLogger("app").warning("record %d", i)
print("done", flush=True)
"""
# opentelemetry-instrumentation-logging's handler, on the program's own logger: the records of other
# loggers never pass it, so the bridge still exports those.
CONTRIB_HANDLER_ON_APP_LOGGER = """
import logging
from opentelemetry.instrumentation.logging.handler import LoggingHandler
logging.getLogger("app").addHandler(LoggingHandler())
logging.getLogger().addHandler(logging.NullHandler())
for i in range(5):
    logging.getLogger("app.db").warning("record %d", i)
logging.getLogger("library").warning("not through the program's handler")
print("done", flush=True)
"""
# The program's handler takes warnings only: the info records never reach it, so the bridge exports those.
SDK_HANDLER_FOR_WARNINGS = """
import logging
from opentelemetry._logs import get_logger_provider
from opentelemetry.sdk._logs import LoggingHandler
logging.getLogger().addHandler(LoggingHandler(level=logging.WARNING, logger_provider=get_logger_provider()))
logging.getLogger().setLevel(logging.INFO)
for i in range(5):
    (logging.getLogger("app").warning if i % 2 else logging.getLogger("app").info)("record %d", i)
print("done", flush=True)
"""
RECORDS = [f"record {i}" for i in range(5)]
CASES = {
    "sdk-handler-on-root": (SDK_HANDLER_ON_ROOT, "opentelemetry.sdk._logs._internal.LoggingHandler",
                            "the root logger", RECORDS),
    "contrib-handler-on-app-logger": (CONTRIB_HANDLER_ON_APP_LOGGER,
                                      "opentelemetry.instrumentation.logging.handler.LoggingHandler", "logger 'app'",
                                      [*RECORDS, "not through the program's handler"]),
    "sdk-handler-for-warnings-only": (SDK_HANDLER_FOR_WARNINGS, "opentelemetry.sdk._logs._internal.LoggingHandler",
                                      "the root logger", RECORDS),
}


@pytest.mark.parametrize("case", CASES)
def test_each_record_is_exported_once_when_the_program_has_its_own_otel_handler(
        otlp_receiver: Receiver, case: str) -> None:
    program, handler, where, expected = CASES[case]
    env = {"CRYOSTORM_SERVICE__NAME": "own-handler", "CRYOSTORM_EXPORTER_TYPE": "otlp",
           "CRYOSTORM_COLLECTOR": otlp_receiver.grpc_endpoint, "CRYOSTORM_METRICS__ENABLED": "false"}
    done = run_launcher(["--quiet", "--", PYTHON, "-c", program], env)
    assert (done.returncode, done.stdout) == (0, "done\n"), done.stderr
    otlp_receiver.wait_for_logs(len(expected))
    # The program has exited and flushed: everything it exported has arrived.
    assert sorted(log.body for log in otlp_receiver.logs()) == sorted(expected)
    # cryostorm's lines: exactly this one. (On Python 3.12 with SDK 1.45.1 the SDK's LoggingHandler.flush, called by
    # logging's own atexit shutdown, starts a thread and prints "can't create new thread at interpreter shutdown":
    # the SDK's, as for any program that sets up this handler with an SDK provider; no frame of cryostorm's.)
    assert [line for line in done.stderr.splitlines() if line.startswith("cryostorm")] == [
        f"cryostorm: the program attached its own OpenTelemetry logging handler ({handler}) to {where}: it exports "
        "the records it gets, so cryostorm's log bridge steps aside for them (each record is exported once)"
    ], done.stderr
    assert "cryostorm_run" not in done.stderr, done.stderr
