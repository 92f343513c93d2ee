"""The command names and shortcut flags, for the `--` path's hand parser and the typer commands alike
(light: the `--` path with a cached plan imports nothing heavier)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cryostorm_run.config.enums import ExporterType

if TYPE_CHECKING:
    from cryostorm_run.config.sources import Path_

# The typer commands, in the order of the help.
COMMANDS = ("check-config", "print-env", "doctor", "bootstrap", "schema")

# Shortcut flags: each is only another spelling of one settings path (see --set for all of them).
FLAGS: dict[str, tuple[Path_, str]] = {
    "--service-name": (("service", "name"), "service.name"),
    "--exporter": (("exporter_type",), f"exporter_type for all signals: {', '.join(ExporterType.choices())}"),
    "--endpoint": (("collector",), "collector URL for all signals, e.g. http://collector:4317"),
}
