"""Command-line entry point. The `--` path never imports typer or rich (start-up cost)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

TYPER_COMMANDS = ("check-config", "print-env", "doctor", "bootstrap", "schema", "--version")


def main(argv: Sequence[str] | None = None) -> None:
    """`cryostorm-run [OPTIONS] -- COMMAND ...`, `cryostorm-run check-config`, `cryostorm-run print-env`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "run":
        args = args[1:]
    elif not args or args[0] in TYPER_COMMANDS:
        from cryostorm_run.cli._app import app

        app(args=args, prog_name="cryostorm-run")
        return
    elif args[0] in ("-h", "--help"):
        from cryostorm_run.cli._run import usage

        commands = "check-config, print-env, doctor, bootstrap, schema"
        sys.stdout.write(usage() + f"\nCommands: {commands} (cryostorm-run COMMAND --help)\n")
        raise SystemExit(0)
    from cryostorm_run.cli._run import main as run_main

    run_main(args)
