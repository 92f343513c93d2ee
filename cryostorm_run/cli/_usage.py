"""The commands' command-line mistakes that typer's parser finds (an unknown option, a value of the wrong type,
a missing value, an extra argument) told as cryostorm's own: the option as typed, its value, what is allowed
and how to fix it, exit 2; with --json, also the command's JSON document on stdout, so a program reading it
gets one whatever went wrong."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from cryostorm_run.cli._common import EXIT_USAGE, UsageError, fail, missing_value, render_problems
from cryostorm_run.config.sources import Problem

# What a usage error of each command leaves undone (the `--` path's: nothing was started).
NOTHING = {"check-config": "nothing was checked", "print-env": "nothing was printed", "doctor": "nothing was checked",
           "bootstrap": "nothing was installed", "schema": "nothing was printed"}


def is_parse_error(exc: BaseException) -> bool:
    """click's UsageError and its kinds, by their public surface (typer vendors click in newer releases, so
    the class is not one importable name on every supported typer)."""
    return getattr(exc, "exit_code", None) == EXIT_USAGE and callable(getattr(exc, "format_message", None))


def refuse(exc: Any, args: Sequence[str]) -> None:
    """Exit 2 with `exc` (a click usage error raised while parsing `args`) told as cryostorm's problems."""
    command = args[0] if args and args[0] in NOTHING else ""  # cli.main hands typer `COMMAND OPTIONS...`
    problem = _problem(exc, command, args)
    if command and "--json" in args[: args.index("--") if "--" in args else len(args)]:
        write_json(command, [problem])
    fail(render_problems([problem], "usage error", NOTHING.get(command, "nothing was done"), footer=False), EXIT_USAGE)


def write_json(command: str, problems: Sequence[Problem]) -> None:
    """The JSON document `command --json` prints, for a command line it could not run."""
    rows = [{"name": p.name, "value": p.value, "message": p.message, "hint": p.hint} for p in problems]
    if command == "check-config":
        document: dict[str, Any] = {"valid": False, "settings": [], "warnings": [], "problems": rows}
    elif command == "doctor":
        document = {"healthy": False, "findings": [
            {"section": "usage", "status": "problem",
             "message": f"{p.name}" + ("" if p.value is None else f" = '{p.value}'") + f": {p.message}", "fix": p.hint}
            for p in problems]}
    else:
        return
    sys.stdout.write(json.dumps(document, indent=2) + "\n")
    sys.stdout.flush()


def json_on_usage_error(command: str, as_json: bool, exc: BaseException) -> None:
    """In a command's run(): a UsageError of its own still gives --json its document."""
    if as_json and isinstance(exc, UsageError):
        write_json(command, exc.problems)


def _problem(exc: Any, command: str, args: Sequence[str]) -> Problem:
    param = getattr(exc, "param", None)
    opts = list(getattr(param, "opts", None) or [])
    option = getattr(exc, "option_name", None) or (opts[0] if opts and opts[0].startswith("-") else None)
    see = f"see cryostorm-run {command or ''} --help".replace("  ", " ")
    kind = type(exc).__name__
    if kind == "NoSuchOption" and option:
        close = sorted(getattr(exc, "possibilities", None) or ())
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        return Problem(option, None, f"unknown option{' for ' + command if command else ''}", hint + see)
    if option and kind in ("BadOptionUsage", "MissingParameter") and not _given(args, opts or [option]):
        return missing_value(option, None, command)
    if option and kind == "BadParameter":
        message = str(getattr(exc, "message", "") or exc.format_message())
        return Problem(option, _given(args, opts or [option]), message, see)
    # e.g. "Got unexpected extra argument(s) (otlp.headers=authorization=Bearer …)": the arguments quoted as typed,
    # and what follows an = in one may be a secret (a header value with a space in it included)
    message = str(exc.format_message())
    for arg in sorted((a for a in args if "=" in a), key=len, reverse=True):
        message = message.replace(arg, arg.partition("=")[0] + "=****")
    return Problem("the command line", None, message, see)


def _given(args: Sequence[str], names: Sequence[str]) -> str | None:
    """The last value given to the option of `names` (`--opt VALUE` or `--opt=VALUE`), as typed."""
    found = None
    for i, arg in enumerate(args):
        if arg == "--":
            break
        name, eq, value = arg.partition("=")
        if name in names:
            found = value if eq else (args[i + 1] if i + 1 < len(args) else None)
    return found
