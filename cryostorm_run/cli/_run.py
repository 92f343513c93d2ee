"""`cryostorm-run [OPTIONS] -- COMMAND [ARGS...]`: the hot path, parsed by hand.

typer and rich are never imported here: every container start pays for this path.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

from cryostorm_run.cli._common import COMMANDS, FLAGS, UsageError, boundary, load, missing_value, overrides_from, warn
from cryostorm_run.cli._flags import flag_help

TYPE_CHECKING = False  # not typing's: this is every container start's path (typing brings re and more)
if TYPE_CHECKING:
    from typing import Any, NoReturn

    from cryostorm_run.config.sources import Problem
    from cryostorm_run.launch.plan import Prepared

USAGE = """\
Usage: cryostorm-run [OPTIONS] -- COMMAND [ARGS...]
       cryostorm-run {commands} | --version | --help

Run COMMAND with OpenTelemetry configured from CRYOSTORM_* / OTEL_* settings.

Options (before --):
  --env-file PATH        read settings from a dotenv file: below CRYOSTORM_* and OTEL_* variables,
                         above cryostorm.toml / [tool.cryostorm] and the defaults
  --config-file PATH     an OpenTelemetry configuration file (YAML, file_format 1.x, as OTEL_CONFIG_FILE):
                         it decides the OpenTelemetry settings; cryostorm.toml needs no option
  --set KEY=VALUE        set any setting by its dotted path, e.g. --set tracing.sample_rate=0.5
{flags}
  --quiet                no startup report line on stderr
  --verbose              full startup report (each instrumentation and why)
  --debug                show tracebacks for internal errors
  -h, --help             show this help

Commands: {command_list} (cryostorm-run COMMAND --help)
"""


def usage() -> str:
    flags = "\n".join(f"  {flag + ' VALUE':<22} {flag_help(flag)}" for flag in FLAGS)
    return USAGE.format(flags=flags, commands=" | ".join(COMMANDS), command_list=", ".join(COMMANDS))


def _path(value: str) -> Any:
    from pathlib import Path

    return Path(value)


VALUE_OPTIONS = ("--env-file", "--config-file", "--set", *FLAGS)
SWITCHES = ("-h", "--help", "--quiet", "--verbose", "--debug")


FILE_OPTIONS = {"--env-file": "env_file", "--config-file": "otel_config"}


def not_twice(name: str, options: Mapping[str, object]) -> None:
    """One env file, one config file: a second one silently replaced the first (docker reads every --env-file)."""
    if name in FILE_OPTIONS and options[FILE_OPTIONS[name]] is not None:
        raise UsageError([_problem(name, None, "given more than once: one file is read",
                                   "merge them into one file, or set the values that differ in the environment")])


def parse(args: Sequence[str]) -> tuple[dict[str, object], list[str]]:
    """Split launcher options from the command; raise UsageError naming the bad option."""
    options: dict[str, object] = {"env_file": None, "otel_config": None, "set": [], "flags": {}, "report": "line",
                                  "debug": False}
    items = list(args)
    while items:
        arg = items.pop(0)
        if arg == "--":
            return options, items
        if arg in ("-h", "--help"):
            options["help"] = True
            continue
        if arg in ("--quiet", "--verbose"):
            if options["report"] not in ("line", arg[2:]):  # the README: `--quiet | --verbose`, one or the other
                raise UsageError([_problem("--quiet and --verbose", None, "cannot be used together",
                                           "keep one: --quiet prints no start-up report, --verbose the full one")])
            options["report"] = arg[2:]
            continue
        if arg == "--debug":
            options["debug"] = True
            continue
        name, eq, inline = arg.partition("=")
        if name in VALUE_OPTIONS:
            value = inline if eq else _next_value(name, items)
            not_twice(name, options)
            if name == "--env-file":
                options["env_file"] = _path(value)
            elif name == "--config-file":
                options["otel_config"] = _path(value)
            elif name == "--set":
                options["set"].append(value)  # type: ignore[attr-defined]
            else:
                options["flags"][name] = value  # type: ignore[index]
            continue
        if arg.startswith("-"):  # `--headers=k=SECRET`: the option alone is named, what follows its = masked
            import difflib

            close = difflib.get_close_matches(name, (*VALUE_OPTIONS, *SWITCHES), n=1, cutoff=0.8)
            raise UsageError([_problem(name, "****" if eq else None, "unknown option",
                                       (f"did you mean {close[0]}? " if close else "") + "see cryostorm-run --help")])
        return options, [arg, *items]  # no `--`: the command starts here
    return options, []


def _next_value(name: str, items: list[str]) -> str:
    """The value of `name` written as the next argument. `--service-name -- CMD` would name the service
    `--`: the `--`, or a launcher option, where the value belongs is refused (`--service-name=--` is not)."""
    value = items.pop(0) if items else None
    if value is None or value == "--" or value.partition("=")[0] in (*VALUE_OPTIONS, *SWITCHES):
        raise UsageError([missing_value(name, value)])
    return value


def main(args: Sequence[str]) -> NoReturn:
    debug = "--debug" in args

    def run() -> int:
        from cryostorm_run.launch import plancache
        from cryostorm_run.launch.plan import exec_plan, finish

        options, command = parse(args)
        if options.get("help"):
            sys.stdout.write(usage())
            return 0
        if command:
            _not_a_subcommand(command[0])  # a usage error: said before any setting is read
        directory = plancache.cache_dir(os.environ)
        key = None if directory is None else cache_key(options, os.environ)
        prepared = None if directory is None or key is None else plancache.lookup(directory, key)
        if prepared is None:  # the full validation (pydantic); a valid result is kept for next time
            prepared = _validate(options, os.environ)
            if directory is not None and key is not None:
                plancache.store(directory, key, prepared)
        if not command:
            raise UsageError([_problem("COMMAND", None, "no command given", "cryostorm-run [OPTIONS] -- COMMAND")])
        plan = finish(prepared, command, os.environ, report=str(options["report"]))
        warn((*prepared.warnings, *plan.warnings))
        if prepared.off and options["report"] != "quiet":  # the start-up report's place: no hook runs
            sys.stderr.write(f"cryostorm: telemetry off ({prepared.off}): the program runs without it\n")
        exec_plan(plan)

    boundary(run, debug)


def _not_a_subcommand(name: str) -> None:
    """`cryostorm-run --env-file .env print-env` names a program `print-env`: unless there is one on PATH, the
    user meant cryostorm-run's command, whose options come after it. Said as that, not as a missing program."""
    if name not in COMMANDS:
        return
    import shutil  # only here: the `--` path imports as little as it can

    if shutil.which(name) is None:
        raise UsageError([_problem("COMMAND", name, "a cryostorm-run command, not a program: write it first, "
                                   "its options after it", f"cryostorm-run {name} [OPTIONS]; see cryostorm-run "
                                   f"{name} --help")])


def cache_key(options: Mapping[str, Any], environ: Mapping[str, str]) -> bytes | None:
    """The plan cache's key for these launcher options (`check-config` warms the same one); None: not cached."""
    from cryostorm_run.launch import plancache

    flags = {name: str(value) for name, value in options["flags"].items() if value is not None}
    return plancache.material(environ, _str(options["env_file"]), _str(options["otel_config"]),
                              [str(item) for item in options["set"]], flags)


def _str(path: object) -> str | None:
    return None if path is None else str(path)


def _validate(options: Mapping[str, Any], environ: Mapping[str, str]) -> Prepared:
    from cryostorm_run.launch.plan import prepare_loaded

    # pydantic looks for plugins through every distribution's metadata (~30 ms): the launcher
    # validates a fixed model and needs none. Not passed on to the program.
    set_here = "PYDANTIC_DISABLE_PLUGINS" not in os.environ
    if set_here:
        os.environ["PYDANTIC_DISABLE_PLUGINS"] = "__all__"
    from cryostorm_run.config.errors import ConfigError

    try:
        overrides = overrides_from(options["flags"], options["set"])
        loaded = load(options["env_file"], overrides, otel_config=options["otel_config"])
    except ConfigError as error:
        switch = error.switched_off
        if switch is None or any(p.name == switch for p in error.problems):
            raise
        # The kill switch works whatever else is wrong: the program runs as it is, and the rest is told.
        from cryostorm_run.launch.plan import Prepared

        said = "; ".join(f"{p.name}: {p.message}" for p in error.problems)
        return Prepared(False, (), (), warnings=(f"telemetry is off ({switch}), so the program runs without it; "
                                                 f"with it on, these settings would be refused: {said}",))
    finally:
        if set_here:
            os.environ.pop("PYDANTIC_DISABLE_PLUGINS", None)
    return prepare_loaded(loaded, environ)


def _problem(name: str, value: str | None, message: str, hint: str = "") -> Problem:
    from cryostorm_run.config.sources import Problem

    return Problem(name, value, message, hint)
