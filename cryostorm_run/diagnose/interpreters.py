"""The interpreter a command runs (itself, or its `#!` line) and a probe run in it: for doctor and bootstrap."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["no_user_site", "python_of", "run_probe"]

_PYTHON_NAME = re.compile(r"^(python|pypy)[0-9.]*$")


def python_of(path: str, search_path: str | None) -> tuple[list[str], str] | None:
    """The interpreter command that runs `path` (itself, or its `#!` line with its options), and how it was found."""
    from cryostorm_run.common.interpreter import shebang
    from cryostorm_run.launch.plan import resolve_command

    if _PYTHON_NAME.match(os.path.basename(path)):
        return [path], "a Python interpreter"
    words = shebang(path)
    if not words or not _PYTHON_NAME.match(os.path.basename(words[0])):
        return None
    if os.path.basename(words[0]) == words[0]:  # `#!/usr/bin/env python3`: found on PATH
        words[0] = resolve_command(words[0], search_path)
    return words, f"a script whose #! line runs {' '.join(words)}"


def no_user_site(args: Sequence[str]) -> list[str]:
    """["-s"] when the interpreter's own leading options hold it (`-s`, `-sB`): user site-packages off."""
    for arg in args:
        if not arg.startswith("-") or arg.startswith("--") or arg == "-" or any(c in arg for c in "cmWX"):
            return []
        if "s" in arg:
            return ["-s"]
    return []


def run_probe(interpreter: Sequence[str], code: str, environ: Mapping[str, str]) -> dict[str, Any] | None:
    """Run `code` in `interpreter` (its JSON object on the last stdout line), or None if it cannot be run."""
    env = {k: v for k, v in environ.items() if k != "PYTHONPATH" or v}
    try:
        done = subprocess.run([*interpreter, "-c", code], capture_output=True, text=True, timeout=20, env=env,
                              check=False)
        facts = json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return None
    return facts if isinstance(facts, dict) else None
