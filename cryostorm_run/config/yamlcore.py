"""The YAML 1.2 core schema for PyYAML, whose plain scalars otherwise resolve by YAML 1.1's rules.

The configuration data model says YAML files SHOULD be parsed with the v1.2 core schema. By 1.1's rules a
substituted `service.version: ${V}` with V=010 became the integer 8, V=1:30 became 90, V=on became true and
V=2024-01-01 a date the schema then quoted as Python; under the core schema those are 10, and strings. Only
`null`/`~`/empty, `true`/`false` (three spellings each), decimal, `0o` and `0x` integers and floats (with
`.inf`, `.nan`) are typed; the rest is a string. Merge keys (`<<`) stay as PyYAML reads them.
"""

from __future__ import annotations

import functools
import re
from typing import Any

_DIGITS = list("-+0123456789")
_RESOLVERS = (  # in this order: an integer is tried before a float
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", _DIGITS),
    ("tag:yaml.org,2002:float", r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                                r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", [*_DIGITS, "."]),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:merge", r"^<<$", ["<"]),
)


@functools.cache
def core_loader(yaml: Any) -> Any:
    """A `yaml.SafeLoader` subclass resolving plain scalars by the 1.2 core schema (SafeLoader is left as is)."""

    class CoreLoader(yaml.SafeLoader):  # type: ignore[misc]
        yaml_implicit_resolvers: dict[Any, Any] = {}  # its own, filled below (add_* would copy the 1.1 ones)

    for tag, pattern, first in _RESOLVERS:
        CoreLoader.add_implicit_resolver(tag, re.compile(pattern), first)
    CoreLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
    return CoreLoader


def _construct_int(loader: Any, node: Any) -> int:
    text = loader.construct_scalar(node)
    if text.startswith(("0o", "0x")):  # unsigned in the core schema
        return int(text, 0)
    return int(text, 10)  # "010" is ten (YAML 1.1: eight)
