"""check-config's table shows what the README documents, and every help speaks one style (issue 15)."""

from __future__ import annotations

import json
import re

import pytest
from conftest import ROOT, run_launcher

from cryostorm_run.config.enums import ExporterType

LONG = "svc-" + "x" * 150 + "-end"


def table(env: dict[str, str], columns: int = 80) -> str:
    result = run_launcher(["check-config"], {**env, "COLUMNS": str(columns)})
    assert result.returncode == 0, result.stderr
    return result.stderr


def cells(text: str) -> dict[str, tuple[str, str]]:
    """setting -> (value, source) of a table wide enough for one line a row."""
    rows = [[p.strip() for p in line.strip("│").split("│")] for line in text.splitlines() if line.startswith("│")]
    return {setting: (value, source) for setting, value, source in rows}


def column(text: str, index: int) -> str:
    """One column's text, its lines joined: a value wrapped over several lines reads whole again."""
    return "".join(line.strip("│").split("│")[index].strip() for line in text.splitlines() if line.startswith("│"))


def test_documented_names_and_values() -> None:
    text = table({"CRYOSTORM_OTLP__PROTOCOL": "http/protobuf", "CRYOSTORM_COLLECTOR__HOST": "c.example"}, 200)
    rows = cells(text)
    documented = set(re.findall(r"^\| `([a-z_.]+)` \| `CRYOSTORM_", (ROOT / "README.md").read_text(), re.M))
    assert set(rows) <= documented
    assert not [name for name in rows if name.startswith("collector.") or ".collector." in name]
    # one URL, with the port its transport (http/protobuf) uses, and who set it
    assert rows["collector"] == ("http://c.example:4318", "CRYOSTORM_COLLECTOR__HOST")
    assert rows["otlp.insecure"][0] == "unset"
    assert rows["tracing.collector"][0] == "unset"
    assert rows["enabled"][0] == "true"
    assert rows["excluded_paths"][0] == "/health,/metrics,/favicon.ico"
    for python_literal in ("None", "True", "False"):
        assert not re.search(rf"│ {python_literal}\b", text), python_literal


def test_pairs_are_shown_as_the_variable_writes_them_not_ambiguously() -> None:
    # k2's value holds a comma and k3's an equals sign: shown plain, they read as another key.
    rows = cells(table({"OTEL_RESOURCE_ATTRIBUTES": "k2=c%2Cd,k3=x=y,k4=50%25"}, 200))
    assert rows["service.additional_attributes"][0] == "k2=c%2Cd,k3=x%3Dy,k4=50%25"


def test_long_values_wrap_instead_of_being_cut() -> None:
    text = table({"CRYOSTORM_SERVICE__NAME": LONG}, 60)
    assert "…" not in text
    assert LONG in column(text, 1)
    assert "tracing.export_config.schedule_delay_millis" in column(text, 0)
    assert max(map(len, text.splitlines())) <= 60


def test_credentials_of_a_collector_url_stay_masked() -> None:
    rows = cells(table({"CRYOSTORM_COLLECTOR": "https://user:pa55word@c.example/otlp"}, 200))
    assert rows["collector"][0] == "https://****:****@c.example:4317/otlp"


def test_json_uses_the_same_names() -> None:
    result = run_launcher(["check-config", "--json"], {"CRYOSTORM_METRICS__COLLECTOR": "http://m.example:9"})
    rows = {r["setting"]: r for r in json.loads(result.stdout)["settings"]}
    assert rows["metrics.collector"] == {"setting": "metrics.collector", "value": "http://m.example:9",
                                         "source": "CRYOSTORM_METRICS__COLLECTOR"}
    assert rows["tracing.collector"]["value"] is None  # JSON keeps its own null
    assert "collector.host" not in rows


def test_no_arguments_print_the_one_help() -> None:
    bare, asked = run_launcher([]), run_launcher(["--help"])
    assert (bare.returncode, asked.returncode) == (2, 0)
    assert bare.stderr == asked.stdout
    assert bare.stdout == ""


@pytest.mark.parametrize("command", ["check-config", "print-env", "doctor", "schema"])
def test_usage_names_every_command_and_subcommand_help_is_plain(command: str) -> None:
    usage = run_launcher(["--help"]).stdout.splitlines()[1]
    assert command in usage
    sub = run_launcher([command, "--help"])
    assert sub.returncode == 0
    assert "╭" not in sub.stdout
    assert "<" not in sub.stdout  # no "<bool>" after a flag, no "<list[str]>": values named as in --help


def test_exporter_help_lists_every_exporter() -> None:
    for text in (run_launcher(["--help"]).stdout, run_launcher(["check-config", "--help"]).stdout):
        help_ = " ".join(text.split("--exporter", 1)[1].split("--", 1)[0].split())  # its help, unwrapped
        assert all(f" {e.value}" in help_ for e in ExporterType), help_


def test_off_a_terminal_without_columns_setting_names_are_never_split() -> None:
    """A CI log or a `docker build` step: no terminal, no COLUMNS. rich's 80 columns there split names such as
    tracing.export_config.schedule_delay_millis over two lines; the table is drawn wide enough instead."""
    result = run_launcher(["check-config"], {"COLUMNS": ""})
    assert result.returncode == 0, result.stderr
    names = [line.strip("│").split("│")[0].strip() for line in result.stderr.splitlines() if line.startswith("│")]
    assert "tracing.export_config.schedule_delay_millis" in names and "" not in names, names
