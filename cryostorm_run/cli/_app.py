"""The typer commands: check-config and print-env (reports on stderr, data on stdout)."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from cryostorm_run._version import __version__
from cryostorm_run.cli._common import FLAGS, boundary, load, overrides_from

app = typer.Typer(
    name="cryostorm-run",
    help="Zero-code OpenTelemetry for Python programs: cryostorm-run [OPTIONS] -- COMMAND [ARGS...]",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

EnvFile = Annotated[Optional[Path], typer.Option("--env-file", help="Read settings from a dotenv file.")]  # noqa: UP045
SetOpt = Annotated[list[str], typer.Option("--set", help="KEY=VALUE by dotted path, e.g. tracing.sample_rate=0.5")]
ServiceName = Annotated[Optional[str], typer.Option("--service-name", help=FLAGS["--service-name"][1])]  # noqa: UP045
Exporter = Annotated[Optional[str], typer.Option("--exporter", help=FLAGS["--exporter"][1])]  # noqa: UP045
Endpoint = Annotated[Optional[str], typer.Option("--endpoint", help=FLAGS["--endpoint"][1])]  # noqa: UP045
Debug = Annotated[bool, typer.Option("--debug", help="Show tracebacks of internal errors.")]


def _load(env_file: Path | None, assignments: list[str], service: str | None, exporter: str | None,
          endpoint: str | None) -> Any:
    flags = {"--service-name": service, "--exporter": exporter, "--endpoint": endpoint}
    return load(env_file, overrides_from(flags, assignments))


def _stderr_console() -> Any:
    from rich.console import Console

    # No colour for pipes, containers or NO_COLOR (rich honours NO_COLOR itself).
    return Console(stderr=True, highlight=False, soft_wrap=False)


def flatten(value: Any, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    if isinstance(value, dict) and value and not (prefix and prefix[-1] in ("additional_attributes",)):
        items: list[tuple[tuple[str, ...], Any]] = []
        for key, sub in value.items():
            items += flatten(sub, (*prefix, str(key)))
        return items
    return [(prefix, value)]


def effective_rows(loaded: Any) -> list[dict[str, Any]]:
    """Every effective setting: dotted name, shown value (secrets masked), source."""
    from cryostorm_run._sources import is_secret_path

    data = loaded.settings.model_dump(mode="json")
    rows = []
    for path, raw in flatten(data):
        shown = "****" if is_secret_path(path) and len(path) > 2 else raw
        if isinstance(shown, (list, dict)):
            shown = json.dumps(shown)
        rows.append({"setting": ".".join(path), "value": shown, "source": loaded.origin(path).describe()})
    return rows


@app.command("check-config")
def check_config(
    env_file: EnvFile = None,
    assignments: SetOpt = [],  # noqa: B006 (typer reads the default, never mutates it)
    service_name: ServiceName = None,
    exporter: Exporter = None,
    endpoint: Endpoint = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")] = False,
    debug: Debug = False,
) -> None:
    """Validate the settings and show every effective value and where it came from. Exit 2 if invalid."""

    def run() -> int:
        loaded = _load(env_file, assignments, service_name, exporter, endpoint)
        rows = effective_rows(loaded)
        if as_json:
            sys.stdout.write(json.dumps({"valid": True, "settings": rows}, indent=2) + "\n")
            return 0
        from rich.table import Table

        table = Table(title="cryostorm settings (valid)", title_justify="left")
        for column in ("setting", "value", "source"):
            table.add_column(column)
        for row in rows:
            table.add_row(row["setting"], str(row["value"]), row["source"])
        _stderr_console().print(table)
        return 0

    boundary(run, debug)


@app.command("print-env")
def print_env(
    env_file: EnvFile = None,
    assignments: SetOpt = [],  # noqa: B006
    service_name: ServiceName = None,
    exporter: Exporter = None,
    endpoint: Endpoint = None,
    fmt: Annotated[str, typer.Option("--format", help="shell (safe to eval), dotenv or json")] = "shell",
    show_secrets: Annotated[bool, typer.Option("--show-secrets", help="Print header values in clear.")] = False,
    debug: Debug = False,
) -> None:
    """Print the OTEL_* (and PYTHONPATH) environment the program would get."""

    def run() -> int:
        from cryostorm_run._envmap import env_rows
        from cryostorm_run._loading import ConfigError
        from cryostorm_run._sources import Problem
        from cryostorm_run.launch import _pythonpath, hook_dir

        if fmt not in ("shell", "dotenv", "json"):
            raise ConfigError([Problem("--format", fmt, "unknown format", "allowed: shell, dotenv, json")])
        loaded = _load(env_file, assignments, service_name, exporter, endpoint)
        pairs = [(r.name, "****" if r.secret and not show_secrets else r.value) for r in env_rows(loaded.settings)]
        pairs.append(("PYTHONPATH", _pythonpath(str(hook_dir()), os.environ.get("PYTHONPATH"))))
        if fmt == "json":
            sys.stdout.write(json.dumps(dict(pairs), indent=2) + "\n")
        elif fmt == "dotenv":
            sys.stdout.write("".join(f"{k}={json.dumps(v)}\n" for k, v in pairs))
        else:
            sys.stdout.write("".join(f"export {k}={shlex.quote(v)}\n" for k, v in pairs))
        return 0

    boundary(run, debug)


def version_callback(value: bool) -> None:
    if value:
        sys.stdout.write(f"cryostorm-run {__version__}\n")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=version_callback, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Zero-code OpenTelemetry launcher."""
