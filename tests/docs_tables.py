"""Generate the README's reference tables from the code, so they cannot drift.

    python tests/docs_tables.py --write    # rewrite the tables in README.md
The test suite (tests/test_docs.py) fails when README.md differs from what this prints.
"""

from __future__ import annotations

import enum
import re
import sys
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from cryostorm_run import TelemetrySettings
from cryostorm_run.config.inventory import ALREADY_SO, FAMILIES, INVENTORY, Rule
from cryostorm_run.config.loading import load_settings
from cryostorm_run.config.sources import OTEL_TABLE
from cryostorm_run.launch.envmap import env_rows

README = Path(__file__).resolve().parent.parent / "README.md"
MARKERS = {
    "settings": ("<!-- settings-table:start -->", "<!-- settings-table:end -->"),
    "otel-out": ("<!-- otel-out-table:start -->", "<!-- otel-out-table:end -->"),
    "otel-in": ("<!-- otel-in-table:start -->", "<!-- otel-in-table:end -->"),
    "otel-inventory": ("<!-- otel-inventory-table:start -->", "<!-- otel-inventory-table:end -->"),
}


def _type_text(annotation: Any) -> str:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    target = annotation
    if typing.get_origin(annotation) is typing.Annotated:
        target = args[0]
    elif args and typing.get_origin(annotation) in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        target = args[0]
        if typing.get_origin(target) is typing.Annotated:
            target = typing.get_args(target)[0]
    if isinstance(target, type) and issubclass(target, enum.Enum):
        return " \\| ".join(str(m.value) for m in target)
    item = typing.get_args(target)[0] if typing.get_origin(target) is list else None
    if isinstance(item, type) and issubclass(item, enum.Enum):  # a list of names
        return "a,b or JSON of: " + ", ".join(str(m.value) for m in item if m.value != "none")  # an empty list is none
    if typing.get_origin(target) is typing.Literal:
        return " \\| ".join(str(a) for a in typing.get_args(target))
    name = getattr(target, "__name__", str(target))
    return {"str": "string", "int": "integer", "float": "number", "bool": "true \\| false", "dict": "k=v,… or JSON",
            "list": "a,b or JSON", "Path": "file path"}.get(name, name)


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value: Any = field.default_factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):
            return ""
    else:
        value = field.default
    if value is None:
        return "(inherit)" if "Overrides" in (field.description or "") else "unset"
    if isinstance(value, enum.Enum):
        return f"`{value.value}`"
    if isinstance(value, list):
        return "`" + ",".join(str(getattr(v, "value", v)) for v in value) + "`" if value else "none"
    if isinstance(value, dict):
        return "`{}`"
    return f"`{str(value).lower() if isinstance(value, bool) else value}`"


def _bounds(field: FieldInfo) -> str:
    parts = []
    for meta in field.metadata:
        for attr, sym in (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤")):
            if getattr(meta, attr, None) is not None:
                parts.append(f"{sym} {getattr(meta, attr)}")
    return ", ".join(parts)


def settings_rows(model: type[BaseModel] = TelemetrySettings, prefix: str = "") -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        nested = [a for a in (field.annotation, *typing.get_args(field.annotation))
                  if isinstance(a, type) and issubclass(a, BaseModel)]
        env = "CRYOSTORM_" + (prefix + name).upper().replace(".", "__")
        if nested and nested[0].__name__ != "CollectorEndpoint":
            rows += settings_rows(nested[0], f"{prefix}{name}.")
            continue
        kind = "URL, or `__HOST`/`__PORT`/`__PROTOCOL`/`__PATH`" if nested else _type_text(field.annotation)
        bounds = _bounds(field)
        desc = (field.description or "").replace("|", "\\|")
        default = _default(field) if not nested else ("`http://localhost:4317`" if not prefix else "(inherit)")
        values = f"{kind} ({bounds})" if bounds else kind
        rows.append(f"| `{prefix}{name}` | `{env}` | {values} | {default} | {desc} |")
    return rows


def settings_table() -> str:
    head = "| Setting | Environment variable | Values | Default | Notes |\n|---|---|---|---|---|"
    return head + "\n" + "\n".join(settings_rows())


def otel_out_table() -> str:
    example = load_settings({
        "CRYOSTORM_EXPORTER_TYPE": "otlp", "CRYOSTORM_OTLP__HEADERS": "authorization=Bearer%20x",
        "CRYOSTORM_OTLP__INSECURE": "true", "CRYOSTORM_TRACING__SAMPLING_STRATEGY": "parentbased_traceidratio",
        "CRYOSTORM_OTLP__COMPRESSION": "gzip", "CRYOSTORM_OTLP__TIMEOUT_MILLIS": "5000",  # unset: not written
        "CRYOSTORM_SCHEMA_URL": "https://opentelemetry.io/schemas/1.26.0",
    }).settings
    seen: dict[str, tuple[str, str, str]] = {}
    for row in env_rows(example):
        generic = re.sub(r"^(OTEL_EXPORTER_OTLP_|OTEL_|_CRYOSTORM_)(TRACES|METRICS|LOGS)_(?!SAMPLER)", r"\1{SIGNAL}_",
                         row.name)
        if row.setting == "excluded_paths":
            generic = "OTEL_PYTHON_{SERVER}_EXCLUDED_URLS"  # one per server instrumentation (envmap.SERVERS)
        setting = re.sub(r"\b(tracing|metrics|logging)\.", "{signal}.", row.setting) if "{SIGNAL}" in generic \
            else row.setting
        shown = "`****` (secret)" if row.secret else "`" + row.value.replace("|", "\\|") + "`"
        seen.setdefault(generic, (setting, _unit(generic), shown))
    lines = ["| Variable written for the program | From setting(s) | Unit | Example value |", "|---|---|---|---|"]
    lines += [f"| `{name}` | {setting} | {unit} | {value} |" for name, (setting, unit, value) in seen.items()]
    return "\n".join(lines)


def _unit(name: str) -> str:
    if name.endswith("_TIMEOUT") and name.startswith("OTEL_EXPORTER_OTLP"):
        return "seconds (Python SDK)"
    if name.startswith(("OTEL_BSP_SCHEDULE", "OTEL_BSP_EXPORT", "OTEL_BLRP_SCHEDULE", "OTEL_BLRP_EXPORT",
                        "OTEL_METRIC_", "_CRYOSTORM_SHUTDOWN")):
        return "milliseconds"
    return ""


def otel_in_table() -> str:
    lines = ["| Standard variable read as a source | Setting |", "|---|---|"]
    for name, convert in OTEL_TABLE.items():
        sample = {"OTEL_SDK_DISABLED": "true", "OTEL_RESOURCE_ATTRIBUTES": "service.name=a,x=y",
                  "OTEL_PROPAGATORS": "tracecontext"}.get(name, "1" if name.endswith("_TIMEOUT") else "otlp")
        paths = sorted({".".join(p) for p, _ in convert(sample)})
        lines.append(f"| `{name}` | {', '.join(f'`{p}`' for p in paths)} |")
    return "\n".join(lines)


def inventory_table() -> str:
    def row(name: str, rule: Rule) -> str:
        if rule.kind == "mapped":
            what = f"`{rule.setting}` → " + ", ".join(f"`{w}`" for w in rule.written_as)
            what += f" ({rule.reason})" if rule.reason else ""
        else:
            what = rule.reason
            accepted = ALREADY_SO.get(name)
            if accepted:
                shown = " or ".join(sorted(accepted))
                what = f"accepted as {shown} (cryostorm does that anyway); other values: " + what
        what = what.replace("|", "\\|")
        return f"| `{name}` | {rule.kind} | {rule.source} | {what} |"

    order = {"read": 0, "mapped": 1, "passed": 2, "refused": 3}
    rows = [row(n, r) for n, r in sorted(INVENTORY.items(), key=lambda item: (order[item[1].kind], item[0]))]
    rows += [row(shown, rule) for shown, _, rule in FAMILIES]
    head = "| Variable | Rule | Defined by | Setting → written for the program, or reason |\n|---|---|---|---|"
    return head + "\n" + "\n".join(rows)


def generated() -> dict[str, str]:
    return {"settings": settings_table(), "otel-out": otel_out_table(), "otel-in": otel_in_table(),
            "otel-inventory": inventory_table()}


def render(text: str) -> str:
    for key, body in generated().items():
        start, end = MARKERS[key]
        before, _, rest = text.partition(start)
        _, _, after = rest.partition(end)
        text = f"{before}{start}\n{body}\n{end}{after}"
    return text


if __name__ == "__main__":
    current = README.read_text()
    if "--write" in sys.argv:
        README.write_text(render(current))
    else:
        sys.stdout.write(render(current))
