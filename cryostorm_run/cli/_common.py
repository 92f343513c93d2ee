"""Shared by the fast `--` path and the typer commands: flags, loading, the error boundary."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence

from cryostorm_run.cli._flags import COMMANDS, FLAGS

TYPE_CHECKING = False  # not typing's: the `--` path imports this module (see cli/_run.py)
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any, NoReturn

    from cryostorm_run.config.sources import Problem

__all__ = ["COMMANDS", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_RUNTIME", "EXIT_USAGE", "FLAGS", "UsageError", "boundary",
           "fail", "load", "missing_value", "overrides_from", "render_problems", "warn"]

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """A command line that cannot be run. `note` says what did not happen (the `--` path: nothing was
    started); `configuration`: the problem is a setting's value, so check-config's footer helps."""

    def __init__(self, problems: Sequence[Problem], title: str = "usage error", *,
                 note: str = "nothing was started", configuration: bool = False) -> None:
        super().__init__("; ".join(p.message for p in problems))
        self.problems = list(problems)
        self.title = title
        self.note = note
        self.configuration = configuration


def missing_value(option: str, value: str | None, command: str = "") -> Problem:
    """`option` got no value, or `--` or another option where its value belongs (`--service-name -- CMD`
    would otherwise name the service `--`). `command`: the typer command, "" for the `--` path."""
    from cryostorm_run.cli._flags import EXAMPLES
    from cryostorm_run.config.sources import Problem

    if value is None:
        message = "expects a value"
    elif value == "--":
        message = "expects a value, not --, which ends the options"
    else:
        value = value.partition("=")[0]  # the option alone: `--set=otlp.headers=k=SECRET` is not shown
        message = f"expects a value, not the option {value}"
    example = f"cryostorm-run {command + ' ' if command else ''}{option} {EXAMPLES.get(option, 'VALUE')}"
    allowed = _allowed(option)
    return Problem(option, value, message,
                   f"e.g. {example}{'' if command else ' -- COMMAND'}" + (f"; allowed: {allowed}" if allowed else ""))


def _allowed(option: str) -> str:
    """The values an option takes, where they are a fixed list (only on the error path: imports)."""
    if option == "--exporter":
        from cryostorm_run.config.enums import ExporterType

        return ", ".join(ExporterType.choices())
    if option == "--format":
        from cryostorm_run.launch.envformat import FORMATS

        return ", ".join(FORMATS)
    if option == "--installer":
        from cryostorm_run.diagnose.installer import INSTALLERS

        return ", ".join(INSTALLERS)
    return ""


def warn(warnings: Iterable[object]) -> None:
    """The settings' warnings (advice), one `cryostorm: warning:` line each on stderr: the same lines
    from `cryostorm-run -- CMD`, check-config and print-env. The prefix is the one of every line cryostorm
    writes to the program's stderr (the hook's included), so one `^cryostorm:` filter finds them all."""
    lines = [str(warning) for warning in warnings]
    if lines:  # a warning may come from the plan cache: made safe to show again
        from cryostorm_run.common.shown import clean

        sys.stderr.write("".join(f"cryostorm: warning: {clean(line)}\n" for line in lines))


def overrides_from(flag_values: Mapping[str, str | None], assignments: Sequence[str]) -> list[Any]:
    from cryostorm_run.config.loading import Override, parse_dotted

    result = [Override(flag, FLAGS[flag][0], value) for flag, value in flag_values.items() if value is not None]
    result += [parse_dotted("--set", item) for item in assignments]
    return result


def load(env_file: Path | None, overrides: Sequence[Any], environ: Mapping[str, str] | None = None,
         otel_config: Path | None = None) -> Any:
    from cryostorm_run.config.loading import load_settings

    return load_settings(os.environ if environ is None else environ, env_file=env_file, overrides=overrides,
                         otel_config=otel_config)


def render_problems(problems: Sequence[Problem], title: str = "invalid configuration",
                    note: str = "nothing was started", footer: bool = True) -> str:
    """`footer`: the check-config pointer, for problems with settings (not for an unknown option)."""
    count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
    lines = [f"cryostorm-run: {title} ({count})" + (f"; {note}." if note else ".")]
    for p in problems:
        shown = "" if p.value is None else f" = '{p.value}'"  # already printable (see Problem)
        lines.append(f"  {p.name}{shown}")
        lines.append(f"    {p.message}" + (f" ({p.hint})" if p.hint else ""))
    if footer:
        lines.append("Fix the values above; `cryostorm-run check-config` shows every setting and where it came from.")
    return "\n".join(lines)


def fail(message: str, code: int) -> NoReturn:
    from cryostorm_run.common.shown import clean

    # Every message may quote what the user typed: URL secrets masked, control characters escaped.
    sys.stderr.write(clean(message.rstrip("\n"), len(message)) + "\n")
    sys.stderr.flush()
    raise SystemExit(code)


def boundary(func: Callable[[], int | None], debug: bool) -> NoReturn:
    """The one place exceptions become exit codes (0 ok, 1 runtime, 2 config, 126/127, 130)."""
    from cryostorm_run.config.errors import ConfigError  # light: the `--` path may not have loaded pydantic
    from cryostorm_run.launch.plan import LaunchError

    try:
        code = func()
    except ConfigError as exc:
        fail(render_problems(exc.problems), EXIT_USAGE)
    except UsageError as exc:
        fail(render_problems(exc.problems, exc.title, exc.note, footer=exc.configuration), EXIT_USAGE)
    except LaunchError as exc:
        fail(f"cryostorm-run: {exc}", exc.exit_code)
    except KeyboardInterrupt:
        fail("cryostorm-run: interrupted", EXIT_INTERRUPTED)
    except SystemExit:
        raise
    except Exception as exc:
        if (missing := missing_dependency(exc)) is not None:
            fail(missing, EXIT_RUNTIME)
        if debug:
            import traceback

            from cryostorm_run.common.shown import clean

            text = _mask_text(traceback.format_exc())
            sys.stderr.write(clean(text, len(text)))
        else:
            from cryostorm_run.common.shown import printable

            exc_text = printable(_mask_text(f"{type(exc).__name__}: {exc}"), 500)
            fail(f"cryostorm-run: internal error: {exc_text} (run with --debug for the traceback)", EXIT_RUNTIME)
        raise SystemExit(EXIT_RUNTIME) from None
    raise SystemExit(code or EXIT_OK)


def missing_dependency(exc: BaseException) -> str | None:
    """For an import that failed because a package cryostorm-run declares is not installed (installed with
    --no-deps, or removed since): the line that says which and how to add it; None for anything else.
    Needs none of the packages that may be missing (importlib.metadata only)."""
    import importlib.metadata
    import re

    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    try:
        requires = importlib.metadata.requires("cryostorm-run") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    declared = {re.sub(r"[-_.]+", "-", re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0]).lower(): r.split(";")[0]
                for r in requires if "extra ==" not in r}
    parts = exc.name.split(".")
    for size in range(len(parts), 0, -1):  # opentelemetry.instrumentation.utils -> opentelemetry-instrumentation
        requirement = declared.get("-".join(parts[:size]).replace("_", "-").lower())
        if requirement:
            return (f"cryostorm-run: cannot run: {requirement.split('<')[0].split('>')[0].split('=')[0]}, which it "
                    f"needs, is not installed in {sys.prefix} (installed with --no-deps?): "
                    f"pip install '{requirement}'")
    return None


def _mask_text(text: str) -> str:
    """Remove any configured header value from a message (secrets never printed in clear)."""
    from cryostorm_run.common.shown import header_secrets, mask_values
    from cryostorm_run.config.model import redact_userinfo

    return mask_values(redact_userinfo(text), header_secrets(os.environ))


def write_utf8(text: str) -> None:
    """The variables as the program gets them: UTF-8 bytes, whatever the encoding of stdout (PYTHONIOENCODING=ascii
    or a C locale would refuse 'café'); an environment is bytes, and the shell that reads this passes them on.

    Except on a terminal: there a value's escape or bell character (`OTEL_SERVICE_NAME=$'\\e]0;x\\a'`) would be
    obeyed by the terminal, not shown, so control characters other than line breaks and tabs are shown as
    `\\x1b` and a warning says the exact bytes come through a pipe or a file (what `eval "$(...)"` reads)."""
    if sys.stdout.isatty():
        import re

        shown = re.sub(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", lambda m: f"\\x{ord(m.group()):02x}", text)
        if shown != text:
            warn(["print-env shows control characters as \\xNN on a terminal, where they would act, not show: "
                  "pipe or redirect the output for the exact values"])
            text = shown
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:  # a stream without bytes underneath (a test runner's): as text
        sys.stdout.write(text)
        return
    sys.stdout.flush()
    buffer.write(text.encode("utf-8", "surrogateescape"))
    buffer.flush()
