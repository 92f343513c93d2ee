"""The `--env-file`: a dotenv file read as python-dotenv reads it, except that a line it cannot read is refused
(python-dotenv skips it with a log message, and the setting on it is lost)."""

from __future__ import annotations

from pathlib import Path

from cryostorm_run.config.sources import Problem, SourceError


def read_env_file(path: Path) -> dict[str, str]:
    """A dotenv file's variables as written (read once); a line python-dotenv cannot read is refused, not
    skipped. `sources.otel_then_cryostorm(values, "env_file", ...)` makes them entries."""
    import io

    from dotenv import dotenv_values

    try:
        found = path.is_file()
    except OSError as exc:  # e.g. a name over 255 characters (ENAMETOOLONG)
        raise SourceError([Problem("--env-file", str(path), f"cannot use this path: {exc.strerror}")]) from None
    if not found:
        raise SourceError([Problem("--env-file", str(path), _not_a_file(path), "check the path")])
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError([Problem("--env-file", str(path), f"cannot read: {exc}")]) from None
    unreadable = unparsable_lines(text)
    if unreadable:  # python-dotenv would skip such a line with a log message: a setting silently lost
        raise SourceError([Problem(f"--env-file {path} line {line}", shown, "not a NAME=value line",
                                   "quote a value with spaces, quotes or # in it (NAME=\"a b\"), or remove "
                                   "the line") for line, shown in unreadable])
    return {k: v or "" for k, v in dotenv_values(stream=io.StringIO(text)).items()}


def _not_a_file(path: Path) -> str:
    """Why `path`, not a regular file, cannot be read as one: missing, a directory, or something else."""
    if path.is_dir():
        return "is a directory, not a file"
    return "not a regular file (a device or a pipe): write the settings to a file" if path.exists() else "no such file"


def unparsable_lines(text: str) -> list[tuple[int, str | None]]:
    """The lines of `text` python-dotenv cannot read, each with what may be shown of it: the name before `=`
    (the value may be a secret), or nothing."""
    import io

    from dotenv.parser import parse_stream

    bad = []
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            name, sep, _ = binding.original.string.strip().partition("=")
            name = name.removeprefix("export ").strip()
            shown = f"{name}=…" if sep and name.isidentifier() else None
            bad.append((binding.original.line, shown))
    return bad
