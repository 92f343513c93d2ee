"""The launcher's plan cache (launch/plancache.py): a hit gives exactly what the full validation
gives, any input that can change the plan misses, and nothing about the cache can break a launch
or change an error.

Each launch runs the real `cryostorm-run` under `-X importtime`: a launch that imported pydantic
validated (a miss), one that did not used the cache (a hit).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
from conftest import CRYOSTORM_RUN, PYTHON, child_env, tls_files

from cryostorm_run.config.loading import Override, load_settings
from cryostorm_run.config.sources import NOT_SETTINGS
from cryostorm_run.launch import plancache
from cryostorm_run.launch.plan import Prepared, prepare, prepare_loaded

DUMP = "import json, os, sys; sys.stdout.write(json.dumps(dict(os.environ)))"
# Valid, with an OTLP header (a secret), a warning (unknown OTEL_ name) and an env file.
BASE = {"CRYOSTORM_EXPORTER_TYPE": "otlp", "CRYOSTORM_COLLECTOR": "http://127.0.0.1:4317",
        "CRYOSTORM_OTLP__HEADERS": "authorization=Bearer-CANARY-7f3a9", "OTEL_TRACES_SAMPLR": "x"}


class Launch:
    def __init__(self, result: subprocess.CompletedProcess[str]) -> None:
        lines = result.stderr.splitlines()
        imported = {line.rsplit("|", 1)[1].strip() for line in lines if line.startswith("import time:")}
        self.code = result.returncode
        self.hit = "pydantic" not in imported
        self.imported = imported
        self.stderr = "\n".join(line for line in lines if not line.startswith("import time:"))
        self.env: dict[str, str] = json.loads(result.stdout) if self.code == 0 and result.stdout else {}
        self.env.pop("_CRYOSTORM_LAUNCHER_PID", None)  # the launcher's PID: differs each run
        self.env.pop("_CRYOSTORM_STDERR", None)  # which stderr the launcher had (a pipe of its own each run)
        self.env.pop("CRYOSTORM_PLAN_CACHE", None)  # where the test put the cache (passed on as given)


def launch(cache: Path | str, extra: Mapping[str, str] | None = None, args: tuple[str, ...] = (),
           cwd: Path | None = None, command: tuple[str, ...] = (PYTHON, "-c", DUMP),
           base: Mapping[str, str] = BASE) -> Launch:
    env = child_env({**base, "CRYOSTORM_PLAN_CACHE": str(cache), **(extra or {})})
    result = subprocess.run([PYTHON, "-X", "importtime", CRYOSTORM_RUN, "--quiet", *args, "--", *command],
                            env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    return Launch(result)


def entries(cache: Path) -> list[Path]:
    return sorted(cache.glob("*.plan")) if cache.is_dir() else []


def test_a_hit_gives_the_program_exactly_what_a_miss_gives(tmp_path: Path) -> None:
    """Break checked: plancache.store keeping all but the last of `put` -> the hit's environment lacks it."""
    env_file = tmp_path / "settings.env"
    env_file.write_text("CRYOSTORM_SERVICE__NAME=from-env-file\nOTEL_BSP_MAX_QUEUE_SIZE=4096\n")
    args = ("--env-file", str(env_file), "--set", "tracing.sample_rate=0.5")
    cache = tmp_path / "cache"
    uncached = launch("off", args=args)
    miss = launch(cache, args=args)
    hit = launch(cache, args=args)
    assert (uncached.code, miss.code, hit.code) == (0, 0, 0), miss.stderr
    assert (uncached.hit, miss.hit, hit.hit) == (False, False, True)
    assert len(entries(cache)) == 1
    assert hit.env == miss.env == uncached.env
    assert hit.env["OTEL_SERVICE_NAME"] == "from-env-file"
    assert "OTEL_TRACES_SAMPLR" in hit.stderr  # the settings' warnings are printed on a hit too
    assert hit.stderr == miss.stderr == uncached.stderr


def test_a_hit_imports_no_pydantic_nor_the_cli_stack(tmp_path: Path) -> None:
    """Break checked: `from cryostorm_run.config.sources import Problem` at the top of cli/_run.py ->
    dataclasses (and the inventory) on every start: fails."""
    launch(tmp_path)
    hit = launch(tmp_path)
    assert hit.code == 0 and hit.hit
    heavy = sorted(m for m in hit.imported for f in ("pydantic", "pydantic_core", "pydantic_settings", "typer",
                                                     "rich", "click", "dotenv", "dataclasses", "importlib.metadata")
                   if m == f or m.startswith(f + "."))
    assert heavy == []


# What a hit must not import beyond bare Python (cost on this machine, 2026-12-01, with the modules' .pyc):
# typing with re, enum and functools ~8 ms; hashlib's OpenSSL bindings ~3 ms (hmac imports them too);
# contextlib ~1.5 ms. With them the launcher took +17 ms over bare python, without them +4.4 ms.
NOT_ON_A_HIT = ("typing", "re", "enum", "functools", "contextlib", "hashlib", "_hashlib", "hmac")


def test_a_hit_imports_no_typing_nor_hashlib(tmp_path: Path) -> None:
    """Break checked: `from typing import TYPE_CHECKING` back in cli/_flags.py, `import hashlib` back in
    launch/plancache.py: each fails."""
    bare = subprocess.run([PYTHON, "-X", "importtime", "-c", "pass"], env=child_env({}), capture_output=True,
                          text=True, check=True)
    by_python = {line.rsplit("|", 1)[1].strip() for line in bare.stderr.splitlines() if line.startswith("import time:")}
    quiet = {**{k: v for k, v in BASE.items() if k != "OTEL_TRACES_SAMPLR"}, "CRYOSTORM_SERVICE__NAME": "svc"}
    # (no warning: printing one imports `re`)
    launch(tmp_path, base=quiet)
    hit = launch(tmp_path, base=quiet)
    assert hit.code == 0 and hit.hit and hit.stderr == ""
    assert sorted((hit.imported - by_python) & set(NOT_ON_A_HIT)) == []


def test_without_the_standard_librarys_private_hash_modules_hashlib_reads_the_same_entries(tmp_path: Path) -> None:
    """plancache takes BLAKE2b and SHAKE256 from `_blake2`/`_sha3` when present, else from hashlib: an entry
    written by either is read by the other (same functions, same bytes). Break checked: `_sha3`'s
    shake_128 taken as shake_256 -> the cross reads miss."""
    blocked = "import sys; sys.modules['_sha3'] = None; "  # (hashlib's own blake2b is `_blake2`'s)
    script = """
import hashlib, sys
from cryostorm_run.launch import plancache
from cryostorm_run.launch.plan import Prepared
fallback = plancache.shake_256 is hashlib.shake_256
key = b"inputs"
if sys.argv[1] == "store":
    plancache.store(sys.argv[2], key, Prepared(True, ("OTEL_A",), (("OTEL_B", "secret"),), warnings=("w",)))
    print(fallback)
else:
    print(fallback, plancache.lookup(sys.argv[2], key))
"""
    def run(python_prefix: str, *args: str) -> str:
        result = subprocess.run([PYTHON, "-c", python_prefix + script, *args], env=child_env({}),
                                capture_output=True, text=True, check=True)
        return result.stdout.strip()

    expected = ("Prepared(enabled=True, drop=('OTEL_A',), put=(('OTEL_B', 'secret'),), file_drop=(), file_put=(), "
                "warnings=('w',), files=(), off='')")
    fast, slow = tmp_path / "fast", tmp_path / "slow"
    assert run("", "store", str(fast)) == "False"  # the private modules are used where present
    assert run(blocked, "store", str(slow)) == "True"
    assert run(blocked, "lookup", str(fast)) == f"True {expected}"
    assert run("", "lookup", str(slow)) == f"False {expected}"
    assert [p.read_bytes() for p in entries(fast)] == [p.read_bytes() for p in entries(slow)]


def test_the_plans_records_are_what_typing_namedtuple_makes() -> None:
    """launch/plan.py declares LaunchPlan and Prepared as typing.NamedTuple for the type checker and builds
    them without typing at run time: compared with the real ones (the module's source run with
    TYPE_CHECKING true). Break checked: defaults dropped from the stand-in -> fails."""
    import types

    from cryostorm_run.launch import plan

    source = Path(plan.__file__).read_text(encoding="utf-8")
    assert "TYPE_CHECKING = False" in source
    real = types.ModuleType("plan_real")
    exec(compile(source.replace("TYPE_CHECKING = False", "TYPE_CHECKING = True", 1), "plan_real", "exec"),
         real.__dict__)
    for name, args in (("LaunchPlan", ("python3", ("python3",), (("A", "1"),), True)),
                       ("Prepared", (True, ("OTEL_A",), (("OTEL_B", "b"),)))):
        ours, theirs = getattr(plan, name), getattr(real, name)
        assert ours is not theirs and "NamedTuple" not in str(type(ours).__mro__)
        assert ours._fields == theirs._fields
        assert ours._field_defaults == theirs._field_defaults
        assert ours.__doc__ == theirs.__doc__ and ours.__qualname__ == theirs.__qualname__
        made, real_made = ours(*args), theirs(*args)
        assert repr(made) == repr(real_made) and tuple(made) == tuple(real_made) and made == real_made
        assert hash(made) == hash(real_made) and made._asdict() == real_made._asdict()
        assert repr(made._replace(**{ours._fields[0]: False})) == repr(real_made._replace(**{ours._fields[0]: False}))
        for bad in ((), (*args, *range(10))):
            with pytest.raises(TypeError) as ours_error:
                ours(*bad)
            with pytest.raises(TypeError) as theirs_error:
                theirs(*bad)
            assert str(ours_error.value) == str(theirs_error.value)


def _otel_file(directory: Path, text: str) -> Path:
    path = directory / "otel.yaml"
    path.write_text(text)
    return path


OTEL_YAML = """\
file_format: "1.0"
resource:
  attributes:
    - name: service.name
      value: ${SVC_FROM_FILE}
tracer_provider:
  processors:
    - batch:
        exporter:
          otlp_grpc:
            endpoint: http://127.0.0.1:4317
"""


@pytest.mark.parametrize("change", ["cryostorm variable", "otel variable", "grpc variable", "env file",
                                    "config file", "otel config file", "variable the otel file reads",
                                    "variable the env file reads", "installed packages", "option"])
def test_every_input_that_can_change_the_plan_misses(tmp_path: Path, change: str) -> None:
    """Break checked, one at a time in plancache.material: the env list, `_read(env_file)`, the
    config files, the OpenTelemetry file's text, `_references` (of either file), sys.path mtimes, the
    options -> the changed launch hits with the stale plan (the assertions on its environment fail)."""
    cache, work, extra_path = tmp_path / "cache", tmp_path / "work", tmp_path / "extra"
    work.mkdir()
    extra_path.mkdir()
    env_file = work / "settings.env"
    env_file.write_text("CRYOSTORM_SERVICE__VERSION=1.0\n" if change != "variable the env file reads"
                        else "CRYOSTORM_SERVICE__VERSION=${VER_FROM_ENV}\n")  # python-dotenv expands it
    (work / "cryostorm.toml").write_text('[service]\nname = "toml-a"\n')
    extra = {"PYTHONPATH": str(extra_path), "SVC_FROM_FILE": "svc-a", "VER_FROM_ENV": "1.0"}
    args: tuple[str, ...] = ("--env-file", str(env_file))
    if change in ("otel config file", "variable the otel file reads"):
        args += ("--config-file", str(_otel_file(work, OTEL_YAML)))
    first = launch(cache, extra, args, cwd=work)
    again = launch(cache, extra, args, cwd=work)
    assert first.code == 0, first.stderr
    assert (first.hit, again.hit) == (False, True)
    assert launch(cache, {**extra, "HOSTNAME": "another-container"}, args, cwd=work).hit  # unrelated: still a hit
    look = {"cryostorm variable": ("OTEL_SERVICE_NAME", "changed"), "otel variable": ("OTEL_SERVICE_NAME", "changed"),
            "grpc variable": ("GRPC_VERBOSITY", None), "env file": ("OTEL_RESOURCE_ATTRIBUTES", "service.version=2.0"),
            "config file": ("OTEL_SERVICE_NAME", "toml-b"),
            "otel config file": ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "4999"),
            "variable the otel file reads": ("OTEL_SERVICE_NAME", "svc-b"), "installed packages": (None, None),
            "variable the env file reads": ("OTEL_RESOURCE_ATTRIBUTES", "service.version=2.0"),
            "option": ("OTEL_SERVICE_NAME", "from-flag")}
    if change == "cryostorm variable":
        extra["CRYOSTORM_SERVICE__NAME"] = "changed"
    elif change == "otel variable":
        extra["OTEL_SERVICE_NAME"] = "changed"
    elif change == "grpc variable":
        extra["GRPC_TRACE"] = "api"  # the program keeps gRPC's own verbosity when someone debugs gRPC
    elif change == "env file":
        env_file.write_text("CRYOSTORM_SERVICE__VERSION=2.0\n")
    elif change == "config file":
        (work / "cryostorm.toml").write_text('[service]\nname = "toml-b"\n')
    elif change == "otel config file":
        _otel_file(work, OTEL_YAML.replace("127.0.0.1:4317", "127.0.0.1:4999"))
    elif change == "variable the otel file reads":
        extra["SVC_FROM_FILE"] = "svc-b"
    elif change == "variable the env file reads":
        extra["VER_FROM_ENV"] = "2.0"
    elif change == "installed packages":
        (extra_path / "newly_installed.py").write_text("")  # a directory on sys.path changed
    else:
        args += ("--service-name", "from-flag")
    changed = launch(cache, extra, args, cwd=work)
    assert changed.code == 0, changed.stderr
    assert not changed.hit
    name, value = look[change]
    if name is not None:
        shown = changed.env.get(name)
        assert shown is None if value is None else value in (shown or ""), (name, shown)
    assert launch(cache, extra, args, cwd=work).hit  # and the new plan is kept


def test_a_corrupt_or_foreign_entry_is_ignored(tmp_path: Path) -> None:
    """Break checked: the tag check in plancache.lookup removed and `_stream` made independent of the
    inputs -> the foreign entry (another configuration's plan) is used: the program gets svc-a."""
    cache = tmp_path / "cache"
    a = launch(cache, {"CRYOSTORM_SERVICE__NAME": "svc-a"})
    (entry_a,) = entries(cache)
    b = launch(cache, {"CRYOSTORM_SERVICE__NAME": "svc-b"})
    (entry_b,) = [e for e in entries(cache) if e != entry_a]
    assert (a.env["OTEL_SERVICE_NAME"], b.env["OTEL_SERVICE_NAME"]) == ("svc-a", "svc-b")
    entry_b.write_bytes(entry_a.read_bytes())  # foreign: a sound entry, for other inputs
    foreign = launch(cache, {"CRYOSTORM_SERVICE__NAME": "svc-b"})
    assert foreign.code == 0 and not foreign.hit
    assert foreign.env == b.env
    blob = entry_a.read_bytes()
    for corrupt in (b"", b"garbage", blob[:-7], blob[:-1] + bytes([blob[-1] ^ 1]), blob[:40]):
        entry_a.write_bytes(corrupt)
        result = launch(cache, {"CRYOSTORM_SERVICE__NAME": "svc-a"})
        assert result.code == 0 and not result.hit, result.stderr
        assert result.env == a.env and result.stderr == a.stderr


def test_every_flipped_bit_of_an_entry_is_refused(tmp_path: Path) -> None:
    """Break checked: the tag check in plancache.lookup removed -> flips inside a value decode to
    another plan (the stream cipher alone does not notice them)."""
    prepared = Prepared(True, ("OTEL_A",), (("OTEL_B", "secret-value"),), (), (), ("a warning",), ())
    plancache.store(str(tmp_path), b"inputs", prepared)
    assert plancache.lookup(str(tmp_path), b"inputs") == prepared
    assert plancache.lookup(str(tmp_path), b"other inputs") is None
    (entry,) = entries(tmp_path)
    blob = entry.read_bytes()
    for index in range(len(blob)):
        entry.write_bytes(blob[:index] + bytes([blob[index] ^ 1]) + blob[index + 1:])
        assert plancache.lookup(str(tmp_path), b"inputs") is None, index
    entry.write_bytes(blob)
    assert plancache.lookup(str(tmp_path), b"inputs") == prepared


@pytest.mark.parametrize("where", ["under a file", "read-only", "not a directory"])
def test_an_unusable_cache_directory_is_silently_no_cache(tmp_path: Path, where: str) -> None:
    """Break checked: `except OSError` in plancache.store narrowed to FileNotFoundError -> a traceback."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    cache = {"under a file": blocker / "cache", "read-only": Path("/proc/cryostorm-plan-cache"),
             "not a directory": blocker}[where]
    plain = launch("off")
    for _ in range(2):
        result = launch(cache)
        assert result.code == 0 and not result.hit
        assert result.env == plain.env and result.stderr == plain.stderr  # the settings' warnings, nothing more
    assert blocker.read_text() == ""


def test_the_cache_directory_is_private_and_holds_no_secret_in_clear(tmp_path: Path) -> None:
    """Break checked: `_xor(plain, ...)` replaced by `plain` in plancache.store -> the canary is found."""
    cache = tmp_path / "cache"
    assert launch(cache).code == 0
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    (entry,) = entries(cache)
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    assert b"CANARY" not in entry.read_bytes() and b"OTEL_" not in entry.read_bytes()
    assert launch(cache).hit


def test_a_bad_configuration_is_refused_alike_with_or_without_a_cache(tmp_path: Path) -> None:
    """Break checked: plancache.lookup without the `files` check -> the deleted certificate is not
    noticed on a hit (exit 0 instead of 2)."""
    cache = tmp_path / "cache"
    certificate = tls_files(tmp_path, ["ca"])["ca"]
    extra = {"CRYOSTORM_OTLP__CERTIFICATE_FILE": str(certificate)}
    assert launch(cache, extra).code == 0
    assert launch(cache, extra).hit
    stored = entries(cache)
    for bad in ({"CRYOSTORM_TRACING__SAMPLE_RATE": "2"}, {"OTEL_TRACES_SAMPLER": "sometimes"}):
        uncached, refused = launch("off", {**extra, **bad}), launch(cache, {**extra, **bad})
        again = launch(cache, {**extra, **bad})
        assert uncached.code == refused.code == again.code == 2
        assert uncached.stderr == refused.stderr == again.stderr
        assert "nothing was started" in refused.stderr
    assert entries(cache) == stored  # an invalid configuration is never stored
    certificate.unlink()  # valid when cached, invalid now: the real path says so
    gone_uncached, gone = launch("off", extra), launch(cache, extra)
    assert gone.code == gone_uncached.code == 2
    assert gone.stderr == gone_uncached.stderr and "no such file" in gone.stderr


def test_check_config_warms_the_cache_for_the_same_options(tmp_path: Path) -> None:
    """Break checked: `_warm_plan_cache` call removed from check-config -> the first launch misses."""
    cache = tmp_path / "cache"
    env = child_env({**BASE, "CRYOSTORM_PLAN_CACHE": str(cache)})
    check = [CRYOSTORM_RUN, "check-config", "--service-name", "svc", "--set", "tracing.sample_rate=0.5"]
    warmed = subprocess.run(check, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert warmed.returncode == 0, warmed.stderr
    first = launch(cache, args=("--set", "tracing.sample_rate=0.5", "--service-name", "svc"))
    assert first.code == 0 and first.hit
    assert first.env == launch("off", args=("--service-name", "svc", "--set", "tracing.sample_rate=0.5")).env
    assert not launch(cache, args=("--service-name", "svc")).hit  # other options: another plan


def test_the_cache_variable_is_no_setting() -> None:
    assert plancache.ENV_VAR in NOT_SETTINGS
    assert plancache.cache_dir({plancache.ENV_VAR: "OFF"}) is None
    assert plancache.cache_dir({"XDG_CACHE_HOME": "/x"}) == "/x/cryostorm"
    assert plancache.cache_dir({"XDG_CACHE_HOME": "relative"}) == os.path.expanduser("~/.cache/cryostorm")


def test_no_home_is_no_cache_never_a_cache_in_the_working_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    # A container's uid without a passwd entry and no HOME: expanduser("~") stays "~", a relative path, and the
    # cache would be made as ./~/.cache/cryostorm in the program's working directory.
    import pwd

    def no_entry(uid: int) -> pwd.struct_passwd:
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    assert os.path.expanduser("~") == "~"  # what Python gives there
    assert plancache.cache_dir({}) is None
    assert plancache.cache_dir({"XDG_CACHE_HOME": "/x"}) == "/x/cryostorm"  # a home is not needed for this one


class _Recording(dict[str, str]):
    """An environment that remembers every name looked up by name (`get`, `in`). Readers that walk
    the whole environment (`read_otel`, `read_cryostorm`) keep only their own prefix: in the key too."""

    def __init__(self, values: Mapping[str, str]) -> None:
        super().__init__(values)
        self.asked: set[str] = set()

    def get(self, key: str, default: object = None) -> object:  # type: ignore[override]
        self.asked.add(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self.asked.add(str(key))
        return super().__contains__(key)


def test_every_variable_the_settings_read_is_in_the_key(tmp_path: Path) -> None:
    """The key covers the environment by name (plancache.relevant): each name the loading and the plan
    look up must be one of them, or one an OpenTelemetry configuration file substitutes.
    Break checked: "GRPC_" taken out of plancache._PREFIXES -> GRPC_TRACE/GRPC_VERBOSITY reported."""
    otel = _otel_file(tmp_path, OTEL_YAML)
    for otel_config in (None, otel):
        environ = _Recording({**BASE, "OTEL_SERVICE_NAME": "x", "HOME": "/root", "PATH": "/bin",
                              "CRYOSTORM_OTLP__PROTOCOL": "http/protobuf", "SVC_FROM_FILE": "y"})
        loaded = load_settings(environ, overrides=[Override("--set", ("tracing", "sample_rate"), "0.5")],
                               otel_config=otel_config, config_dir=tmp_path)
        prepare_loaded(loaded, environ)
        prepare(loaded.settings, environ)  # prepare_loaded hands it a copy
        substituted = {"SVC_FROM_FILE"} if otel_config else set()
        assert sorted(n for n in environ.asked if not plancache.relevant(n) and n not in substituted) == []


def test_plancache_is_standard_library_only() -> None:
    probe = ("import sys; from cryostorm_run.launch import plancache; from cryostorm_run.cli import _run; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'typer', 'rich', 'dotenv')))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
