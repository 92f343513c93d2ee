"""The OpenTelemetry configuration file (`OTEL_CONFIG_FILE` or `--config-file`): read, substituted, validated.

Declarative configuration, file format 1.x (https://github.com/open-telemetry/opentelemetry-configuration).
This module only reads the file: YAML (JSON is YAML too) parsed with each node's line kept, the spec's
`${VAR}`, `${VAR:-default}` and `$$` substituted in scalar values (never in keys or comments), then checked
against the format's JSON Schema, vendored here as `otel_configuration_schema.json` (Apache-2.0, the copy
shipped by opentelemetry-configuration 0.66b2, file format 1.1). `config.otelmap` turns the result into
cryostorm settings. Every error names the file, the line and the path in the file.

Needs PyYAML and jsonschema, which only a file-configured launch uses: `pip install 'cryostorm-run[config-file]'`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryostorm_run.common.shown import quoted
from cryostorm_run.config.sources import Problem, SourceError

__all__ = ["REQUIREMENT", "SCHEMA_VERSION", "OtelFile", "dotted", "read_otel_file"]

SCHEMA_FILE = Path(__file__).with_name("otel_configuration_schema.json")
SCHEMA_VERSION = (1, 1)  # the file_format of the vendored schema; another 1.x minor is read with a warning
REQUIREMENT = "cryostorm-run[config-file]"
_SUFFIXES = (".yaml", ".yml", ".json")
# $$ (a literal $), a reference ${VAR} / ${VAR:-default} (`env:` prefix allowed), or any other `${`: an error.
_REFERENCE = re.compile(r"\$\$|\$\{(?:env:)?([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}|\$\{")
_STANDALONE = re.compile(r"\A\$\{(?:env:)?[A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\}\Z")

Key = tuple[str | int, ...]


def dotted(path: Key) -> str:
    """`('tracer_provider', 'processors', 0, 'batch')` → `tracer_provider.processors[0].batch`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(the whole file)"


@dataclass(frozen=True)
class OtelFile:
    """The file's data after substitution, each node's line, and the variables it substituted."""

    label: str  # the path as given
    data: Mapping[str, Any]
    lines: Mapping[Key, int] = field(default_factory=dict)
    referenced: frozenset[str] = frozenset()
    warnings: tuple[str, ...] = ()

    def where(self, path: Key) -> str:
        """`otel.yaml:12 tracer_provider.processors[0]` (the line of the nearest node that has one)."""
        for length in range(len(path), -1, -1):
            line = self.lines.get(path[:length])
            if line is not None:
                return f"{self.label}:{line} {dotted(path)}"
        return f"{self.label} {dotted(path)}"


def _fail(name: str, message: str, hint: str = "") -> SourceError:
    return SourceError([Problem(name, None, message, hint)])


def _libraries(label: str) -> tuple[Any, Any]:
    try:
        import jsonschema
        import yaml
    except ImportError as exc:
        raise _fail(label, f"reading an OpenTelemetry configuration file needs PyYAML and jsonschema ({exc.name} "
                    "is not installed)", f"pip install '{REQUIREMENT}'") from None
    return yaml, jsonschema


def _substitute(text: str, environ: Mapping[str, str], used: set[str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        if name is None:
            raise ValueError("an invalid substitution: write ${NAME} or ${NAME:-default} (NAME: letters, digits, "
                             "_), or $$ for a literal $")
        used.add(name)
        value = environ.get(name)
        return value if value is not None else (match.group(3) or "")

    return _REFERENCE.sub(replace, text)


_MOST_VALUES = 100_000  # a real configuration has hundreds; more is an alias bomb (`&a [x, x, ...]`, `[*a, *a]`)


def _walk(node: Any, path: Key, yaml: Any, loader: Any, ctx: dict[str, Any], line: int | None = None) -> int:
    """Substitute in scalar values (keys never), retype a lone unquoted reference, record lines (a
    mapping's value: the line of its key). Returns how many values the node holds with every alias expanded,
    as every reader of the settings will walk them."""
    ctx["lines"].setdefault(path, line or node.start_mark.line + 1)
    if id(node) in ctx["open"]:  # `a: &x [*x]`: settings are a tree, and every reader would recurse for ever
        ctx["errors"].append((path, "an alias refers to a node that contains it (a recursive structure)"))
        return 1
    if id(node) in ctx["seen"]:  # an alias: the anchored node is substituted once
        return int(ctx["sizes"].get(id(node), 1))
    ctx["seen"].add(id(node))
    ctx["open"].add(id(node))
    try:
        size = 1 + _walk_children(node, path, yaml, loader, ctx)
    finally:
        ctx["open"].discard(id(node))
    ctx["sizes"][id(node)] = size
    if size > _MOST_VALUES and not ctx["errors"]:
        ctx["errors"].append((path, f"its aliases (*name) expand it to more than {_MOST_VALUES:,} values; a "
                                    "configuration has a few hundred"))
    return size


def _walk_children(node: Any, path: Key, yaml: Any, loader: Any, ctx: dict[str, Any]) -> int:
    if ctx["errors"] and any(m.startswith("its aliases") for _, m in ctx["errors"]):
        return 0  # already too large: walk no further
    if isinstance(node, yaml.ScalarNode):
        if node.tag == "tag:yaml.org,2002:str" and "$" in node.value:
            raw = node.value
            try:
                node.value = _substitute(raw, ctx["environ"], ctx["used"])
            except ValueError as exc:
                ctx["errors"].append((path, str(exc)))
                return 0
            if node.style is None and _STANDALONE.match(raw):  # `count: ${N}` with N=42 is the int 42 (spec)
                node.tag = loader.resolve(yaml.ScalarNode, node.value, (True, False))
        return 0
    if isinstance(node, yaml.SequenceNode):
        return sum(_walk(item, (*path, index), yaml, loader, ctx) for index, item in enumerate(node.value))
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key, _ in node.value:  # YAML requires unique keys; PyYAML keeps the last, dropping a section unsaid
            if not isinstance(key, yaml.ScalarNode):
                continue
            if key.value in first:
                ctx["errors"].append(((*path, key.value), f"{key.value!r} is given twice (lines "
                                      f"{first[key.value]} and {key.start_mark.line + 1}): the second would "
                                      "replace the first whole; keep one"))
            first.setdefault(key.value, key.start_mark.line + 1)
        return sum(_walk(value, (*path, key.value if isinstance(key, yaml.ScalarNode) else "?"), yaml, loader, ctx,
                         key.start_mark.line + 1) for key, value in node.value)
    return 0


def _parse(text: str, label: str, environ: Mapping[str, str], yaml: Any) -> OtelFile:
    from cryostorm_run.config.yamlcore import core_loader

    loader = core_loader(yaml)(text)
    try:
        root = loader.get_single_node()
        if root is None:
            raise _fail(label, "the file is empty", "start from the example in the README (file_format: \"1.1\")")
        ctx: dict[str, Any] = {"seen": set(), "open": set(), "lines": {}, "used": set(), "errors": [],
                               "environ": environ, "sizes": {}}
        _walk(root, (), yaml, loader, ctx)
        if ctx["errors"]:
            raise SourceError([Problem(f"{label}:{ctx['lines'].get(p, 1)} {dotted(p)}", None, m)
                               for p, m in ctx["errors"]])
        data = loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = " ".join(filter(None, [exc.context, exc.problem]))
        raise _fail(f"{label}{line}", f"invalid YAML: {problem}", "fix the file's syntax") from None
    except yaml.YAMLError as exc:
        raise _fail(label, f"invalid YAML: {exc}", "fix the file's syntax") from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise _fail(f"{label}:1", f"expected a mapping of settings at the top, got {type(data).__name__}")
    return OtelFile(label, data, ctx["lines"], frozenset(ctx["used"]))


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return schema


def _header_values(node: Any, inside: bool = False) -> Iterator[str]:
    """Every value under a `headers` or `headers_list` key, whatever its shape (schema errors quote them)."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from _header_values(value, inside or str(key).startswith("headers"))
    elif isinstance(node, list):
        for item in node:
            yield from _header_values(item, inside)
    elif inside and node not in (None, ""):
        yield str(node)
        for pair in str(node).split(","):  # headers_list: k=v,k2=v2
            yield pair.partition("=")[2].strip()


def _masked(message: str, secrets: list[str]) -> str:
    from cryostorm_run.common.shown import mask_values

    return mask_values(message, (secret for secret in secrets if secret not in ("name", "value")))


def _schema_problems(found: OtelFile, jsonschema: Any) -> list[Problem]:
    validator = jsonschema.Draft202012Validator(_schema())
    secrets = sorted(set(_header_values(found.data)), key=len, reverse=True)
    problems = []
    for error in sorted(validator.iter_errors(found.data), key=lambda e: list(map(str, e.absolute_path))):
        path: Key = tuple(error.absolute_path)
        message = error.message
        if isinstance(error.instance, (str, int, float)) and repr(error.instance) in message:
            shown = _masked(error.instance, secrets) if isinstance(error.instance, str) else error.instance
            message = message.replace(repr(error.instance), quoted(shown))  # shortened when long, escaped
        message = _masked(message, secrets)
        hint = ""
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            allowed = sorted(error.schema.get("properties", {}))
            hint = f"allowed here: {', '.join(allowed)}" if allowed else ""
        if len(message) > 300:  # a whole sub-document quoted: the path and line say where
            message = message[:300] + "…"
        problems.append(Problem(found.where(path), None, f"does not match the configuration schema: {message}", hint))
    return problems


def _version(found: OtelFile) -> OtelFile:
    text = str(found.data.get("file_format", ""))
    match = re.fullmatch(r"(\d+)(?:\.(\d+))?(?:-[0-9A-Za-z.-]+)?", text.strip())
    where = found.where(("file_format",))
    if match is None:
        raise _fail(where, f"file_format {text!r} is not a version", 'write e.g. file_format: "1.1"')
    major, minor = int(match.group(1)), int(match.group(2) or 0)
    if major != SCHEMA_VERSION[0]:
        raise _fail(where, f"file format {text!r} is not supported: cryostorm-run reads file format "
                    f"{SCHEMA_VERSION[0]}.x", f'write file_format: "{SCHEMA_VERSION[0]}.{SCHEMA_VERSION[1]}"')
    if minor > SCHEMA_VERSION[1]:
        warning = (f"{where}: file format {text} is newer than the schema cryostorm-run validates against "
                   f"({SCHEMA_VERSION[0]}.{SCHEMA_VERSION[1]}); a setting it does not know is refused, not ignored")
        return OtelFile(found.label, found.data, found.lines, found.referenced, (warning,))
    return found


def read_otel_file(path: Path, environ: Mapping[str, str]) -> OtelFile:
    """The file at `path`, substituted from `environ` and valid against the schema; raises SourceError
    listing every problem, each with the file's line and the path in the file."""
    label = str(path)
    if path.suffix.lower() == ".toml":
        raise _fail(label, "this is a TOML file: OTEL_CONFIG_FILE and --config-file take an OpenTelemetry "
                    "configuration file (YAML, file_format 1.x)",
                    "cryostorm's own settings file (cryostorm.toml or [tool.cryostorm] in pyproject.toml) is read "
                    "from the current directory without any option")
    if path.suffix.lower() not in _SUFFIXES:
        raise _fail(label, "an OpenTelemetry configuration file ends in .yaml, .yml or .json", "rename it")
    if path.exists() and not path.is_file():  # never opened: a FIFO would block, a device might never end
        raise _fail(label, "is a directory, not a file" if path.is_dir() else "not a regular file (a device or a "
                    "pipe)", "write the configuration to a file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _fail(label, "no such file", "check the path (relative to the current directory)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(label, f"cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    yaml, jsonschema = _libraries(label)
    if path.suffix.lower() == ".json":
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            raise _fail(f"{label}:{exc.lineno}", f"invalid JSON: {exc.msg}", "fix the file's syntax") from None
        # Valid JSON is YAML but for tabs, which JSON allows only as white space: read as YAML for the lines.
        text = text.replace("\t", " ")
    found = _parse(text, label, environ, yaml)
    problems = _schema_problems(found, jsonschema)
    if problems:
        raise SourceError(problems)
    return _version(found)
