"""The one installer command that puts every installed OpenTelemetry package on one consistent line.

Shared by `doctor` (launcher) and the hook's start-up version warning (program), so both give the
same advice. The command never invents a version: it names every installed `opentelemetry-*`
package without a version, plus cryostorm-run's own declared OpenTelemetry requirements (read from
its installed metadata, so following the advice can never break them), plus whatever is to be
added. pip then resolves them *together*: it keeps what is consistent (without `--upgrade` an
installed version that fits is kept) and moves the rest to a line on which every named package
exists. Installing one package alone cannot do that: pip does not look at the requirements of
installed packages it was not asked about.

Example:
    >>> line_command([("opentelemetry-sdk", ["opentelemetry-api==1.45.2"]), ("opentelemetry-api", []),
    ...               ("cryostorm-run", ["opentelemetry-api<2,>=1.40", "rich>=13"]), ("rich", [])])
    "pip install 'opentelemetry-api<2,>=1.40' opentelemetry-sdk"
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable

__all__ = ["OWN", "PREFIX", "disagree_message", "installed_line_command", "line_command", "line_requirements",
           "normalize"]

OWN = "cryostorm-run"
PREFIX = "opentelemetry-"
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(?:\(([^)]*)\)|([^;]*))\s*(;.*)?$")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _own_otel(requires: Iterable[str]) -> dict[str, str]:
    """Unconditional requirements on OpenTelemetry packages: name -> `name<spec>`."""
    found: dict[str, str] = {}
    for text in requires:
        match = _REQUIREMENT.match(text)
        if match is None or match.group(4):  # an extra or a platform marker: not a requirement of every install
            continue
        name = normalize(match.group(1))
        if name.startswith(PREFIX):
            found[name] = name + re.sub(r"\s+", "", match.group(2) or match.group(3) or "")
    return found


def line_requirements(installed: Iterable[tuple[str, Iterable[str]]], add: Iterable[str] = ()) -> list[str]:
    """The installed OpenTelemetry packages and every other installed package that requires one (names
    only: e.g. FastAPI requires opentelemetry-api), cryostorm-run's own OpenTelemetry requirements and
    `add` (requirement strings), sorted by name, one requirement each.
    `installed`: (name, its Requires-Dist lines) of each installed distribution."""
    wanted: dict[str, str] = {}
    own: dict[str, str] = {}
    for raw, requires in installed:
        name = normalize(raw)
        needs = _own_otel(requires)
        if name == OWN:
            own = needs
        elif name.startswith(PREFIX) or needs:
            wanted[name] = name
    wanted |= own
    for text in add:
        match = _REQUIREMENT.match(text)
        key = normalize(match.group(1)) if match else text
        if key not in wanted or wanted[key] == key:  # a bare name never replaces a constraint
            wanted[key] = text.replace(" ", "")
    return [wanted[k] for k in sorted(wanted)]


def line_command(installed: Iterable[tuple[str, Iterable[str]]], add: Iterable[str] = ()) -> str:
    """`pip install` of `line_requirements(installed, add)`, each shell-quoted."""
    return "pip install " + " ".join(shlex.quote(r) for r in line_requirements(installed, add))


def installed_line_command(add: Iterable[str] = ()) -> str:
    """The command for the environment this interpreter imports from (only called when something is
    wrong: importlib.metadata is too slow for every start-up)."""
    import importlib.metadata

    seen: dict[str, list[str]] = {}
    for dist in importlib.metadata.distributions():
        seen.setdefault(normalize(dist.metadata["Name"] or ""), list(dist.requires or ()))  # the first wins
    return line_command(seen.items(), add)


def disagree_message(what: str, command: str | None = None) -> str:
    """The one sentence both sides print when OpenTelemetry packages do not fit together."""
    if command is None:
        try:
            command = installed_line_command()
        except Exception:  # unreadable metadata must not cost the program its telemetry
            command = "cryostorm-run doctor (the installed packages could not be read here)"
    return (f"OpenTelemetry packages disagree: {what}; put them on one line with one command, pip choosing the "
            f"versions: {command}")
