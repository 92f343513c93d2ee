"""The typer commands: check-config, print-env, doctor, bootstrap and schema (reports on stderr, data on stdout)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from cryostorm_run._version import __version__
from cryostorm_run.cli._common import EXIT_USAGE, UsageError, boundary, fail, load, missing_value, overrides_from, warn
from cryostorm_run.cli._flags import flag_help
from cryostorm_run.cli._usage import NOTHING, json_on_usage_error

EXIT_PROBE_FAILED = 3  # check-config --probe: an endpoint cannot be reached or refused the export

app = typer.Typer(
    name="cryostorm-run",
    help="Zero-code OpenTelemetry for Python programs: cryostorm-run [OPTIONS] -- COMMAND [ARGS...]",
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help, in the style of `cryostorm-run --help`: no `<bool>` after a flag that takes no value,
    # and `[tool.cryostorm]` in a help text is shown, not read as markup.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

EnvFile = Annotated[Optional[Path], typer.Option(  # noqa: UP045
    "--env-file", metavar="PATH", help="Read settings from a dotenv file: below CRYOSTORM_* and OTEL_* variables, "
    "above cryostorm.toml / [tool.cryostorm] and the defaults.")]
ConfigFile = Annotated[Optional[Path], typer.Option(  # noqa: UP045
    "--config-file", metavar="PATH", help="An OpenTelemetry configuration file (YAML, file_format 1.x; as "
    "OTEL_CONFIG_FILE): it decides the OpenTelemetry settings. cryostorm.toml / [tool.cryostorm] is read "
    "without an option.")]
SetOpt = Annotated[list[str], typer.Option("--set", metavar="KEY=VALUE",
                                           help="KEY=VALUE by dotted path, e.g. tracing.sample_rate=0.5")]
ServiceName = Annotated[Optional[str], typer.Option(  # noqa: UP045
    "--service-name", metavar="VALUE", help=flag_help("--service-name"))]
Exporter = Annotated[Optional[str], typer.Option("--exporter", metavar="VALUE", help=flag_help("--exporter"))]  # noqa: UP045
Endpoint = Annotated[Optional[str], typer.Option("--endpoint", metavar="VALUE", help=flag_help("--endpoint"))]  # noqa: UP045
Debug = Annotated[bool, typer.Option("--debug", help="Show tracebacks of internal errors.")]


def _refuse_missing_values(ctx: typer.Context) -> None:
    """click takes whatever follows an option as its value: `check-config --service-name --json` would name
    the service `--json`, `print-env --env-file -- ...` read a file named `--`. Refused as on the `--` path."""
    command = str(ctx.info_name)
    options = [param for param in ctx.command.get_params(ctx) if param.param_type_name == "option"]
    names = {name for option in options for name in (*option.opts, *option.secondary_opts)}
    problems = []
    for option in options:
        flag = getattr(option, "is_flag", False)
        value = None if flag or option.name is None else ctx.params.get(option.name)
        for item in value if isinstance(value, (list, tuple)) else (value,):
            text = None if item is None else str(item)
            if text is not None and (text == "--" or text.partition("=")[0] in names):
                problems.append(missing_value(option.opts[0], text, command))
    if problems:
        raise UsageError(problems, note=NOTHING[command])


def _load(env_file: Path | None, assignments: list[str], service: str | None, exporter: str | None,
          endpoint: str | None, otel_config: Path | None) -> Any:
    flags = {"--service-name": service, "--exporter": exporter, "--endpoint": endpoint}
    return load(env_file, overrides_from(flags, assignments), otel_config=otel_config)


def _warm_plan_cache(loaded: Any, options: dict[str, Any]) -> None:
    """Valid settings: keep their plan, so `cryostorm-run [the same options] -- CMD` skips validation
    (e.g. `RUN cryostorm-run check-config` in a Dockerfile; see launch/plancache.py)."""
    from cryostorm_run.cli._run import cache_key
    from cryostorm_run.launch import plancache
    from cryostorm_run.launch.plan import prepare_loaded

    directory = plancache.cache_dir(os.environ)
    key = None if directory is None else cache_key(options, os.environ)
    if directory is not None and key is not None:
        plancache.store(directory, key, prepare_loaded(loaded, os.environ))


def _stderr_console() -> Any:
    from rich.console import Console

    # No colour for pipes, containers or NO_COLOR (rich honours NO_COLOR itself). Off a terminal (a CI log, a
    # `docker build` step) nothing wraps lines: rich's 80 columns there would split setting names for nothing.
    # COLUMNS, when set, still decides.
    console = Console(stderr=True, highlight=False, soft_wrap=False)
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        console.width = 160
    return console


@app.command("check-config")
def check_config(
    ctx: typer.Context,
    env_file: EnvFile = None,
    config_file: ConfigFile = None,
    assignments: SetOpt = [],  # noqa: B006 (typer reads the default, never mutates it)
    service_name: ServiceName = None,
    exporter: Exporter = None,
    endpoint: Endpoint = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Treat warnings as errors (exit 2).")] = False,
    probe: Annotated[bool, typer.Option("--probe", help="Connect to each OTLP endpoint; exit 3 if one fails.")] = False,
    probe_timeout: Annotated[float, typer.Option("--probe-timeout", min=0.1, metavar="SECONDS",
                                                 help="Seconds per endpoint.")] = 3.0,
    probe_span: Annotated[bool, typer.Option("--probe-span", help="With --probe: send one test span.")] = False,
    debug: Debug = False,
) -> None:
    """Validate the settings and show every effective value and where it came from. Exit 2 if invalid
    (or, with --strict, if there are warnings), 3 if a --probe fails."""

    def run() -> int:
        from cryostorm_run.config.errors import ConfigError

        try:
            return checked()
        except (ConfigError, UsageError) as exc:
            if as_json:  # still a document on stdout; the same report as without --json on stderr
                from cryostorm_run.cli._usage import write_json

                write_json("check-config", exc.problems)  # as the loader made them: masked, escaped, shortened
            raise

    def checked() -> int:
        from cryostorm_run.cli._rows import effective_rows

        _refuse_missing_values(ctx)
        loaded = _load(env_file, assignments, service_name, exporter, endpoint, config_file)
        _warm_plan_cache(loaded, {"env_file": env_file, "otel_config": config_file, "set": assignments,
                                  "flags": {"--service-name": service_name, "--exporter": exporter,
                                            "--endpoint": endpoint}})
        rows = effective_rows(loaded)
        rows += [{"setting": name, "value": value, "source": origin.describe()}  # an OTel file's limits
                 for name, (value, origin) in sorted(loaded.file_env.items())]
        results = None
        if probe or probe_span:
            from cryostorm_run.diagnose.probe import probe as probe_endpoints

            results = probe_endpoints(loaded.settings, os.environ, timeout=probe_timeout, send_span=probe_span)
        refused = strict and bool(loaded.warnings)  # --strict: a warning makes the settings invalid (exit 2)
        if as_json:
            data: dict[str, Any] = {"valid": not refused, "settings": rows,
                                    "warnings": [{"code": w.code, "message": w.message} for w in loaded.warnings]}
            if results is not None:
                data["probe"] = [{"signals": list(r.signals), "protocol": r.target.protocol.value, "url": r.url,
                                  "ok": r.ok, "kind": r.kind, "message": r.message, "hint": r.hint} for r in results]
            sys.stdout.write(json.dumps(data, indent=2) + "\n")
        else:
            _print_table(rows)
        warn(loaded.warnings)
        if results is not None and not as_json:
            from cryostorm_run.common.shown import clean
            from cryostorm_run.diagnose.probe import render_results

            text = render_results(results, probe_timeout)
            sys.stderr.write(clean(text, len(text)))
        if refused:
            count = len(loaded.warnings)
            sys.stderr.write(f"cryostorm-run: --strict: {count} warning{'s' if count != 1 else ''} "
                             "treated as errors\n")
            return EXIT_USAGE
        if results is not None and not all(r.ok for r in results):
            return EXIT_PROBE_FAILED
        return 0

    boundary(run, debug)


def _print_table(rows: list[dict[str, Any]]) -> None:
    from rich.table import Table
    from rich.text import Text

    from cryostorm_run.cli._rows import shown_value
    from cryostorm_run.common.shown import printable

    table = Table(title="cryostorm settings (valid)", title_justify="left")
    for column in ("setting", "value", "source"):
        table.add_column(column, overflow="fold")  # a long name or value wraps, never cut
    whole = 100_000  # printable() escapes control characters; nothing is shortened
    for row in rows:
        # Text, not markup: a value holding "[/x]" is shown, never parsed; control characters escaped.
        table.add_row(Text(row["setting"]), Text(printable(shown_value(row["value"]), whole)),
                      Text(printable(row["source"], whole)))
    _stderr_console().print(table)


@app.command("print-env")
def print_env(
    ctx: typer.Context,
    env_file: EnvFile = None,
    config_file: ConfigFile = None,
    assignments: SetOpt = [],  # noqa: B006
    service_name: ServiceName = None,
    exporter: Exporter = None,
    endpoint: Endpoint = None,
    fmt: Annotated[str, typer.Option("--format", metavar="FORMAT", help="shell (safe to eval), dotenv (for a shell's "
                                     "`set -a; . FILE` and python-dotenv), json, docker (a docker run --env-file) "
                                     "or k8s (a container's env: list); docker and k8s leave out PYTHONPATH"
                                     )] = "shell",
    show_secrets: Annotated[bool, typer.Option("--show-secrets",
                                               help="Print header values and URL credentials in clear.")] = False,
    debug: Debug = False,
) -> None:
    """Print the OTEL_* (and PYTHONPATH) environment the program would get, and where each value came from."""

    def run() -> int:
        from cryostorm_run.config.inventory import MAPPED, READ, rule_for
        from cryostorm_run.config.sources import Problem
        from cryostorm_run.launch.envformat import (
            FORMATS,
            OTHER_FORMATS,
            EnvLine,
            Unrepresentable,
            render_env,
            row_source,
        )
        from cryostorm_run.launch.envmap import env_rows, program_defaults, programs_own
        from cryostorm_run.launch.plan import _pythonpath, hook_dir

        _refuse_missing_values(ctx)
        if fmt not in FORMATS:
            raise UsageError([Problem("--format", fmt, "unknown format", f"allowed: {', '.join(FORMATS)}")],
                             note=NOTHING["print-env"])
        loaded = _load(env_file, assignments, service_name, exporter, endpoint, config_file)
        warn(loaded.warnings)  # as `cryostorm-run -- CMD` would; stdout stays the document alone
        from cryostorm_run.common.shown import mask_url

        def shown(secret: bool, value: str) -> str:
            if show_secrets:
                return value
            return "****" if secret else mask_url(value)  # user:password@ and ?token= of a URL too

        theirs = programs_own({**os.environ, **{n: v for n, (v, _) in loaded.file_env.items()}}, loaded.settings)
        rows = [r for r in env_rows(loaded.settings) if r.name not in theirs]
        lines = [EnvLine(r.name, shown(r.secret, r.value), row_source(r.setting, loaded.origins)) for r in rows]
        masked = sorted(line.name for line, r in zip(lines, rows, strict=True) if line.value != r.value)
        if masked:  # `eval "$(cryostorm-run print-env)"` would export **** as the value: an export that fails auth
            warn([f"print-env shows {', '.join(masked)} masked (****): to use the output as the program's "
                  "environment, add --show-secrets"])
        lines += [EnvLine(name, value, f"from {origin.describe()}")  # an OpenTelemetry configuration file's limits
                  for name, (value, origin) in sorted(loaded.file_env.items())]
        written = {line.name for line in lines}
        lines += [EnvLine(name, shown(False, value), f"yours ({name}), kept")  # passed on as they are
                  for name, value in sorted(os.environ.items()) if name.startswith("OTEL_") and value
                  and name not in MAPPED | READ | written and name not in loaded.dropped_env
                  and getattr(rule_for(name), "kind", None) == "passed"]  # not a misspelt one (warned, ignored)
        lines += [EnvLine(name, value, why) for name, (value, why) in program_defaults(os.environ).items()]
        lines.append(EnvLine("PYTHONPATH", _pythonpath(str(hook_dir()), os.environ.get("PYTHONPATH")),
                             "cryostorm's hook directory, then your PYTHONPATH"))
        try:
            text = render_env(lines, fmt)
        except Unrepresentable as exc:
            line = exc.line
            raise UsageError([Problem(f"{line.name} ({line.source})", line.value, exc.reason,
                                      f"use --format {OTHER_FORMATS[fmt]}")],
                             f"--format {fmt} cannot hold this value", note=NOTHING["print-env"],
                             configuration=True) from None
        from cryostorm_run.cli._common import write_utf8

        write_utf8(text)
        return 0

    boundary(run, debug)



@app.command("doctor", context_settings={"allow_interspersed_args": False})
def doctor(
    ctx: typer.Context,
    command: Annotated[Optional[list[str]], typer.Argument(  # noqa: UP045
        metavar="-- COMMAND", hidden=True)] = None,  # in the docstring: typer would add "<list[str]>"
    paths: Annotated[list[Path], typer.Option("--path", metavar="DIR", help="Also look for packages in this directory "
                                              "(e.g. another site-packages), before sys.path.")] = [],  # noqa: B006
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")] = False,
    debug: Debug = False,
) -> None:
    """Check the settings, installed instrumentations, OpenTelemetry package versions and the command's
    interpreter. Exit 0 when healthy, 1 when there are problems. With -- COMMAND [ARGS...]: also check that
    the interpreter running COMMAND can run the hook."""

    def run() -> int:
        try:
            return checked()
        except UsageError as exc:  # --json: still a document on stdout
            json_on_usage_error("doctor", as_json, exc)
            raise

    def checked() -> int:
        from cryostorm_run.config.sources import Problem
        from cryostorm_run.diagnose.doctor import diagnose, render_report

        _refuse_missing_values(ctx)
        missing = [Problem("--path", str(path), "no such directory" if not path.exists() else "not a directory",
                           "a directory to look for packages in, e.g. another environment's site-packages")
                   for path in paths if not path.is_dir()]
        if missing:
            raise UsageError(missing, note=NOTHING["doctor"])
        search = [*map(str, paths), *sys.path] if paths else None
        report = diagnose(command or None, environ=os.environ, paths=search, configuration=True)
        if as_json:
            findings = [{"section": f.section, "status": f.status, "message": f.message, "fix": f.fix}
                        for f in report.findings]
            sys.stdout.write(json.dumps({"healthy": not report.problems, "findings": findings}, indent=2) + "\n")
        else:
            from cryostorm_run.common.shown import clean

            text = render_report(report)
            sys.stderr.write(clean(text, len(text)))
        return 1 if report.problems else 0

    boundary(run, debug)


@app.command("bootstrap", context_settings={"allow_interspersed_args": False})
def bootstrap(
    ctx: typer.Context,
    command: Annotated[Optional[list[str]], typer.Argument(  # noqa: UP045
        metavar="-- COMMAND", hidden=True)] = None,  # in the docstring: typer would add "<list[str]>"
    install: Annotated[bool, typer.Option("--install", help="Install them, in one call of the environment's "
                                          "installer, then check that every requirement is met.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="With --install: show the install command, "
                                          "install nothing.")] = False,
    keep_line: Annotated[bool, typer.Option("--keep-line", help="Never move the installed OpenTelemetry line: "
                                            "if it lacks a needed instrumentation, exit 1 with the proposal.")] = False,
    installer: Annotated[str, typer.Option("--installer", metavar="INSTALLER", help="auto (uv in a uv-managed "
                                           "environment, pip otherwise), pip or uv.")] = "auto",
    debug: Debug = False,
) -> None:
    """The instrumentation packages this environment needs, on its OpenTelemetry line: one requirement a
    line on stdout (usable as -r), or installed with --install. With -- COMMAND [ARGS...]: those of the
    environment of the interpreter COMMAND runs. Exit 0 nothing to do or done, 1 the install failed, 2 usage
    error."""

    def run() -> int:
        import shutil

        from cryostorm_run.config.sources import Problem
        from cryostorm_run.diagnose import installer as installers
        from cryostorm_run.diagnose.bootstrap import BootstrapError, command_environment, this_environment
        from cryostorm_run.diagnose.bootstrap import bootstrap as run_bootstrap

        _refuse_missing_values(ctx)
        if installer not in installers.INSTALLERS:
            raise UsageError([Problem("--installer", installer, "unknown installer",
                                      f"allowed: {', '.join(installers.INSTALLERS)}")], note=NOTHING["bootstrap"])
        if dry_run and not install:
            raise UsageError([Problem("--dry-run", None, "shows the install command, so it needs --install",
                                      "cryostorm-run bootstrap --install --dry-run")], note=NOTHING["bootstrap"])

        def say(line: str) -> None:
            from cryostorm_run.common.shown import clean

            text = f"cryostorm: {line}\n"
            sys.stderr.write(clean(text, len(text)))
            sys.stderr.flush()

        try:
            env = command_environment(command, os.environ) if command else this_environment()
            chosen = installers.choose(installer, env.python, env.prefix, env.has_pip,
                                       lambda name: shutil.which(name, path=os.environ.get("PATH")))
            if isinstance(chosen, str):
                raise BootstrapError(f"no installer for {env.prefix}: {chosen}", 1)
            return run_bootstrap(env, chosen, install=install, dry_run=dry_run, keep_line=keep_line, say=say,
                                 out=sys.stdout.write)
        except BootstrapError as exc:
            fail(f"cryostorm: {exc}", exc.exit_code)

    boundary(run, debug)


@app.command("schema")
def schema(debug: Debug = False) -> None:
    """Print the JSON Schema of the settings (for cryostorm.toml / [tool.cryostorm] in pyproject.toml)."""

    def run() -> int:
        from cryostorm_run.config.schema import settings_schema

        sys.stdout.write(json.dumps(settings_schema(), indent=2) + "\n")
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
