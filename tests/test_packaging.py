"""What cryostorm-run's package declares against what its code imports, read from the installed metadata."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

from cryostorm_run.common.sdkrange import SDK_RANGE

PACKAGE = Path(__file__).resolve().parent.parent / "cryostorm_run"

# Imported, not declared: each comes with a declared package, or is the program's own and imported only when
# the program has it (checked by its caller).
THROUGH = {
    "grpc": "opentelemetry-exporter-otlp-proto-grpc",
    "google": "opentelemetry-exporter-otlp-proto-grpc (googleapis-common-protos)",
    "requests": "opentelemetry-exporter-otlp-proto-http",
    "prometheus_client": "opentelemetry-exporter-prometheus, the prometheus exporter's (refused when missing)",
    "fastapi": "the program's own: hook/fastapi_native runs when the program imports it",
    "pytest": "the program's own test runner: cryostorm_run.testing is a pytest plugin for its tests",
}


def _requirements() -> dict[str, set[str]]:
    """Declared name -> the extras it is under ("" for none)."""
    found: dict[str, set[str]] = {}
    for text in importlib.metadata.requires("cryostorm-run") or []:
        name = re.split(r"[<>=!~;\[ ]", text, maxsplit=1)[0]
        extra = re.search(r"extra == ['\"]([^'\"]+)", text)
        found.setdefault(re.sub(r"[-_.]+", "-", name).lower(), set()).add(extra.group(1) if extra else "")
    return found


def test_every_package_the_code_imports_is_declared_for_it() -> None:
    """An install with --no-deps (a team keeping its pins) then lists exactly what to add: a package imported
    but only there through another's requirements (packaging, python-dotenv) was missed."""
    declared = {name for name, extras in _requirements().items() if extras & {"", "config-file"}}
    distributions = importlib.metadata.packages_distributions()
    missing = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            modules = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                       [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            for module in modules:
                top = module.partition(".")[0]
                if top in sys.stdlib_module_names or top in ("__future__", "cryostorm_run", "opentelemetry"):
                    continue  # opentelemetry: its packages and their versions are the compatibility matrix's
                if top in THROUGH:
                    continue
                names = {re.sub(r"[-_.]+", "-", d).lower() for d in distributions.get(top, [top])}
                if not names & declared:
                    missing[top] = str(path.relative_to(PACKAGE.parent))
    assert missing == {}, missing


def test_the_sdk_range_the_hook_checks_is_the_declared_one() -> None:
    text = next(r for r in importlib.metadata.requires("cryostorm-run") or [] if r.startswith("opentelemetry-sdk"))
    low = re.search(r">=\s*([0-9.]+)", text)
    high = re.search(r"<\s*([0-9.]+)", text)
    assert low and high, text
    assert (tuple(int(p) for p in low.group(1).split(".")[:2]),
                         tuple(int(p) for p in (high.group(1) + ".0").split(".")[:2])) == SDK_RANGE, text
