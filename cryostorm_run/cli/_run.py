"""`cryostorm-run [OPTIONS] -- COMMAND [ARGS...]`: the hot path, parsed by hand.

typer and rich are never imported here: every container start pays for this path.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from cryostorm_run.cli._common import COMMANDS, FLAGS, UsageError, boundary, load, overrides_from
from cryostorm_run.config.sources import Problem

USAGE = """\
Usage: cryostorm-run [OPTIONS] -- COMMAND [ARGS...]
       cryostorm-run {commands} | --version | --help

Run COMMAND with OpenTelemetry configured from CRYOSTORM_* / OTEL_* settings.

Options (before --):
  --env-file PATH        read settings from a dotenv file (lowest precedence above defaults)
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
    flags = "\n".join(f"  {flag + ' VALUE':<22} {help_}" for flag, (_, help_) in FLAGS.items())
    return USAGE.format(flags=flags, commands=" | ".join(COMMANDS), command_list=", ".join(COMMANDS))


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
            options["report"] = arg[2:]
            continue
        if arg == "--debug":
            options["debug"] = True
            continue
        name, eq, inline = arg.partition("=")
        if name in ("--env-file", "--config-file", "--set", *FLAGS):
            value = inline if eq else (items.pop(0) if items else None)
            if value is None:
                raise UsageError([Problem(name, None, "expects a value")])
            if name == "--env-file":
                options["env_file"] = Path(value)
            elif name == "--config-file":
                options["otel_config"] = Path(value)
            elif name == "--set":
                options["set"].append(value)  # type: ignore[attr-defined]
            else:
                options["flags"][name] = value  # type: ignore[index]
            continue
        if arg.startswith("-"):
            raise UsageError([Problem(arg, None, "unknown option", "see cryostorm-run --help")])
        return options, [arg, *items]  # no `--`: the command starts here
    return options, []


def main(args: Sequence[str]) -> NoReturn:
    debug = "--debug" in args
    # pydantic looks for plugins through every distribution's metadata (~30 ms): the launcher
    # validates a fixed model and needs none. Not passed on to the program.
    set_here = "PYDANTIC_DISABLE_PLUGINS" not in os.environ
    if set_here:
        os.environ["PYDANTIC_DISABLE_PLUGINS"] = "__all__"

    def run() -> int:
        from cryostorm_run.launch.plan import exec_plan, plan_launch

        options, command = parse(args)
        if options.get("help"):
            sys.stdout.write(usage())
            return 0
        overrides = overrides_from(options["flags"], options["set"])  # type: ignore[arg-type]
        loaded = load(options["env_file"], overrides, otel_config=options["otel_config"])  # type: ignore[arg-type]
        if set_here:
            del os.environ["PYDANTIC_DISABLE_PLUGINS"]
        if not command:
            raise UsageError([Problem("COMMAND", None, "no command given", "cryostorm-run [OPTIONS] -- COMMAND")])
        # What an OpenTelemetry configuration file replaces never reaches the program's SDK; its limits do.
        environ = {k: v for k, v in os.environ.items() if k not in loaded.dropped_env}
        environ.update({name: value for name, (value, _) in loaded.file_env.items()})
        plan = plan_launch(loaded.settings, command, environ, report=str(options["report"]))
        from cryostorm_run.common.shown import clean

        for warning in (*loaded.warnings, *plan.warnings):
            sys.stderr.write(f"cryostorm-run: warning: {clean(str(warning))}\n")
        exec_plan(plan)

    boundary(run, debug)
