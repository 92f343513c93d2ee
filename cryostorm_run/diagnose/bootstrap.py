"""`cryostorm-run bootstrap`: the instrumentations this environment needs, on its OpenTelemetry line.

doctor finds the installed libraries that lack their instrumentation (`doctor.targets`); bootstrap
turns that into requirements and, with `--install`, into **one** call of the environment's own
installer (pip, or `uv pip` where uv made the environment or there is no pip).

The requirements keep the installed OpenTelemetry line: each missing instrumentation constrained to
the installed contrib line (`>=0.66b2,<0.66b3` for 0.66b2, its post releases included), every
installed `opentelemetry-*` package pinned to the version installed now. No version is invented (the
pins are what is there); the resolver picks the release made for this line. When the line has none
(contrib does not publish every instrumentation for every line), a dry run says so, and bootstrap
proposes the nearest line that has them all: doctor's requirements (installed OpenTelemetry packages
by name, cryostorm-run's own ranges, the new instrumentations), the resolver choosing the versions.

Example:
    >>> from cryostorm_run.diagnose.doctor import Dist
    >>> dists = {"requests": Dist("requests", "2.32.0"), "opentelemetry-api": Dist("opentelemetry-api", "1.45.2")}
    >>> table = [{"library": "requests ~= 2.0", "instrumentation": "opentelemetry-instrumentation-requests==0.66b2"}]
    >>> missing(dists, table)
    (['opentelemetry-instrumentation-requests'], [])
    >>> on_line(["opentelemetry-instrumentation-requests"], "0.66b2")
    ['opentelemetry-instrumentation-requests>=0.66b2,<0.66b3']
    >>> line_pins(dists)
    ['opentelemetry-api==1.45.2']
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from cryostorm_run.common.otel_line import OWN, PREFIX, line_requirements
from cryostorm_run.diagnose import installer as inst
from cryostorm_run.diagnose.doctor import (
    CONTRIB_ANCHOR,
    CONTRIB_VERSION,
    Dist,
    collect,
    installed,
    library_table,
    targets,
)
from cryostorm_run.launch.plan import LaunchError

__all__ = ["BootstrapError", "Environment", "Plan", "bootstrap", "command_environment", "line_of", "line_pins",
           "missing", "moved_line", "on_line", "plan",
           "this_environment"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

_PROBE_CODE = ("import importlib.metadata as m, importlib.util, json, sys; print(json.dumps({'python': sys.executable, "
               "'prefix': sys.prefix, 'pip': importlib.util.find_spec('pip') is not None, 'dists': "
               "[[d.metadata['Name'], d.version, d.requires or []] for d in m.distributions()]}))")


class BootstrapError(LaunchError):
    """bootstrap cannot go on; `exit_code` 1 (the installer failed) or 2 (usage). A LaunchError, so the
    CLI's one boundary turns it into its exit code even where the command does not catch it first."""


@dataclass(frozen=True)
class Environment:
    """The environment to bootstrap: its interpreter, prefix, whether it has pip, its distributions."""

    python: str
    prefix: str
    has_pip: bool
    dists: Mapping[str, Dist]


def this_environment(paths: Sequence[str] | None = None) -> Environment:
    """The environment cryostorm-run runs in."""
    import importlib.util

    return Environment(sys.executable, sys.prefix, importlib.util.find_spec("pip") is not None, installed(paths))


def command_environment(command: Sequence[str], environ: Mapping[str, str]) -> Environment:
    """The environment of the interpreter that `command` runs (itself, or its script's `#!` line)."""
    from cryostorm_run.diagnose.interpreters import python_of, run_probe
    from cryostorm_run.launch.plan import resolve_command

    path = resolve_command(command[0], environ.get("PATH"))  # LaunchError (127/126): the CLI's boundary says it
    found = python_of(path, environ.get("PATH"))
    if found is None:
        raise BootstrapError(f"-- {command[0]}: {path} is not a Python program, so it has no environment to "
                             "bootstrap; give the python it runs: cryostorm-run bootstrap -- PYTHON", EXIT_USAGE)
    facts = run_probe(found[0], _PROBE_CODE, environ)
    if facts is None:
        raise BootstrapError(f"-- {command[0]}: {found[0][0]} ({found[1]}) could not be run to read its "
                             "installed packages", EXIT_FAILED)
    dists = collect((n, v, r) for n, v, r in facts["dists"])
    if OWN not in dists:
        raise BootstrapError(f"-- {command[0]} runs {facts['python']} in {facts['prefix']}, where {OWN} is not "
                             f"installed: install it there first ({facts['python']} -m pip install {OWN}), then "
                             "bootstrap that environment", EXIT_USAGE)
    return Environment(facts["python"], facts["prefix"], bool(facts["pip"]), dists)


def missing(dists: Mapping[str, Dist], table: Iterable[Mapping[str, str]]) -> tuple[list[str], list[str]]:
    """The instrumentation packages to add for the installed libraries (sorted), and a note for each
    library left out because the installed line's instrumentation does not support its version."""
    wanted: set[str] = set()
    notes: list[str] = []
    for target in targets(dists, table):
        if target.instrumentation in dists:
            continue
        lib = target.library
        if target.supported:
            wanted.add(target.instrumentation)
        else:
            notes.append(f"{lib.name} {lib.version} is left out: {target.instrumentation} of this line supports "
                         f"{lib.name}{target.supports}")
    return sorted(wanted), notes


def on_line(names: Iterable[str], contrib: str | None) -> list[str]:
    """Each instrumentation constrained to the installed contrib line (0.66b2 -> `>=0.66b2,<0.66b3`,
    its post releases included). Any other release requires another opentelemetry-instrumentation, so
    none could fit the pins anyway; naming only the line's lets the resolver say at once that a package
    has no release for it, instead of backtracking through the older ones (pip takes minutes there)."""
    from packaging.version import InvalidVersion, Version

    try:
        version = Version(contrib or "")
    except InvalidVersion:
        return list(names)
    if version.pre is not None:
        upper = f"{version.base_version}{version.pre[0]}{version.pre[1] + 1}"
    else:
        upper = ".".join(map(str, (*version.release[:-1], version.release[-1] + 1)))
    return [f"{name}>={version.public},<{upper}" for name in names]


def line_pins(dists: Mapping[str, Dist]) -> list[str]:
    """Every installed OpenTelemetry package at the version installed now: the line, kept."""
    return [f"{d.name}=={d.version}" for d in sorted(dists.values(), key=lambda d: d.name) if d.name.startswith(PREFIX)]


def line_of(versions: Mapping[str, str]) -> str:
    """`api 1.45.2 / contrib 0.66b2`, from normalized name -> version."""
    return (f"api {versions.get('opentelemetry-api', '(none)')} / "
            f"contrib {versions.get(CONTRIB_ANCHOR, '(none)')}")


@dataclass
class Plan:
    """`requirements` empty: nothing to install. `moved`: they move the installed line (to `line_after`);
    `proposal`: with --keep-line, the requirements that would move it (not taken)."""

    needed: list[str]
    requirements: list[str] = field(default_factory=list)
    line_before: str = ""
    line_after: str = ""
    moved: bool = False
    proposal: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def plan(env: Environment, installer: inst.Installer, *, keep_line: bool = False,
         table: Iterable[Mapping[str, str]] | None = None) -> Plan:
    """What to install, the resolver consulted in dry runs (nothing installed). Raises BootstrapError
    when the resolver fails for another reason than the line (e.g. the index cannot be reached)."""
    needed, notes = missing(env.dists, library_table() if table is None else table)
    before = line_of({name: d.version for name, d in env.dists.items()})
    result = Plan(needed, line_before=before, line_after=before, notes=notes)
    if not needed:
        return result
    contrib = env.dists[CONTRIB_ANCHOR].version if CONTRIB_ANCHOR in env.dists else None
    kept = [*on_line(needed, contrib), *line_pins(env.dists)]
    answer = inst.dry_run(installer, kept)
    if answer.ok:
        result.requirements = kept
        return result
    if not answer.impossible:
        raise BootstrapError(f"{installer.name} could not resolve the instrumentations: {answer.output}", EXIT_FAILED)
    lacking = _lacking(installer, needed, contrib, env.dists, answer.output)
    result.notes.append(f"the installed OpenTelemetry line ({before}) has no release of {', '.join(lacking)} that "
                        "fits it")
    wider = moved_line(env.dists, needed, None)
    if keep_line:
        result.proposal = wider
        return result
    found = _nearest_line(installer, env.dists, needed, contrib)
    if found is None:
        answer = inst.dry_run(installer, wider)
        if not answer.ok:
            raise BootstrapError(f"no OpenTelemetry line within {OWN}'s ranges has all of {', '.join(needed)}; "
                                 f"{installer.name} says:\n{answer.output}", EXIT_FAILED)
        found = (wider, answer)
    (result.requirements, answer), result.moved = found, True
    result.line_after = line_of({**{n: d.version for n, d in env.dists.items()}, **answer.versions})
    return result


def moved_line(dists: Mapping[str, Dist], needed: Iterable[str], contrib: str | None) -> list[str]:
    """doctor's requirements (installed OpenTelemetry packages by name, cryostorm-run's own ranges, the
    instrumentations to add); with `contrib`, every contrib package among them also constrained to that
    line, so the resolver has one candidate each instead of backtracking through them all."""
    import re

    wider = line_requirements(((d.name, d.requires) for d in dists.values()), needed)
    if contrib is None:
        return wider
    follow = set(needed) | {d.name for d in dists.values() if d.name.startswith(PREFIX)
                            and CONTRIB_VERSION.match(d.version)}
    result: list[str] = []
    for req in wider:
        name = re.split(r"[<>=!~; ]", req, maxsplit=1)[0]
        if name in follow:
            result += [*([] if req == name else [req]), *on_line([name], contrib)]
        else:
            result.append(req)
    return result


_LINES_TRIED = 6  # each a dry run of a few seconds


def _nearest_line(installer: inst.Installer, dists: Mapping[str, Dist], needed: list[str],
                  contrib: str | None) -> tuple[list[str], inst.Resolution] | None:
    """pip: the lines the index has (releases of opentelemetry-instrumentation within cryostorm-run's
    range), nearest to the installed one first, each asked of the resolver until one has them all.
    None for uv (its resolver finds the line by itself, in seconds) or when pip cannot list them."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    releases = inst.index_versions(installer, CONTRIB_ANCHOR) if contrib else None
    if not releases or contrib is None:
        return None
    allowed = [Requirement(r).specifier for r in (dists[OWN].requires if OWN in dists else ())
               if Requirement(r).name == CONTRIB_ANCHOR and Requirement(r).marker is None]
    lines = sorted({v for v in releases if CONTRIB_VERSION.match(v)
                    and all(s.contains(v, prereleases=True) for s in allowed)} | {contrib}, key=Version)
    here = lines.index(contrib)
    nearest = sorted((v for v in lines if v != contrib), key=lambda v: (abs(lines.index(v) - here), -lines.index(v)))
    for line in nearest[:_LINES_TRIED]:
        requirements = moved_line(dists, needed, line)
        answer = inst.dry_run(installer, requirements)
        if answer.ok:
            return requirements, answer
    return None


def _lacking(installer: inst.Installer, needed: list[str], contrib: str | None, dists: Mapping[str, Dist],
             output: str) -> list[str]:
    """The instrumentations the installed line has no release of. The resolver names the first it could
    not find; asked again without those, it names the next (a few quick dry runs, no backtracking)."""
    lacking: list[str] = []
    for _ in needed:
        found = [name for name in needed if name in output and name not in lacking]
        rest = [name for name in needed if name not in lacking and name not in found]
        lacking += found
        if not found or not rest:
            break
        answer = inst.dry_run(installer, [*on_line(rest, contrib), *line_pins(dists)])
        if answer.ok or not answer.impossible:
            break
        output = answer.output
    return lacking or needed


def bootstrap(env: Environment, installer: inst.Installer, *, install: bool, dry_run: bool, keep_line: bool,
              say: Callable[[str], None], out: Callable[[str], object],
              table: Iterable[Mapping[str, str]] | None = None) -> int:
    """Print (to `out`) or install what `plan` finds; `say` gets the report lines. Returns the exit
    status: 0 nothing to do or done, 1 the install failed or --keep-line refused to move the line."""
    found = plan(env, installer, keep_line=keep_line, table=table)
    for note in found.notes:
        say(note)
    if not found.needed:
        say(f"nothing to install: every installed library with an instrumentation has it ({env.prefix}, "
            f"{found.line_before})")
        return EXIT_OK
    if found.proposal:
        say(f"--keep-line: nothing installed. The nearest consistent line that has them all, {installer.name}'s "
            f"resolver choosing: {inst.shown(inst.install_argv(installer, found.proposal))}")
        return EXIT_FAILED
    if found.moved:
        say(f"the nearest consistent line that has them all is {found.line_after} ({installer.name}'s resolver "
            f"said so in a dry run); the requirements name the installed OpenTelemetry packages without "
            f"versions, contrib ones on that line, and {OWN}'s own ranges")
    else:
        say(f"{len(found.needed)} instrumentation{'s' if len(found.needed) != 1 else ''} to add on the installed "
            f"line ({found.line_before}): {', '.join(found.needed)}")
    if not install:
        out("".join(f"{req}\n" for req in found.requirements))
        return EXIT_OK
    return _install(installer, found, dry_run, say)


def _install(installer: inst.Installer, found: Plan, dry_run: bool, say: Callable[[str], None]) -> int:
    argv = inst.install_argv(installer, found.requirements)
    say(f"{'would run' if dry_run else 'running'} ({installer.name}: {installer.why}): {inst.shown(argv)}")
    if dry_run:
        return EXIT_OK
    status = inst.install(installer, found.requirements)
    if status != 0:
        say(f"install failed: {installer.name} exited {status} (its output is above); nothing else was changed "
            "by cryostorm")
        return EXIT_FAILED
    clean, report = inst.check(installer)
    if not clean:
        say(f"{installer.name} check finds broken requirements after the install:\n{report}")
        return EXIT_FAILED
    now = _installed_in(installer.python)
    absent = [name for name in found.needed if now is not None and name not in now]
    if absent:
        say(f"{installer.name} exited 0, but these are still not installed in {installer.python}'s environment: "
            f"{', '.join(absent)}")
        return EXIT_FAILED
    line = line_of({n: d.version for n, d in now.items()}) if now is not None else found.line_after
    say(f"installed {', '.join(found.needed)} on {line}; {installer.name} check: no broken requirements")
    return EXIT_OK


def _installed_in(python: str) -> dict[str, Dist] | None:
    """What the interpreter's environment holds now, read afresh in a child (this process's import
    caches predate the install)."""
    import os

    from cryostorm_run.diagnose.interpreters import run_probe

    facts = run_probe([python], _PROBE_CODE, os.environ)
    return None if facts is None else collect((n, v, r) for n, v, r in facts["dists"])
