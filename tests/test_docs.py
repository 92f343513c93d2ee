"""The README tells the truth: its tables are generated from the code, and its commands run."""

from __future__ import annotations

import re

from conftest import PYTHON, ROOT, run_launcher
from docs_tables import README, render


def test_readme_tables_match_the_code() -> None:
    current = README.read_text()
    assert current == render(current), "README tables are stale: run `python tests/docs_tables.py --write`"


def test_readme_commands_are_the_ones_ci_runs() -> None:
    text = README.read_text()
    commands = re.findall(r"^# \d\. .*\n(.+)$", text, flags=re.MULTILINE)
    assert commands[0].endswith(".venv/bin/cryostorm-run -- .venv/bin/python examples/hello.py")
    assert commands[1] == ".venv/bin/pytest"
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    # .ci/run runs the README's command once per OpenTelemetry line, and nothing else as a test run.
    assert [line.strip() for line in ci if "pytest" in line and not line.lstrip().startswith("#")] == [commands[1]]
    # run_line runs it, in the line's own worktree and venv; the loop over the lines starts run_line for each.
    line_fn = next(i for i, line in enumerate(ci) if line.startswith("run_line() {"))
    assert line_fn < ci.index("  " + commands[1]) < ci.index("}", line_fn)
    loop = ci.index('for entry in "${LINES[@]}"; do')
    assert any(line.lstrip().startswith('( run_line "$name"') for line in ci[loop:ci.index("done", loop)])
    matrix = ci.index("LINES=(")
    lines = [line.strip().strip('"').split("|")[:2] for line in ci[matrix:ci.index(")", matrix)]
             if line.startswith('  "')]
    assert len(lines) >= 1
    # ... and the README's "Lines CI proves" table lists exactly those lines, each on its Python.
    table = text[text.index("**Lines CI proves**"):]
    table = table[:table.index("\n\n", table.index("|---"))]
    rows = [[cell.strip() for cell in row.split("|")] for row in table.splitlines() if row.startswith("|")][2:]
    assert [[row[1], row[4]] for row in rows] == lines
    # Together they prove each Python pyproject claims but the machines' own (every session runs the suite on it).
    claimed = re.findall(r'"Programming Language :: Python :: (3\.\d+)"', (ROOT / "pyproject.toml").read_text())
    assert len(claimed) >= 4 and {python for _, python in lines} | {"3.11"} == set(claimed)


def test_readme_main_command_runs() -> None:
    # The install step is CI's own (.ci/run); the run step, as the README writes it:
    result = run_launcher(["--", PYTHON, "examples/hello.py"], cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello, world\n"
    assert "hello from a program that knows nothing about telemetry" in result.stderr
