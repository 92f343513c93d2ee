"""`cryostorm-run doctor`: is this environment able to instrument the program?

Three questions, each answered with the fix:

* which installed libraries have their instrumentation package installed, missing or at a
  version that does not match (with the exact `pip install` line);
* do the OpenTelemetry packages agree (api/sdk/exporters on one 1.x release, contrib packages
  on the 0.xb line of opentelemetry-instrumentation, every declared requirement met);
* will the command's interpreter run the hook (`doctor -- python app.py`): the "wrong python on
  PATH" trap, where a program silently runs uninstrumented.

Example:
    >>> report = diagnose(command=None)
    >>> isinstance(report.problems, int)
    True
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from cryostorm_run.common.otel_line import OWN, PREFIX, line_command, normalize

__all__ = ["CONTRIB_ANCHOR", "CONTRIB_VERSION", "Dist", "DoctorReport", "Finding", "Target", "collect", "diagnose",
           "installed", "library_table", "render_report", "targets"]


@dataclass(frozen=True)
class Dist:
    name: str  # normalized: opentelemetry-instrumentation-flask
    version: str
    requires: tuple[str, ...] = ()


@dataclass(frozen=True)
class Finding:
    """`status`: ok, problem, or info (a suggestion that does not make the environment unhealthy)."""

    section: str  # configuration, packages, instrumentations, command
    status: str
    message: str
    fix: str = ""


@dataclass
class DoctorReport:
    findings: list[Finding] = field(default_factory=list)
    contrib_version: str | None = None  # the installed opentelemetry-instrumentation
    packages_command: str = ""  # the one command that fixes the packages' problems

    @property
    def problems(self) -> int:
        return sum(f.status == "problem" for f in self.findings)

    def add(self, section: str, status: str, message: str, fix: str = "") -> None:
        self.findings.append(Finding(section, status, message, fix))


def installed(paths: Sequence[str] | None = None) -> dict[str, Dist]:
    """Installed distributions by normalized name; the first one on the path wins, as for imports."""
    import importlib.metadata

    search = list(paths) if paths is not None else sys.path
    dists = importlib.metadata.distributions(path=search)
    return collect((d.metadata["Name"], d.version, d.requires or ()) for d in dists)


def collect(entries: Iterable[tuple[str | None, str, Iterable[str]]]) -> dict[str, Dist]:
    """(name, version, Requires-Dist lines) in path order -> Dist by normalized name, the first one winning."""
    found: dict[str, Dist] = {}
    for name, version, requires in entries:
        if name and normalize(name) not in found:
            found[normalize(name)] = Dist(normalize(name), version, tuple(requires))
    return found


# -- OpenTelemetry package versions ----------------------------------------------------------------
# Healthy means what `pip check` means: every declared requirement of the OpenTelemetry packages and
# of cryostorm-run is met. Every fix is one command (common/otel_line.py, also the hook's advice):
# the installed OpenTelemetry packages by name, cryostorm-run's own OpenTelemetry requirements, and
# what is missing; pip picks the versions, so no version is invented and none of cryostorm-run's
# requirements can be broken by following it.

_STABLE_CORE = ("opentelemetry-api", "opentelemetry-sdk", "opentelemetry-proto")
CONTRIB_VERSION = re.compile(r"^0\.\d+b\d+$")
CONTRIB_ANCHOR = "opentelemetry-instrumentation"


def _stable(dists: Mapping[str, Dist]) -> list[Dist]:
    return [d for d in dists.values() if d.name in _STABLE_CORE
            or (d.name.startswith("opentelemetry-exporter-") and d.version.startswith("1."))]


def _contrib(dists: Mapping[str, Dist]) -> list[Dist]:
    return [d for d in dists.values() if d.name.startswith("opentelemetry-") and CONTRIB_VERSION.match(d.version)]


def fix_command(dists: Mapping[str, Dist], add: Iterable[str] = ()) -> str:
    return line_command(((d.name, d.requires) for d in dists.values()), add)


def _line_check(report: DoctorReport, group: list[Dist], anchor: str, what: str, broken: bool) -> None:
    """Versions off the anchor's release are a problem when a requirement is broken (they then show
    which packages moved); alone, with every requirement met, they are only worth knowing."""
    if not group:
        return
    reference = next((d.version for d in group if d.name == anchor), None)
    if reference is None:
        reference = max({d.version for d in group}, key=[d.version for d in group].count)
    offenders = sorted((d for d in group if d.version != reference), key=lambda d: d.name)
    if not offenders:
        report.add("packages", "ok", f"{what} share {reference} ({len(group)} packages)")
        return
    listed = ", ".join(f"{d.name} {d.version}" for d in offenders)
    if broken:
        report.add("packages", "problem", f"{what} are not on one release ({anchor} {reference}); these differ: "
                   f"{listed}", "")
    else:
        report.add("packages", "info", f"{what} differ from {anchor} {reference} ({listed}), but every "
                   "requirement they declare is met")


def _broken_requirements(dists: Mapping[str, Dist]) -> list[tuple[str, str, str | None]]:
    """What `pip check` would list among OpenTelemetry packages (theirs, cryostorm-run's, and anyone's
    requirement on one): (who, message, requirement to add to the command or None)."""
    from packaging.requirements import InvalidRequirement, Requirement

    broken: list[tuple[str, str, str | None]] = []
    for dist in sorted(dists.values(), key=lambda d: d.name):
        ours = dist.name.startswith(PREFIX) or dist.name == OWN
        for text in dist.requires:
            try:
                req = Requirement(text)
            except InvalidRequirement:
                continue
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue  # an optional extra, or not for this platform / Python
            name = normalize(req.name)
            if not ours and not name.startswith(PREFIX):
                continue
            have = dists.get(name)
            plain = f"{req.name}{req.specifier}"
            if have is None:
                broken.append((dist.name, f"{dist.name} {dist.version} requires {plain}, which is not installed",
                               plain))
            elif not req.specifier.contains(have.version, prereleases=True):
                broken.append((dist.name, f"{dist.name} {dist.version} requires {plain}, but {name} {have.version} "
                               "is installed", None if name.startswith(PREFIX) else plain))
    return broken


def _package_check(report: DoctorReport, dists: Mapping[str, Dist]) -> None:
    broken = _broken_requirements(dists)
    _line_check(report, _stable(dists), "opentelemetry-api", "api/sdk/exporters", bool(broken))
    _line_check(report, _contrib(dists), CONTRIB_ANCHOR, "contrib packages", bool(broken))
    if not broken:
        return
    command = fix_command(dists, [add for _, _, add in broken if add])
    report.findings[:] = [Finding(f.section, f.status, f.message, command) if f.status == "problem" else f
                          for f in report.findings]
    for _, message, _ in broken:
        report.add("packages", "problem", message, command)
    report.packages_command = command


# -- instrumentations -------------------------------------------------------------------------------

# bootstrap_gen lists pydantic for the tortoiseorm instrumentation (it can trace pydantic models of
# tortoise-orm); pydantic alone is not something to instrument.
_NOT_TARGETS = {("pydantic", "opentelemetry-instrumentation-tortoiseorm")}


def library_table() -> list[dict[str, str]]:
    """opentelemetry-instrumentation's table of instrumentable libraries (its `bootstrap_gen`)."""
    from opentelemetry.instrumentation.bootstrap_gen import libraries as table

    return list(table)


@dataclass(frozen=True)
class Target:
    """An installed library that an instrumentation package exists for."""

    library: Dist
    instrumentation: str  # normalized name of the instrumentation package
    supports: str  # the library versions that instrumentation supports, e.g. `<2.1.0,>=1.0.0`
    supported: bool  # the installed library is among them


def targets(dists: Mapping[str, Dist], table: Iterable[Mapping[str, str]]) -> list[Target]:
    """Each installed library with an instrumentation in `table` (once per pair, in table order)."""
    from packaging.requirements import Requirement

    found: dict[tuple[str, str], Target] = {}
    for entry in table:
        lib, inst = Requirement(entry["library"]), Requirement(entry["instrumentation"])
        key = (normalize(lib.name), normalize(inst.name))
        have = dists.get(key[0])
        if have is None or key in found or key in _NOT_TARGETS:
            continue
        found[key] = Target(have, key[1], str(lib.specifier), lib.specifier.contains(have.version, prereleases=True))
    return list(found.values())


def _instrumentation_check(report: DoctorReport, dists: Mapping[str, Dist],
                           table: Iterable[Mapping[str, str]]) -> None:
    anchor = dists.get(CONTRIB_ANCHOR)
    if anchor is None:
        report.add("instrumentations", "problem", f"{CONTRIB_ANCHOR} is not installed: nothing can be instrumented",
                   fix_command(dists, [CONTRIB_ANCHOR]))
        return
    broken = {who for who, _, _ in _broken_requirements(dists)}
    found = targets(dists, table)
    # By name, together with the installed OpenTelemetry packages: pip picks the release of each that fits
    # them, or moves them all to the newest line that has one (bootstrap_gen's `==` names the anchor's version,
    # which need not exist for this package). Every missing one in one command, told once after them all.
    missing = [t.instrumentation for t in found if t.supported and t.instrumentation not in dists]
    for target in found:
        inst = target.instrumentation
        have_inst = dists.get(inst)
        label = f"{target.library.name} {target.library.version}"
        if have_inst is None:
            if target.supported:
                report.add("instrumentations", "info", f"{label}: not instrumented ({inst} is not installed)",
                           fix_command(dists, missing))
            continue
        if inst in broken:
            report.add("instrumentations", "problem",
                       f"{label}: {inst} {have_inst.version} is not from the line of {CONTRIB_ANCHOR} "
                       f"{anchor.version}", fix_command(dists))
        elif not target.supported:
            report.add("instrumentations", "problem",
                       f"{label}: outside what {inst} {have_inst.version} supports ({target.supports}), so it is "
                       "not instrumented", f"use {target.library.name} {target.supports}")
        else:
            report.add("instrumentations", "ok", f"{label}: instrumented by {inst} {have_inst.version}")


# -- the command's interpreter ----------------------------------------------------------------------

_PROBE_CODE = ("import importlib.util, json, sys; print(json.dumps({'prefix': sys.prefix, 'executable': "
               "sys.executable, 'version': '%d.%d.%d' % sys.version_info[:3], 'no_user_site': sys.flags.no_user_site, "
               "'importable': importlib.util.find_spec('cryostorm_run') is not None}))")


def _command_check(report: DoctorReport, command: Sequence[str], environ: Mapping[str, str]) -> None:
    from cryostorm_run.common.interpreter import hook_skipping_flags
    from cryostorm_run.diagnose.interpreters import no_user_site, python_of, run_probe
    from cryostorm_run.launch.plan import LaunchError, resolve_command

    try:
        path = resolve_command(command[0], environ.get("PATH"))
        found = python_of(path, environ.get("PATH"))
    except LaunchError as exc:
        report.add("command", "problem", str(exc), "check the command and PATH")
        return
    if found is None:
        if (line := _pythonpath_replaced(path)) is not None:  # a shell entrypoint's `export PYTHONPATH=/app/lib`
            report.add("command", "problem", f"{command[0]} ({path}) sets PYTHONPATH without keeping the one it was "
                       f"given ({line!r}): the Python it starts loses cryostorm's hook and runs NOT instrumented",
                       "append instead: PYTHONPATH=/app/lib${PYTHONPATH:+:$PYTHONPATH}")
            return
        report.add("command", "info", f"{command[0]} ({path}) is not a Python program; the hook serves the Python "
                   "programs it starts", "check the python it runs: cryostorm-run doctor -- PYTHON")
        return
    interpreter, how = found
    facts = run_probe([*interpreter, *no_user_site(command[1:])], _PROBE_CODE, environ)
    if facts is None:
        report.add("command", "problem", f"{command[0]} resolves to {path} ({how}), which could not be run to check it")
        return
    where = f"{command[0]} resolves to {path} ({how}), Python {facts['version']} in {facts['prefix']}"
    if os.path.realpath(facts["prefix"]) != os.path.realpath(sys.prefix):  # a symlinked path: the same one
        report.add("command", "problem",
                   f"{where}: not the environment cryostorm-run is installed in ({sys.prefix}), so the program "
                   "would run NOT instrumented",
                   f"run its own {own} (installed there too)" if os.path.exists(own := os.path.join(
                       facts["prefix"], "bin", "cryostorm-run")) else f"run {sys.executable} instead, activate that "
                   f"environment, or install cryostorm-run into {facts['prefix']}")
    elif (skipping := hook_skipping_flags(path, command[1:]) or hook_skipping_flags(interpreter[0],
                                                                                    interpreter[1:])) is not None:
        report.add("command", "problem", f"{where}, but with {skipping} it never imports the hook: the program would "
                   "run NOT instrumented", f"drop {skipping}, or instrument in code with cryostorm_run.Telemetry")
    elif not facts["importable"]:
        report.add("command", "problem", f"{where}: cannot import cryostorm_run",
                   "drop -s or PYTHONNOUSERSITE (pip install --user put cryostorm-run in user site-packages), or "
                   "install it into the environment" if facts.get("no_user_site") else "reinstall cryostorm-run")
    else:
        report.add("command", "ok", f"{where}: the hook will instrument it")


def _pythonpath_replaced(path: str) -> str | None:
    """The line of a shell script (a `#!` naming sh, bash, dash, ash or zsh) that assigns PYTHONPATH without
    `$PYTHONPATH` in it, or None."""
    try:
        with open(path, "rb") as script:
            text = script.read(65536).decode("utf-8", "replace")
    except OSError:
        return None
    first = text.split("\n", 1)[0]
    if not first.startswith("#!") or not re.search(r"\b(sh|bash|dash|ash|zsh)\b", first):
        return None
    for line in text.splitlines():
        found = re.match(r"\s*(?:export\s+)?PYTHONPATH=(\"[^\"]*\"|'[^']*'|[^\s;]*)", line)
        if found and "PYTHONPATH" not in found.group(1):
            return line.strip()
    return None


_CONFIG_FIX = "`cryostorm-run check-config` shows every setting, where it came from and how to fix it"


def _configuration_check(report: DoctorReport, environ: Mapping[str, str]) -> None:
    """The settings `cryostorm-run -- COMMAND` would read here (environment, config file in the working
    directory): a refused one is a problem, as it stops the launcher before the program starts."""
    from cryostorm_run.config.errors import ConfigError
    from cryostorm_run.config.loading import load_settings

    try:
        loaded = load_settings(environ)
    except ConfigError as exc:  # the problems are already safe to show (masked, escaped, shortened)
        for p in exc.problems:
            shown = "" if p.value is None else f" = '{p.value}'"
            report.add("configuration", "problem", f"{p.name}{shown}: {p.message}" + (f" ({p.hint})" if p.hint else ""),
                       f"{_CONFIG_FIX}; until then `cryostorm-run -- COMMAND` refuses to start (exit 2)")
        return
    for advice in loaded.warnings:
        report.add("configuration", "info", str(advice))
    report.add("configuration", "ok", "the settings in this environment are valid", _CONFIG_FIX)


def diagnose(
    command: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    paths: Sequence[str] | None = None,
    libraries: Iterable[Mapping[str, str]] | None = None,
    configuration: bool = False,
) -> DoctorReport:
    """Check the packages on `paths` (default: sys.path) and, with a `command`, its interpreter;
    with `configuration`, also the settings in `environ` and whether cryostorm's own modules and the
    environment's packages are byte-compiled (the `doctor` command does)."""
    environ = os.environ if environ is None else environ
    dists = installed(paths)
    report = DoctorReport(contrib_version=dists[CONTRIB_ANCHOR].version if CONTRIB_ANCHOR in dists else None)
    if configuration:
        _configuration_check(report, environ)
    _package_check(report, dists)
    _instrumentation_check(report, dists, library_table() if libraries is None else libraries)
    if command:
        _command_check(report, command, environ)
    if configuration:
        from cryostorm_run.diagnose.startup import startup_findings

        for finding in startup_findings(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), environ):
            report.add("start-up", *finding)
    return report


_TITLES = {"configuration": "Configuration", "packages": "OpenTelemetry packages",
           "instrumentations": "Instrumentations", "command": "Command", "start-up": "Start-up"}
_MARKS = {"ok": "ok     ", "problem": "PROBLEM", "info": "-      "}


def render_report(report: DoctorReport) -> str:
    """Plain text, one finding a line with its fix under it."""
    lines = [f"cryostorm-run doctor: Python {sys.version.split()[0]} in {sys.prefix}"]
    for section, title in _TITLES.items():
        findings = [f for f in report.findings if f.section == section]
        if not findings:
            continue
        lines += ["", title]
        ordered = sorted(findings, key=lambda f: ("problem", "info", "ok").index(f.status))
        for i, f in enumerate(ordered):
            lines.append(f"  {_MARKS[f.status]} {f.message}")
            if f.fix and (i + 1 == len(ordered) or ordered[i + 1].fix != f.fix):  # a shared fix: once, after
                lines.append(f"          {f.fix}")
        if section != "command" and any(f.fix.startswith("pip install") for f in findings):
            lines.append("  (pip install names the installed OpenTelemetry packages without versions and "
                         f"{OWN}'s own ranges: pip keeps what fits and moves the rest to one line that has "
                         "every package named; run it as one command)")
    total = report.problems
    lines += ["", f"cryostorm-run doctor: {total} problem{'s' if total != 1 else ''}" if total
              else "cryostorm-run doctor: healthy"]
    return "\n".join(lines) + "\n"
