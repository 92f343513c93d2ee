"""Command-line entry point. The `--` path never imports typer or rich (start-up cost)."""

from __future__ import annotations

import io
import sys
from collections.abc import Sequence


class _Nowhere(io.TextIOBase):
    """Where the launcher's output goes when its stdout or stderr was closed (`>&-`, `2>&-`): Python leaves
    `None` there, and the launcher's lines are dropped as the shell asked, instead of failing before exec."""

    def write(self, text: str) -> int:
        return len(text)


def main(argv: Sequence[str] | None = None) -> None:
    """`cryostorm-run [OPTIONS] -- COMMAND ...`, `cryostorm-run check-config`, `cryostorm-run print-env`."""
    try:
        _main(argv)
    except ModuleNotFoundError as exc:  # one the launcher needs before its own error handling can run
        from cryostorm_run.cli._common import EXIT_RUNTIME, missing_dependency

        missing = missing_dependency(exc)
        if missing is None:
            raise
        sys.stderr.write(missing + "\n")
        raise SystemExit(EXIT_RUNTIME) from None


def _main(argv: Sequence[str] | None) -> None:
    from cryostorm_run.cli._flags import COMMANDS

    # The program is exec'd with its descriptors as they are (a closed one stays closed): only the
    # launcher's own writes need somewhere to go.
    if sys.stdout is None:
        sys.stdout = _Nowhere()
    if sys.stderr is None:
        sys.stderr = _Nowhere()
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "run":
        args = args[1:]
    elif args and args[0] in (*COMMANDS, "--version"):
        _one_file_each(args)
        from cryostorm_run.cli._app import app
        from cryostorm_run.cli._usage import is_parse_error, refuse

        try:  # not standalone: its parse errors are told as cryostorm's (exit 2), not as click prints them
            code = app(args=args, prog_name="cryostorm-run", standalone_mode=False)
        except Exception as exc:
            if not is_parse_error(exc):
                raise
            refuse(exc, args)
        raise SystemExit(code if isinstance(code, int) else 0)
    elif not args or args[0] in ("-h", "--help"):
        from cryostorm_run.cli._run import usage

        # One help, asked for or not; without arguments it is a usage error (exit 2), on stderr.
        (sys.stdout if args else sys.stderr).write(usage())
        raise SystemExit(0 if args else 2)
    from cryostorm_run.cli._run import main as run_main

    run_main(args)


def _one_file_each(args: Sequence[str]) -> None:
    """`check-config --env-file a.env --env-file b.env` read only b.env, silently: refused, as on the `--` path
    (`_run._not_twice`, whose refusal this is). Up to `--` (doctor takes a command after it)."""
    from cryostorm_run.cli._common import boundary
    from cryostorm_run.cli._run import FILE_OPTIONS, not_twice

    def check() -> None:
        given: dict[str, object] = dict.fromkeys(FILE_OPTIONS.values())
        for arg in args:
            if arg == "--":
                break
            name = arg.partition("=")[0]
            if name in FILE_OPTIONS:
                not_twice(name, given)
                given[FILE_OPTIONS[name]] = arg

    try:
        check()
    except Exception:
        boundary(check, "--debug" in args)
