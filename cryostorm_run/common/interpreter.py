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

__all__ = ["hook_skipping_flags", "is_interpreter_name"]


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
