"""The package's two sides, enforced: what runs inside the program never reaches into the launcher.

`hook/`, `export/` and `common/` run inside every Python process of the program; they must stay
cheap and must not import the launcher's folders (`config/`, `launch/`, `diagnose/`, `cli/`), the
public faces built on them, or pydantic, typer and rich. Every import counts, also those inside
functions (a lazy import is still a dependency) and under TYPE_CHECKING. And no two modules of the
package import each other, directly or through others.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "cryostorm_run"
IN_PROGRAM = ("hook", "export", "common")
LAUNCHER = ("config", "launch", "diagnose", "cli")
FORBIDDEN_IN_PROGRAM = (
    *(f"cryostorm_run.{name}" for name in (*LAUNCHER, "settings", "testing", "facade")),
    "pydantic", "pydantic_settings", "typer", "rich", "click",
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module `path` imports, anywhere in the file, with absolute names."""
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found.append((node.lineno, base))
            # `from cryostorm_run.export import otlp_encode` imports a submodule
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                if _source_of(candidate) is not None:
                    found.append((node.lineno, candidate))
    return found


def _source_of(module: str) -> Path | None:
    if not module.startswith("cryostorm_run"):
        return None
    relative = Path(*module.split(".")[1:]) if "." in module else Path()
    for candidate in (PACKAGE / relative.with_suffix(".py") if module != "cryostorm_run" else None,
                      PACKAGE / relative / "__init__.py"):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def _package_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "pythonpath" not in p.parts)


def _violations(paths: list[Path]) -> list[str]:
    bad = []
    for path in paths:
        for lineno, module in _imports(path):
            if any(module == f or module.startswith(f + ".") for f in FORBIDDEN_IN_PROGRAM):
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{lineno} imports {module}")
    return bad


def test_in_program_folders_exist_and_hold_code() -> None:
    for folder in (*IN_PROGRAM, *LAUNCHER, "facade"):
        assert len(list((PACKAGE / folder).glob("*.py"))) >= 2, folder
    assert (PACKAGE / "hook" / "pythonpath" / "sitecustomize.py").is_file()


def test_in_program_code_never_imports_the_launcher_side() -> None:
    paths = [p for folder in IN_PROGRAM for p in (PACKAGE / folder).rglob("*.py")]
    assert len(paths) > 10
    assert _violations(paths) == []


def test_the_boundary_check_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    # The check itself must catch what it is there to catch: an import inside a function.
    probe = PACKAGE / "hook" / "_boundary_probe_tmp.py"
    probe.write_text("def f():\n    from cryostorm_run.config.model import TelemetryModel\n"
                     "    from ..launch import envmap\n    import pydantic\n")
    try:
        found = _violations([probe])
    finally:
        probe.unlink()
    assert [v.split(" imports ")[1] for v in found] == [
        "cryostorm_run.config.model", "cryostorm_run.launch", "cryostorm_run.launch.envmap", "pydantic"]


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in _package_modules():
        name = _module_name(path)
        edges = {m for _, m in _imports(path) if _source_of(m) is not None and m != name}
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    # Tarjan's strongly connected components; any component with more than one module is a circle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circles() -> None:
    graph = _graph()
    # The package's own __init__ re-exports everything lazily (PEP 562), for type checkers only.
    graph.pop("cryostorm_run", None)
    for edges in graph.values():
        edges.discard("cryostorm_run")
    assert _cycles(graph) == []


def test_the_circle_check_finds_a_circle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("path", _package_modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_size_budget(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= 400, f"{path.relative_to(PACKAGE)} has {lines} lines (budget ~400): split it along a seam"
