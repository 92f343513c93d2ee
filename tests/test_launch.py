"""plan_launch is pure: the same settings, argv and environment always give the same plan. And a program that is
another environment's python is told it has no telemetry."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PYTHON, run_launcher

from cryostorm_run import LaunchError, TelemetrySettings, load_settings, plan_launch
from cryostorm_run.launch.plan import hook_dir, resolve_command

BIN = str(Path(sys.executable).parent)


def test_plan_sets_otel_env_and_puts_the_hook_first() -> None:
    plan = plan_launch(TelemetrySettings(), ["python", "-c", "pass"],
                       {"PATH": BIN, "PYTHONPATH": "/user/a:/user/b", "KEEP": "1"})
    assert plan.executable == os.path.join(BIN, "python")
    assert plan.argv == ("python", "-c", "pass")
    assert plan.instrumented
    assert plan.env["PYTHONPATH"] == f"{hook_dir()}:/user/a:/user/b"
    assert (hook_dir() / "sitecustomize.py").is_file()
    assert plan.env["KEEP"] == "1"
    assert plan.env["OTEL_TRACES_EXPORTER"] == "console"
    assert plan.env["_CRYOSTORM_PREFIX"] == sys.prefix


def test_hook_is_not_added_twice_when_nested() -> None:
    env = {"PATH": BIN, "PYTHONPATH": f"/user/a:{hook_dir()}"}
    plan = plan_launch(TelemetrySettings(), ["python"], env)
    assert plan.env["PYTHONPATH"] == f"{hook_dir()}:/user/a"


def test_absorbed_otel_variables_do_not_leak_to_the_child() -> None:
    environ = {"PATH": BIN, "OTEL_EXPORTER_OTLP_HEADERS": "a=b", "OTEL_PYTHON_DJANGO_INSTRUMENT": "false"}
    settings = load_settings({**environ, "CRYOSTORM_OTLP__HEADERS": ""}).settings
    plan = plan_launch(settings, ["python"], environ)
    assert "OTEL_EXPORTER_OTLP_HEADERS" not in plan.env  # the settings say: no headers
    assert plan.env["OTEL_PYTHON_DJANGO_INSTRUMENT"] == "false"  # not ours: passed through


def test_disabled_is_a_plain_exec() -> None:
    environ = {"PATH": BIN, "PYTHONPATH": "/user/a"}
    plan = plan_launch(load_settings({"CRYOSTORM_ENABLED": "false"}).settings, ["python"], environ)
    assert not plan.instrumented
    assert plan.env == environ


def test_report_mode_is_passed_to_the_hook() -> None:
    plan = plan_launch(TelemetrySettings(), ["python"], {"PATH": BIN}, report="quiet")
    assert plan.env["_CRYOSTORM_REPORT"] == "quiet"


def test_command_not_found_is_127() -> None:
    with pytest.raises(LaunchError) as info:
        plan_launch(TelemetrySettings(), ["no-such-command-xyz"], {"PATH": BIN})
    assert info.value.exit_code == 127
    assert str(info.value) == "no-such-command-xyz: command not found (searched PATH)"


def test_not_executable_is_126(tmp_path: Path) -> None:
    script = tmp_path / "tool"
    script.write_text("#!/bin/sh\necho hi\n")
    with pytest.raises(LaunchError) as info:
        resolve_command(str(script), None)
    assert info.value.exit_code == 126
    with pytest.raises(LaunchError) as info:
        resolve_command("tool", str(tmp_path))
    assert info.value.exit_code == 126
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    assert resolve_command("tool", str(tmp_path)) == str(script)


def test_directory_and_missing_path() -> None:
    with pytest.raises(LaunchError) as info:
        resolve_command("/", None)
    assert info.value.exit_code == 126
    with pytest.raises(LaunchError) as info:
        resolve_command("/no/such/file", None)
    assert info.value.exit_code == 127


def test_empty_command_is_a_usage_error() -> None:
    with pytest.raises(LaunchError) as info:
        plan_launch(TelemetrySettings(), [], {"PATH": BIN})
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    ("entry", "agent"),
    [
        ("/venv/site-packages/opentelemetry/instrumentation/auto_instrumentation", "opentelemetry-instrument"),
        ("/venv/lib/python3.11/site-packages/ddtrace/bootstrap", "ddtrace-run"),
        ("/venv/lib/python3.11/site-packages/newrelic/bootstrap/", "newrelic-admin"),
    ],
)
def test_another_agents_bootstrap_means_no_second_instrumentation(entry: str, agent: str) -> None:
    plan = plan_launch(TelemetrySettings(), ["python"], {"PATH": BIN, "PYTHONPATH": f"/user:{entry}"})
    assert not plan.instrumented
    assert plan.env["PYTHONPATH"] == f"/user:{entry}"  # untouched: the other agent stays in charge
    assert "OTEL_TRACES_EXPORTER" not in plan.env
    [warning] = plan.warnings
    assert warning.startswith(f"{agent}'s bootstrap is already on PYTHONPATH")


def test_nested_launcher_warns_and_instruments_once() -> None:
    outer = plan_launch(TelemetrySettings(), ["python"], {"PATH": BIN})
    inner = plan_launch(TelemetrySettings(), ["python"], dict(outer.env))
    assert inner.env["PYTHONPATH"] == str(hook_dir())
    assert inner.warnings and "already running under cryostorm-run" in inner.warnings[0]


@pytest.mark.parametrize(("args", "named"), [
    (["-E", "app.py"], "-E"), (["-IE", "-c", "pass"], "-I -E"), (["-W", "error", "-S", "app.py"], "-S"),
    (["-X", "dev", "-I", "-m", "app"], "-I"), (["app.py", "-E"], None), (["-c", "pass", "-I"], None),
    (["-u", "a"], None),
])
def test_interpreter_options_that_skip_the_hook_are_named(args: list[str], named: str | None) -> None:
    from cryostorm_run.common.interpreter import hook_skipping_flags

    assert hook_skipping_flags("/usr/bin/python3.11", args) == named
    assert hook_skipping_flags("/usr/bin/gunicorn", args) is None  # not an interpreter: its options are its own


def test_python_dash_e_is_warned_before_exec_and_doctor_names_it() -> None:
    result = run_launcher(["--", PYTHON, "-E", "-c", "print('ran')"])
    assert (result.returncode, result.stdout) == (0, "ran\n")
    assert ("cryostorm: warning: " in result.stderr and "-E runs without the site hook" in result.stderr
            and "NO telemetry" in result.stderr), result.stderr
    assert "cryostorm: service=" not in result.stderr  # indeed not instrumented: the hook never ran
    doctor = run_launcher(["doctor", "--", PYTHON, "-I", "app.py"])
    assert doctor.returncode == 1, doctor.stderr
    assert "with -I it never imports the hook" in doctor.stderr


def test_a_directory_says_so_and_a_script_with_a_missing_interpreter_names_it(tmp_path: Path) -> None:
    from conftest import run_launcher

    result = run_launcher(["--quiet", "--", str(tmp_path)])
    assert (result.returncode, result.stderr) == (126, f"cryostorm-run: {tmp_path}: is a directory, not a program\n")
    script = tmp_path / "tool"
    script.write_text("#!/no/such/interpreter -u\nprint(1)\n")
    script.chmod(0o755)
    result = run_launcher(["--quiet", "--", str(script)])
    assert result.returncode == 127, result.stderr  # as a shell says for it
    assert result.stderr == (f"cryostorm-run: {script}: cannot execute: No such file or directory (its #! line "
                             "names /no/such/interpreter, which does not exist)\n")


def test_a_script_without_a_hashbang_runs_with_sh_as_execvp_runs_it(tmp_path: Path) -> None:
    # env, nohup, timeout, tini and shells run it with /bin/sh (execvp's ENOEXEC rule); it was refused, exit 126.
    script = tmp_path / "start.sh"
    script.write_text('echo "ran $# $1"\nexit 5\n')
    script.chmod(0o755)
    expected = subprocess.run(["env", str(script), "a b"], check=False, capture_output=True, text=True)
    result = run_launcher(["--quiet", "--", str(script), "a b"])
    assert (result.returncode, result.stdout, result.stderr) == (expected.returncode, expected.stdout, "") == (
        5, "ran 1 a b\n", "")


def test_a_hashbang_line_with_windows_line_endings_is_named_with_the_fix(tmp_path: Path) -> None:
    script = tmp_path / "start.sh"
    script.write_bytes(b"#!/bin/sh\r\necho hi\r\n")
    script.chmod(0o755)
    result = run_launcher(["--quiet", "--", str(script)])
    assert result.returncode == 127, result.stderr
    assert result.stderr == (f"cryostorm-run: {script}: cannot execute: No such file or directory (its #! line ends "
                             "in a carriage return: the file has Windows line endings; convert it, e.g. dos2unix or "
                             "sed -i 's/\\r$//')\n")


def _other_python() -> str:
    """The base interpreter this venv was made from: another environment's python."""
    other = os.path.realpath(Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}")
    assert sys.base_prefix != sys.prefix and os.access(other, os.X_OK), "the suite runs in a venv"
    return other


def test_a_program_run_by_another_python_is_told_it_has_no_telemetry() -> None:
    """The hook steps aside in another environment's python, and says so to the program the launcher started:
    it would otherwise run with no telemetry and no word."""
    other = _other_python()
    result = run_launcher(["--", other, "-c", "print('ran')"])
    assert (result.returncode, result.stdout) == (0, "ran\n"), result.stderr
    assert (f"cryostorm: NOT instrumented: {other} (prefix {sys.base_prefix}) is not the Python environment "
            f"cryostorm-run is installed in ({sys.prefix}); run that environment's python") in result.stderr


def test_the_same_environment_through_a_symlinked_path_is_instrumented(tmp_path: Path) -> None:
    """`/srv/app/current -> releases/42`: the program's python is this venv's, through another path."""
    link = tmp_path / "current"
    link.symlink_to(sys.prefix, target_is_directory=True)
    result = run_launcher(["--", str(link / "bin" / "python"), "-c", "import sys; print(sys.prefix)"])
    assert (result.returncode, result.stdout) == (0, f"{link}\n"), result.stderr
    assert "NOT instrumented" not in result.stderr and "cryostorm: service=" in result.stderr, result.stderr


@pytest.mark.parametrize("line", [f"#!{PYTHON} -I", "#!/usr/bin/env -S python3 -sE"])
def test_a_script_whose_shebang_skips_the_hook_is_warned_about(tmp_path: Path, line: str) -> None:
    script = tmp_path / "tool.py"
    script.write_text(f"{line}\nprint('ran')\n")
    script.chmod(0o755)
    result = run_launcher(["--", str(script)], env={"PATH": f"{Path(PYTHON).parent}{os.pathsep}{os.environ['PATH']}"})
    assert (result.returncode, result.stdout) == (0, "ran\n"), result.stderr
    flag = line.rsplit(maxsplit=1)[-1].replace("-sE", "-E")
    assert (f"cryostorm: warning: tool.py (its #! line runs {line[2:].replace('/usr/bin/env -S ', '')}): {flag} "
            "runs without the site hook") in result.stderr, result.stderr


def _hooked(prefix: str, python_args: str) -> subprocess.CompletedProcess[str]:
    """The other python started as the launcher starts its program (its pid the launcher's), with the hook."""
    script = (f'export PYTHONPATH={hook_dir()} _CRYOSTORM_PREFIX={prefix} _CRYOSTORM_LAUNCHER_PID=$$; '
              f'exec {_other_python()} {python_args} -c "print(1)"')
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60, check=False)


def test_another_environment_with_its_own_cryostorm_is_told_to_use_its_own_launcher(tmp_path: Path) -> None:
    import venv

    app_venv = tmp_path / "app"  # the program's venv has its own cryostorm-run; this launcher is pipx's, say
    venv.create(app_venv, with_pip=False, symlinks=True)
    (app_venv / "bin" / "cryostorm-run").write_text("#!/bin/sh\n")
    python = app_venv / "bin" / "python"
    result = run_launcher(["--", str(python), "-c", "print(1)"])
    assert (result.returncode, result.stdout) == (0, "1\n"), result.stderr
    assert (f"cryostorm: NOT instrumented: {python} (prefix {app_venv}) is not the Python environment cryostorm-run "
            f"is installed in ({sys.prefix}); run this environment's own launcher, {app_venv}/bin/cryostorm-run\n"
            ) in result.stderr


@pytest.mark.parametrize("flag", ["-s", ""])
def test_the_program_that_cannot_import_cryostorm_is_told_not_left_silent(flag: str) -> None:
    """The launcher's environment, but cryostorm not importable there: pip install --user, then python -s."""
    result = _hooked(sys.base_prefix, flag)
    assert result.stdout == "1\n"
    why = ("; user site-packages are off (-s or PYTHONNOUSERSITE), where pip install --user puts cryostorm-run: "
           "drop that, or install it into the environment") if flag else ""
    assert result.stderr == (f"cryostorm: NOT instrumented: {_other_python()} cannot import cryostorm_run "
                             f"(ModuleNotFoundError: No module named 'cryostorm_run'){why}\n")


def test_the_other_python_line_reads_when_python_knows_no_executable() -> None:
    """`env -i cryostorm-run -- python3`: the launcher finds python3 on the default path, the program has no PATH,
    and Python leaves sys.executable empty. The hook as the launcher leaves it, through bash's `exec -a`."""
    script = (f'export PYTHONPATH={hook_dir()} _CRYOSTORM_PREFIX={sys.prefix} _CRYOSTORM_LAUNCHER_PID=$$; '
              f'unset PATH; exec -a python3 {_other_python()} -c "import sys; print(repr(sys.executable))"')
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert (result.returncode, result.stdout) == (0, "''\n"), result.stderr
    assert result.stderr.startswith(f"cryostorm: NOT instrumented: its python (prefix {sys.base_prefix}) is not"), \
        result.stderr


SHOW_PATH = """
import json, os, subprocess, sys
try:
    import here  # only in the working directory: found through an empty PYTHONPATH entry alone
    found = True
except ImportError:
    found = False
print(json.dumps([found, sys.path, os.environ.get("PYTHONPATH")]), flush=True)
if len(sys.argv) > 1:
    subprocess.run([sys.executable, sys.argv[0]], check=True)
"""


@pytest.mark.parametrize("children", ["all", "none"])
@pytest.mark.parametrize("pythonpath", ["/no/such/lib:", ":/no/such/lib", "/no/a::/no/b", "::", None])
def test_empty_pythonpath_entries_stay_the_current_directory(tmp_path: Path, pythonpath: str | None,
                                                              children: str) -> None:
    """An empty PYTHONPATH entry is the current directory to Python: kept as written after the hook's own entry,
    so the program and its Python children import from there as without cryostorm; with child_processes=none
    the program's children get its PYTHONPATH back exactly (the hook's entry removed, nothing else; unset when it
    was: it was left set and empty)."""
    import json

    from conftest import child_env

    (tmp_path / "cwd").mkdir()
    (tmp_path / "cwd" / "here.py").write_text("")
    (tmp_path / "prog").mkdir()
    (tmp_path / "prog" / "show.py").write_text(SHOW_PATH)
    command = [PYTHON, str(tmp_path / "prog" / "show.py"), "child"]
    env = {"CRYOSTORM_EXPORTER_TYPE": "none", "CRYOSTORM_CHILD_PROCESSES": children}
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    bare = subprocess.run(command, env=child_env(env), cwd=tmp_path / "cwd", capture_output=True, text=True,
                          timeout=60, check=False)
    done = run_launcher(["--quiet", "--", *command], env, cwd=tmp_path / "cwd")
    assert (bare.returncode, bare.stderr) == (0, ""), bare.stderr
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    hook = str(hook_dir())
    expected = [json.loads(line) for line in bare.stdout.splitlines()]  # the program's, then its child's
    assert [found for found, _, _ in expected] == [pythonpath is not None] * 2, bare.stdout
    if children == "all":  # the hook's own entry first, for the children: then the program's, as written
        ours = hook if pythonpath is None else f"{hook}:{pythonpath}"
        expected = [[found, path, ours] for found, path, _ in expected]
    seen = [json.loads(line) for line in done.stdout.splitlines()]
    assert [[found, [p for p in path if p != hook], env] for found, path, env in seen] == expected
