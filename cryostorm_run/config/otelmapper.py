"""The OpenTelemetry configuration file's mapping primitives: where each value came from, refusals with the
line they name (config/otelmap.py walks the file with them)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cryostorm_run.config.otelfile import Key, OtelFile, dotted
from cryostorm_run.config.otelspec import LIMITS, ZERO
from cryostorm_run.config.sources import Entry, Origin, Path_, Problem

__all__ = ["Mapper", "one"]


class Mapper:
    """What the file maps to: settings entries, variables for the program, refusals (each naming its line)."""

    def __init__(self, found: OtelFile) -> None:
        self.found = found
        self.entries: list[Entry] = []
        self.env: dict[str, tuple[str, Origin]] = {}
        self.problems: list[Problem] = []

    def limits(self, owner: str, node: Mapping[str, Any], at: Key) -> None:
        for key, value in node.items():
            if value is not None:
                where = self.found.where((*at, key))
                self.env[LIMITS[owner][key]] = (str(value), Origin("otel_file", dotted((*at, key)),
                                                                    where.split(" ", 1)[0]))

    def put(self, setting: Path_, value: Any, at: Key, note: str = "") -> None:
        name = f"{dotted(at)}{note}" if at else note.strip(" ()")
        where = self.found.where(at).split(" ", 1)[0]
        self.entries.append(Entry(setting, value, Origin("otel_file", name, where)))

    def put_duration(self, setting: Path_, value: Any, at: Key, note: str = "") -> None:
        """A duration in milliseconds; one the schema allows as 0 that cryostorm cannot honour is refused."""
        if value == 0 and at[-1] in ZERO:
            what, hint = ZERO[str(at[-1])]
            self.refuse(at, f"{at[-1]} {what}", hint)
            return
        self.put(setting, value, at, note)

    def refuse(self, at: Key, message: str, hint: str = "remove it from the file") -> None:
        self.problems.append(Problem(self.found.where(at), None, f"not supported by cryostorm-run: {message}", hint))

    def only(self, node: Mapping[str, Any], at: Key, known: set[str], what: str) -> None:
        for key in node:
            if key not in known:
                self.refuse((*at, key), f"{what} has no {key!r} in cryostorm")


def one(node: Mapping[str, Any]) -> tuple[str, Any]:
    ((kind, body),) = node.items()  # the schema holds these to exactly one property
    return kind, body or {}
