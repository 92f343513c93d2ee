"""A small reader for the standard entry points of installed distributions.

`importlib.metadata` costs ~40 ms to import and scan on these machines (email, zipfile, csv and
a full metadata walk), paid by every instrumented process. The hook only needs three groups,
so it reads `*.dist-info/entry_points.txt` directly, in `sys.path` order, first distribution
wins (as `importlib.metadata` does). The `Distribution` object for the dependency check is
created only when an instrumentation is activated.
"""

from __future__ import annotations

import importlib
import os
import sys

TYPE_CHECKING = False  # not typing's: the hook keeps typing out of every process
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any


class EntryPoint:
    """Duck-compatible with `importlib.metadata.EntryPoint` for what the hook and distros use."""

    def __init__(self, name: str, value: str, group: str, dist_path: str) -> None:
        self.name = name
        self.value = value
        self.group = group
        self._dist_path = dist_path
        self._dist: Any = None

    def load(self) -> Any:
        module_name, _, attr = self.value.partition(":")
        obj: Any = importlib.import_module(module_name.strip())
        for part in attr.strip().split(".") if attr.strip() else []:
            obj = getattr(obj, part)
        return obj

    @property
    def dist(self) -> Any:
        if self._dist is None:
            from importlib.metadata import PathDistribution
            from pathlib import Path

            self._dist = PathDistribution(Path(self._dist_path))
        return self._dist

    def __repr__(self) -> str:
        return f"EntryPoint(name={self.name!r}, value={self.value!r}, group={self.group!r})"


def _normalize(name: str) -> str:
    return name.split("-", 1)[0].lower().replace(".", "_")


def _parse(text: str, groups: set[str]) -> Iterable[tuple[str, str, str]]:
    group = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            group = line[1:-1].strip()
            continue
        if group in groups and "=" in line:
            name, _, value = line.partition("=")
            yield group, name.strip(), value.strip()


def entry_points(groups: Iterable[str], path: Iterable[str] | None = None) -> dict[str, list[EntryPoint]]:
    """Entry points of `groups` from every distribution on `path` (default `sys.path`)."""
    wanted = set(groups)
    found: dict[str, list[EntryPoint]] = {g: [] for g in wanted}
    seen_dists: set[str] = set()
    for entry in sys.path if path is None else path:
        directory = entry or "."
        try:
            names = sorted(n for n in os.listdir(directory) if n.endswith((".dist-info", ".egg-info")))
        except OSError:
            continue  # a zip file or a missing directory: nothing of ours lives there
        for name in names:
            dist = _normalize(name)
            if dist in seen_dists:
                continue
            seen_dists.add(dist)
            dist_path = os.path.join(directory, name)
            try:
                with open(os.path.join(dist_path, "entry_points.txt"), encoding="utf-8") as fh:
                    text = fh.read()
            except OSError:
                continue
            for group, ep_name, value in _parse(text, wanted):
                found[group].append(EntryPoint(ep_name, value, group, dist_path))
    return found


def step_aside(group: str, run: Any) -> None:
    """`run(loaded)` with the first other entry point of `group` (what its loader would have taken without
    cryostorm's); none: nothing, as that loader does without one."""
    for entry_point in entry_points((group,))[group]:
        if entry_point.name != "cryostorm":
            run(entry_point.load())
            return
