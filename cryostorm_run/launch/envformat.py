"""`print-env` output formats: each value written for its consumer, with where it came from.

Pure functions over (name, value, source) triples; the CLI masks secrets before calling them.
`docker` and `k8s` leave out PYTHONPATH: it is a path on this machine, meaningless in an image
(run the program under `cryostorm-run` there, which sets it).

Example:
    >>> print(render_env([EnvLine("OTEL_SERVICE_NAME", "it's", "from CRYOSTORM_SERVICE__NAME")], "shell"), end="")
    # from CRYOSTORM_SERVICE__NAME
    export OTEL_SERVICE_NAME='it'"'"'s'
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from cryostorm_run.config.sources import DEFAULT, Origin, Path_, origin_of

__all__ = ["FORMATS", "EnvLine", "render_env", "row_source"]


@dataclass(frozen=True)
class EnvLine:
    name: str
    value: str  # already masked when secret
    source: str  # "from CRYOSTORM_SERVICE__NAME", "default", ...


def row_source(settings: str, origins: Mapping[Path_, Origin]) -> str:
    """Where the value of a row built from `settings` ("a.b, c") came from, in the user's words.

    Every input that was set is named, the effective one first (rows list their settings in
    precedence order); a group set piece by piece (`CRYOSTORM_COLLECTOR__PORT`) counts as set.
    """
    names: list[str] = []
    for dotted in settings.split(","):
        path = tuple(dotted.strip().split("."))
        origin = origin_of(path, origins)
        found = [origin] if origin is not DEFAULT else [o for p, o in origins.items() if p[: len(path)] == path]
        names += [o.describe() for o in found if o.describe() not in names]
    return f"from {', '.join(names)}" if names else "default"


def _shell(lines: Sequence[EnvLine]) -> str:
    return "".join(f"# {line.source}\nexport {line.name}={shlex.quote(line.value)}\n" for line in lines)


def _dotenv(lines: Sequence[EnvLine]) -> str:
    return "".join(f"# {line.source}\n{line.name}={json.dumps(line.value)}\n" for line in lines)


def _json(lines: Sequence[EnvLine]) -> str:
    return json.dumps({line.name: line.value for line in lines}, indent=2) + "\n"


def _in_image(lines: Sequence[EnvLine]) -> list[EnvLine]:
    return [line for line in lines if line.name != "PYTHONPATH"]


def _docker(lines: Sequence[EnvLine]) -> str:
    # `docker run` flags, one a line, continued with a backslash: paste them into the command.
    flags = [f"-e {shlex.quote(f'{line.name}={line.value}')}" for line in _in_image(lines)]
    return " \\\n".join(flags) + "\n"


def _k8s(lines: Sequence[EnvLine]) -> str:
    # A container's `env:` list. JSON strings are valid YAML double-quoted scalars, so every value
    # stays a string ("true", "512") and nothing needs escaping by hand.
    out = ["# env: of a container spec (PYTHONPATH left out: run the program under cryostorm-run in the image)"]
    for line in _in_image(lines):
        out.append(f"- name: {line.name}")
        out.append(f"  value: {json.dumps(line.value)}  # {line.source}")
    return "\n".join(out) + "\n"


FORMATS: dict[str, Callable[[Sequence[EnvLine]], str]] = {
    "shell": _shell,
    "dotenv": _dotenv,
    "json": _json,
    "docker": _docker,
    "k8s": _k8s,
}


def render_env(lines: Sequence[EnvLine], fmt: str) -> str:
    """`lines` in format `fmt` (a key of FORMATS)."""
    return FORMATS[fmt](lines)
