"""Settings from a config file in the current directory: `cryostorm.toml`, or `[tool.cryostorm]` in
`pyproject.toml`. The lowest source above the defaults:

    flags > CRYOSTORM_* > OTEL_* > --env-file > config file > defaults

The file holds the settings model's own tree (validated by the same model), e.g.::

    [tool.cryostorm]
    exporter_type = "otlp"
    collector = "http://otel-collector:4317"

    [tool.cryostorm.tracing]
    sample_rate = 0.25

Each value remembers where it came from: ``pyproject.toml [tool.cryostorm] tracing.sample_rate``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from cryostorm_run.config.sources import Entry, Origin, Path_, Problem, SourceError

__all__ = ["CONFIG_FILES", "find_config_file", "read_config_file"]

# Looked up in this order; the first one that holds cryostorm settings is used.
CONFIG_FILES = {"cryostorm.toml": (), "pyproject.toml": ("tool", "cryostorm")}

# Settings whose value is a mapping of the user's own keys: a table there is one value, not a subtree.
_MAPPINGS = frozenset({"headers", "additional_attributes", "additional_exporter_args", "additional_processor_args"})


def _label(path: Path, table: tuple[str, ...]) -> str:
    return f"{path.name} [{'.'.join(table)}]" if table else path.name


def _toml() -> Any:
    import importlib

    for name in ("tomllib", "tomli"):  # tomllib: Python 3.11+; tomli: its backport
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


def _load_toml(path: Path) -> dict[str, Any]:
    toml = _toml()
    if toml is None:
        raise SourceError([Problem(path.name, None, "reading a TOML config file needs Python 3.11+ or tomli",
                                   "pip install tomli")])
    try:
        with path.open("rb") as fh:
            data: dict[str, Any] = toml.load(fh)
    except OSError as exc:
        raise SourceError([Problem(path.name, None, f"cannot read: {exc.strerror}")]) from None
    except toml.TOMLDecodeError as exc:
        bom = path.read_bytes().startswith(b"\xef\xbb\xbf")  # Windows editors write one; TOML refuses it
        raise SourceError([Problem(path.name, None, f"invalid TOML: {exc}" + (
            " (the file starts with a byte-order mark)" if bom else ""),
            "save it as UTF-8 without a byte-order mark" if bom else "fix the file's syntax")]) from None
    except UnicodeDecodeError as exc:  # TOML is UTF-8: a file saved as Latin-1 or cp1252 is not TOML
        line = exc.object[:exc.start].count(b"\n") + 1
        raise SourceError([Problem(path.name, None, f"not UTF-8 text: byte 0x{exc.object[exc.start]:02x} on line "
                                   f"{line}", "save it as UTF-8, the encoding TOML requires")]) from None
    return data


def find_config_file(directory: Path, unread: list[str] | None = None) -> tuple[str, Mapping[str, Any]] | None:
    """(label, settings table) of the config file in `directory`, or None when there is none.

    A `pyproject.toml` without a `[tool.cryostorm]` table is not a config file; having both
    `cryostorm.toml` and such a table is an error (which one would win is not obvious). A `pyproject.toml`
    that cannot be read may or may not hold one: not an error (it is the project's file, often not
    readable by a container's user), but said in `unread`; `[tool] cryostorm` that is not a table is refused.
    """
    found: list[tuple[str, Mapping[str, Any]]] = []
    for name, table in CONFIG_FILES.items():
        path = directory / name
        if not path.is_file():
            continue
        if table:
            try:
                raw = path.read_bytes()
            except OSError as exc:
                if unread is not None:
                    unread.append(f"{path.name} in {directory.resolve()} cannot be read ({exc.strerror}): settings "
                                  f"in its [{'.'.join(table)}] table, if it has one, are not used")
                continue
            # Cheap test first: most projects' pyproject.toml never mention us (a parse costs start-up time).
            if b"cryostorm" not in raw:
                continue
        settings = _table(_load_toml(path), table)
        if settings is None:
            continue
        if not isinstance(settings, Mapping):
            dotted = ".".join(table)
            raise SourceError([Problem(_label(path, table), str(settings), "must be a table of settings, not a value",
                                       f"write [{dotted}] on a line of its own and the settings under it, e.g. "
                                       'collector = "http://otel-collector:4317"')])
        found.append((_label(path, table), settings))
    if len(found) > 1:
        raise SourceError([Problem(" and ".join(label for label, _ in found), None,
                                   "two config files define cryostorm settings", "keep the settings in one of them")])
    return found[0] if found else None


def _table(data: Mapping[str, Any], table: tuple[str, ...]) -> Any:
    """What `table` names in `data` (a table, or whatever else is written there); None when it is absent."""
    node: Any = data
    for key in table:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _leaves(node: Mapping[str, Any], prefix: Path_ = ()) -> Iterator[tuple[Path_, Any]]:
    for key, value in node.items():
        path = (*prefix, str(key).lower())
        if isinstance(value, Mapping) and path[-1] not in _MAPPINGS:
            yield from _leaves(value, path)
        else:
            yield path, value


def read_config_file(directory: Path, unread: list[str] | None = None) -> list[Entry]:
    """Entries from the config file in `directory` (none if there is no such file), each with its
    origin: file, table and dotted key; a `pyproject.toml` that cannot be read is said in `unread`."""
    found = find_config_file(directory, unread)
    if found is None:
        return []
    label, settings = found
    return [Entry(key, value, Origin("config_file", ".".join(key), label)) for key, value in _leaves(settings)]
