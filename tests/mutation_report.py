"""The mutation score per module, from the results `mutmut run` left in mutants/ (`tox -e mutation`).

    python tests/mutation_report.py              # one row per module of [tool.mutmut] only_mutate
    python tests/mutation_report.py --survivors  # and every mutant not killed, by name (`mutmut show NAME`)
    python tests/mutation_report.py --markdown   # the rows as the README's table

Score = killed / mutants, where a timeout counts as killed (the mutant hung the code) and every mutant
the tests did not kill counts against it, also one that no fast test reaches ("no tests").
Exits 1 when a module is under --min (default 0: report only).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
# mutmut's exit codes (mutmut/stats.py): 1 and 3 killed, SIGXCPU and 36 timeout, 0 survived, 5 and 33 no tests.
KILLED = {1, 3}
TIMEOUT = {24, -24, 36, 152, 255}
SURVIVED = {0}
NO_TESTS = {5, 33}


def modules() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    return list(config["only_mutate"])


def results(module: str) -> dict[str, int | None]:
    meta = ROOT / "mutants" / f"{module}.meta"
    if not meta.exists():
        return {}
    codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
    return codes


def status(code: int | None) -> str:
    if code in KILLED or code in TIMEOUT:
        return "killed"
    if code in SURVIVED:
        return "survived"
    if code in NO_TESTS:
        return "no tests"
    return "not checked" if code is None else f"exit {code}"


Row = tuple[str, int, int, dict[str, list[str]]]  # module, mutants, killed, mutant names by status


def rows() -> list[Row]:
    found = []
    for module in modules():
        by_status: dict[str, list[str]] = {}
        for name, code in results(module).items():
            by_status.setdefault(status(code), []).append(name)
        total = sum(len(names) for names in by_status.values())
        found.append((module, total, len(by_status.get("killed", [])), by_status))
    return found


def score(killed: int, total: int) -> str:
    return f"{100 * killed / total:.1f} %" if total else "-"


def print_table(table: list[Row]) -> None:
    print(f"{'module':<40} {'mutants':>7} {'killed':>7} {'survived':>8} {'no tests':>8} {'other':>6} {'score':>7}")
    for module, total, killed, by_status in table:
        survived, no_tests = len(by_status.get("survived", [])), len(by_status.get("no tests", []))
        other = total - killed - survived - no_tests
        print(f"{module:<40} {total:>7} {killed:>7} {survived:>8} {no_tests:>8} {other:>6} {score(killed, total):>7}")
    all_total, all_killed = sum(r[1] for r in table), sum(r[2] for r in table)
    print(f"{'all':<40} {all_total:>7} {all_killed:>7} {'':>8} {'':>8} {'':>6} {score(all_killed, all_total):>7}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--survivors", action="store_true", help="list every mutant not killed")
    parser.add_argument("--markdown", action="store_true", help="print the README table's rows")
    parser.add_argument("--min", type=float, default=0.0, help="exit 1 when a module scores under this percent")
    args = parser.parse_args(argv)

    table = rows()
    if args.markdown:
        for module, total, killed, _ in table:
            print(f"| `{module}` | {total} | {killed} | {score(killed, total)} |")
    else:
        print_table(table)
    if args.survivors:
        for _, _, _, by_status in table:
            for state, names in sorted(by_status.items()):
                if state != "killed":
                    for name in sorted(names, key=lambda n: (n.rsplit("_", 1)[0], int(n.rsplit("_", 1)[1]))):
                        print(f"{state}: {name}")
    low = [module for module, total, killed, _ in table if total and 100 * killed / total < args.min]
    if low:
        print(f"under {args.min} %: {', '.join(low)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
