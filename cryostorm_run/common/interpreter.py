"""Which interpreter options keep a Python process from running cryostorm's hook: one rule for the
launcher's warning before exec, `doctor`, and the hook's warning about a child it starts (stdlib only).

Example:
    >>> hook_skipping_flags("/usr/bin/python3", ["-I", "app.py"])
    '-I'
    >>> hook_skipping_flags("/usr/bin/gunicorn", ["-I"]) is None  # not an interpreter: its own options
    True
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # not typing's: the hook keeps typing out of every process
if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["hook_skipping_flags", "is_interpreter_name", "shebang"]


def is_interpreter_name(executable: str) -> bool:
    """Does the file name say "a Python interpreter" (python, python3.11, pypy3)?"""
    return os.path.basename(executable).startswith(("python", "pypy"))


# Interpreter options that keep a Python program from importing the hook's sitecustomize.
_SKIPPING = {"E": "ignores PYTHONPATH", "I": "isolated mode", "S": "no site module"}


def hook_skipping_flags(executable: str, args: Sequence[str]) -> str | None:
    """`-E`/`-I`/`-S` (alone or combined, e.g. `-IE`) among a Python interpreter's own options (before
    the script, `-c` or `-m`): what the warning should name, or None."""
    if not is_interpreter_name(executable):
        return None
    found: list[str] = []
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if not arg.startswith("-") or arg in ("-", "--"):
            break  # the script (or stdin): its own arguments follow
        if arg.startswith("--"):
            continue  # --version, --help and the like
        for index, letter in enumerate(arg[1:]):
            if letter in _SKIPPING and f"-{letter}" not in found:
                found.append(f"-{letter}")
            if letter in "cm":  # the program follows
                return " ".join(found) or None
            if letter in "WX":  # an option value: the rest of this argument, or the next one
                if index == len(arg) - 2 and rest:
                    rest.pop(0)
                break
    return " ".join(found) or None


def shebang(path: str) -> list[str] | None:
    """What a script's `#!` line runs: [interpreter, *its arguments], split as Linux splits it (everything after
    the interpreter is one argument) and as `env -S` does; None for a file without one (or unreadable).

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile("w", suffix=".py") as f:
    ...     _ = f.write("#!/usr/bin/env -S python3 -E -u\\nprint(1)\\n"); f.flush(); shebang(f.name)
    ['python3', '-E', '-u']
    """
    try:
        with open(path, "rb") as script:
            first = script.readline(512)
    except OSError:
        return None
    parts = first[2:].decode("utf-8", "replace").strip().split(None, 1) if first.startswith(b"#!") else []
    if not parts:
        return None
    if os.path.basename(parts[0]) != "env":
        return parts
    if len(parts) == 1:
        return None
    words = parts[1].split() if parts[1].startswith("-S") else [parts[1]]  # without -S: one program name
    if words[0] == "-S":
        words.pop(0)
    elif words[0].startswith("-S"):
        words[0] = words[0][2:]
    while words and (words[0].startswith("-") or "=" in words[0]):  # env's own options and NAME=VALUE
        option = words.pop(0)
        if option in ("-u", "--unset", "-C", "--chdir") and words:
            words.pop(0)
    return words or None
