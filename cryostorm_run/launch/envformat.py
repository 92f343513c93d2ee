"""`print-env` output formats: each value written for its consumer, with where it came from.

Pure functions over (name, value, source) triples; the CLI masks secrets before calling them.
`docker` and `k8s` leave out PYTHONPATH: it is a path on this machine, meaningless in an image
(run the program under `cryostorm-run` there, which sets it).

Every value reads back exactly through its consumer: `shell` through `eval` in sh/bash, `dotenv`
through both `set -a; . file` in bash and python-dotenv, `docker` through `docker run --env-file`
(which takes the rest of the line literally), `k8s` through a YAML 1.1 or 1.2 parser, `json` through
JSON. A value a format cannot hold (a line break in a docker env-file; in a dotenv file, what a
shell and python-dotenv cannot both read back) raises `Unrepresentable`, never a wrong file.
Comments are made one line (control characters escaped), so a source cannot break out of them.

Example:
    >>> print(render_env([EnvLine("OTEL_SERVICE_NAME", "it's", "from CRYOSTORM_SERVICE__NAME")], "shell"), end="")
    # from CRYOSTORM_SERVICE__NAME
    export OTEL_SERVICE_NAME='it'"'"'s'
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from cryostorm_run.common.shown import printable
from cryostorm_run.config.sources import DEFAULT, Origin, Path_, origin_of

__all__ = ["FORMATS", "EnvLine", "Unrepresentable", "render_env", "row_source"]

OTHER_FORMATS = {"dotenv": "shell, json or k8s", "docker": "k8s, json, shell or dotenv"}


class Unrepresentable(ValueError):
    """`line`'s value cannot be written in `fmt` so that its consumer reads it back unchanged."""

    def __init__(self, fmt: str, line: EnvLine, reason: str) -> None:
        super().__init__(f"{line.name}: {reason}")
        self.fmt, self.line, self.reason = fmt, line, reason


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


def _comment(line: EnvLine) -> str:
    return printable(line.source, 500)


def _shell(lines: Sequence[EnvLine]) -> str:
    return "".join(f"# {_comment(line)}\nexport {line.name}={shlex.quote(line.value)}\n" for line in lines)


def _dotenv_value(line: EnvLine) -> str:
    """`line.value` quoted so that bash (`set -a; . file`) and python-dotenv both read it back unchanged.

    Single quotes: bash takes everything literally, python-dotenv too except `\\\\` and `\\'`.
    Double quotes: both undo `\\\\` and `\\"` alike, but bash expands `$` and backquotes there.
    python-dotenv expands `${...}` in either, and reads a carriage return as a line break.
    """
    value = line.value
    if "\r" in value:
        raise Unrepresentable("dotenv", line, "contains a carriage return, which python-dotenv reads as a line break")
    if "${" in value:
        raise Unrepresentable("dotenv", line, "contains ${, which dotenv readers expand as a variable")
    if "'" not in value and "\\\\" not in value and not value.endswith("\\"):
        return f"'{value}'"
    if "$" not in value and "`" not in value:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise Unrepresentable("dotenv", line, "contains $ or ` (which a shell expands in double quotes) and also "
                          "' or \\ (which single quotes cannot hold for both a shell and python-dotenv)")


def _dotenv(lines: Sequence[EnvLine]) -> str:
    return "".join(f"# {_comment(line)}\n{line.name}={_dotenv_value(line)}\n" for line in lines)


def _json(lines: Sequence[EnvLine]) -> str:
    return json.dumps({line.name: line.value for line in lines}, indent=2) + "\n"


def _in_image(lines: Sequence[EnvLine]) -> list[EnvLine]:
    return [line for line in lines if line.name != "PYTHONPATH"]


def _docker(lines: Sequence[EnvLine]) -> str:
    # A file for `docker run --env-file`: NAME=VALUE, the value taken literally
    # to the end of the line, no quotes, no escapes; so a value cannot hold a line break at all.
    out = []
    for line in _in_image(lines):
        if "\n" in line.value or "\r" in line.value:
            raise Unrepresentable("docker", line, "contains a line break, which a docker --env-file cannot hold")
        out.append(f"# {_comment(line)}\n{line.name}={line.value}\n")
    return "".join(out)


# YAML (1.1 and 1.2) double-quoted scalar: printable characters as they are, everything else escaped.
# Left raw: printable ASCII and the non-ASCII characters both versions call printable and not a line break.
_YAML_RAW = re.compile(r"[\x20-\x21\x23-\x5b\x5d-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd"
                       r"\U00010000-\U0010ffff]+")


def _yaml_string(value: str) -> str:
    out = []
    position = 0
    while position < len(value):
        raw = _YAML_RAW.match(value, position)
        if raw:
            out.append(raw.group(0))
            position = raw.end()
            continue
        code = ord(value[position])
        out.append({0x22: '\\"', 0x5C: "\\\\"}.get(code) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"))
        position += 1
    return '"' + "".join(out) + '"'


def _k8s(lines: Sequence[EnvLine]) -> str:
    # A container's `env:` list; every value a double-quoted string, so "true" and "512" stay strings.
    out = ["# env: of a container spec (PYTHONPATH left out: run the program under cryostorm-run in the image)"]
    for line in _in_image(lines):
        out.append(f"- name: {line.name}")
        out.append(f"  value: {_yaml_string(line.value)}  # {_comment(line)}")
    return "\n".join(out) + "\n"


FORMATS: dict[str, Callable[[Sequence[EnvLine]], str]] = {
    "shell": _shell,
    "dotenv": _dotenv,
    "json": _json,
    "docker": _docker,
    "k8s": _k8s,
}


def render_env(lines: Sequence[EnvLine], fmt: str) -> str:
    """`lines` in format `fmt` (a key of FORMATS); `Unrepresentable` when a value cannot be written in it."""
    return FORMATS[fmt](lines)
