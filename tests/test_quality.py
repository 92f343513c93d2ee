"""Static checks and the start-up budget of the hook, run as part of the suite (CI runs the suite).

The budget is about what the hook imports, never wall-clock time (that is bench/'s job).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys

from conftest import ROOT, run_launcher

# Modules the hook must never import in a process that exports nothing yet: the launcher's
# validation stack, the CLI, the OTLP transports (built on first export), importlib.metadata and
# importlib.resources (with tempfile: what importlib.abc pulls in), and the metrics SDK (built on the
# first get_meter(): export/lazymeter.py).
FORBIDDEN = ("pydantic", "pydantic_settings", "typer", "rich", "click", "grpc", "google.protobuf",
             "importlib.metadata", "importlib.resources", "tempfile", "requests", "opentelemetry.exporter",
             "opentelemetry.sdk._configuration", "opentelemetry.sdk.metrics",
             "opentelemetry.instrumentation.instrumentor", "cryostorm_run.config", "cryostorm_run.launch",
             "cryostorm_run.diagnose", "cryostorm_run.cli", "cryostorm_run.settings", "cryostorm_run.facade")
# Recorded on 2026-11-30: the hook imported 213 modules beyond bare `python -c pass` on SDK 1.45.2 and
# 241 on the floor line (SDK 1.40.0 imports more of itself); then 197 on 1.45.2 once its post-import
# finder stopped subclassing importlib.abc.MetaPathFinder (importlib.resources, tempfile, shutil,
# pathlib: 16 modules fewer, so ~225 expected on the floor). The budget covers every CI line with a
# little room for patch releases; a jump past it means something heavy crept in. Then, with the metrics
# SDK built on the first get_meter() (issue #17): 168 on 1.45.2, 218 on the floor line (1.40.0). Then, with
# every signal built at its first use (export/deferred.py): 50 on 1.45.2, no OpenTelemetry module but the
# two version ones, the same on every line. Then 44 (probe without json), once typing and dataclasses were
# kept out (with re, inspect, ast, tokenize, ... they cost every process ~8 ms).
MODULE_BUDGET = 55
# Standard-library modules the hook itself must not import (only annotations need typing; see
# common/runtime.py for dataclasses). Counted beyond bare Python, so a site that imports one anyway is not blamed.
NOT_BY_THE_HOOK = ("typing", "dataclasses", "inspect", "re", "ast", "json")


def _imported_by_hook(extra_env: dict[str, str]) -> tuple[set[str], int]:
    probe = "import sys; print(sorted(sys.modules))"  # not json: it imports re
    result = run_launcher(["--quiet", "--", sys.executable, "-c", probe], env=extra_env)
    assert result.returncode == 0, result.stderr
    with_hook = set(ast.literal_eval(result.stdout))
    bare = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    added = with_hook - set(ast.literal_eval(bare.stdout))
    assert not added & set(NOT_BY_THE_HOOK), sorted(added & set(NOT_BY_THE_HOOK))
    return with_hook, len(added)


def _api_imports() -> set[str]:
    """What the OpenTelemetry API imports by itself (not the hook's doing): on the floor line (1.40)
    `opentelemetry.context` pulls in the importlib_metadata backport, hence importlib.resources and
    tempfile; newer APIs do not."""
    probe = "import sys, json, opentelemetry.context, opentelemetry.trace; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(json.loads(result.stdout))


def _heavy(imported: set[str], forbidden: tuple[str, ...]) -> list[str]:
    api = _api_imports()
    return sorted(m for m in imported - api for f in forbidden if m == f or m.startswith(f + "."))


def test_hook_imports_stay_lean_with_otlp_configured() -> None:
    modules, added = _imported_by_hook({"CRYOSTORM_EXPORTER_TYPE": "otlp", "CRYOSTORM_COLLECTOR": "http://127.0.0.1:9"})
    assert "cryostorm_run.hook.bootstrap" in modules  # the hook did run
    assert _heavy(modules, FORBIDDEN) == []
    assert added <= MODULE_BUDGET, f"the hook now imports {added} modules (budget {MODULE_BUDGET})"


def test_ruff() -> None:
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "cryostorm_run", "tests",
                             "examples"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict() -> None:
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_exit_with_nothing_to_send_imports_nothing_heavy() -> None:
    """A process that exported nothing leaves without importing more: `-X importtime` lists every
    import of the process's whole life, exit flush included (the suppression context's
    opentelemetry.instrumentation.utils pulled in wrapt, asyncio and importlib.metadata at every exit)."""
    result = run_launcher(["--quiet", "--", sys.executable, "-X", "importtime", "-c", "pass"],
                          env={"CRYOSTORM_EXPORTER_TYPE": "otlp", "CRYOSTORM_COLLECTOR": "http://127.0.0.1:9"})
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    imported = {line.rsplit("|", 1)[1].strip() for line in lines if line.startswith("import time:")}
    assert "cryostorm_run.hook.bootstrap" in imported  # the hook did run
    assert _heavy(imported, (*FORBIDDEN, "wrapt", "asyncio", "opentelemetry.instrumentation.utils")) == []
