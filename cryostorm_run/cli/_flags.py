"""The command names and shortcut flags, for the `--` path's hand parser and the typer commands alike
(light: the `--` path with a cached plan imports nothing heavier)."""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: the `--` path keeps typing (and re, enum) out of every start
if TYPE_CHECKING:
    from cryostorm_run.config.sources import Path_

# The typer commands, in the order of the help.
COMMANDS = ("check-config", "print-env", "doctor", "bootstrap", "schema")

# Shortcut flags: each is only another spelling of one settings path (see --set for all of them).
FLAGS: dict[str, tuple[Path_, str]] = {
    "--service-name": (("service", "name"), "service.name"),
    "--exporter": (("exporter_type",), "exporter_type for all signals: {choices}"),
    "--endpoint": (("collector",), "collector URL for all signals, e.g. http://collector:4317"),
}


# An example value of each option that takes one, for the error when it is missing ("--service-name --").
EXAMPLES = {
    "--env-file": "prod.env",
    "--config-file": "otel.yaml",
    "--set": "tracing.sample_rate=0.5",
    "--service-name": "checkout",
    "--exporter": "otlp",
    "--endpoint": "http://collector:4317",
    "--format": "dotenv",
    "--installer": "pip",
    "--path": "/srv/app/.venv/lib/python3.11/site-packages",
    "--probe-timeout": "5",
}


def flag_help(flag: str) -> str:
    """A shortcut flag's help, with the choices filled in (they import the settings' enums)."""
    text = FLAGS[flag][1]
    if "{choices}" in text:
        from cryostorm_run.config.enums import ExporterType

        text = text.format(choices=", ".join(ExporterType.choices()))
    return text
