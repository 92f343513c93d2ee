"""`doctor`'s start-up check: are cryostorm's own modules byte-compiled where they are installed?

The launcher and the hook run at every start. pip byte-compiles a package when it installs it; `uv`
does not unless asked (`--compile-bytecode`, `UV_COMPILE_BYTECODE=1`), nor `pip install --no-compile`,
nor a source checkout. Then the first start compiles them and writes `__pycache__`, unless it cannot
(a read-only image layer, `PYTHONDONTWRITEBYTECODE=1`, common in Dockerfiles): then every start, of every
container, compiles them again (measured on 2026-12-01, c5414da: `python -c pass` under cryostorm-run took
56.1 ms uncompiled against 34.4 ms compiled, bare Python 9.8 ms).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from importlib.util import MAGIC_NUMBER, cache_from_source


def stale_modules(package_dir: str) -> tuple[list[str], int]:
    """The modules under `package_dir` without an up-to-date `.pyc` (as the importer finds them), and
    how many modules there are."""
    stale, total = [], 0
    for folder, dirs, files in os.walk(package_dir):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            if not name.endswith(".py"):
                continue
            total += 1
            source = os.path.join(folder, name)
            if not _fresh(source):
                stale.append(os.path.relpath(source, package_dir))
    return sorted(stale), total


def _fresh(source: str) -> bool:
    """Would the importer use the cached `.pyc` of `source`? (PEP 552 header: magic, flags, then the
    source's mtime and size for a timestamp-based one; a hash-based one is taken as it is.)"""
    try:
        with open(cache_from_source(source), "rb") as fh:
            header = fh.read(16)
        stat = os.stat(source)
    except (OSError, NotImplementedError, ValueError):
        return False
    if len(header) < 16 or header[:4] != MAGIC_NUMBER:
        return False
    if int.from_bytes(header[4:8], "little") & 1:  # hash-based
        return True
    return (int.from_bytes(header[8:12], "little") == int(stat.st_mtime) & 0xFFFFFFFF
            and int.from_bytes(header[12:16], "little") == stat.st_size & 0xFFFFFFFF)


def uncompiled_packages(site_dir: str, skip: str = "") -> tuple[list[str], int]:
    """The top-level packages (and single-file modules) in `site_dir` installed without byte-compiling:
    more than half of their modules lack an up-to-date `.pyc` (a compiled package keeps a few files no
    compiler accepts, e.g. templates for another Python; an uncompiled one has none). `skip`: a folder
    left out (cryostorm's own, reported on its own line). And how many packages there are."""
    found, total = [], 0
    try:
        entries = sorted(os.scandir(site_dir), key=lambda e: e.name)
    except OSError:
        return [], 0
    skip = os.path.realpath(skip) if skip else ""
    for entry in entries:
        if entry.is_dir() and "." not in entry.name and entry.name != "__pycache__":  # not *.dist-info
            if os.path.realpath(entry.path) == skip:
                continue
            stale, modules = stale_modules(entry.path)
        elif entry.name.endswith(".py") and entry.is_file():
            stale, modules = ([] if _fresh(entry.path) else [entry.name]), 1
        else:
            continue  # metadata, *.pth, extension modules
        if modules:
            total += 1
            if len(stale) * 2 > modules:
                found.append(entry.name.removesuffix(".py"))
    return found, total


def _every_start(folder: str, environ: Mapping[str, str]) -> str:
    """Why every start compiles `folder`'s modules again ("": the first start keeps what it compiles)."""
    if environ.get("PYTHONDONTWRITEBYTECODE") or sys.flags.dont_write_bytecode:
        return "PYTHONDONTWRITEBYTECODE is set"
    return "" if os.access(folder, os.W_OK) else f"{folder} is not writable"


def _compile_fix(folder: str) -> str:
    return (f"compile them where they are installed, e.g. in the image: RUN {sys.executable} -m compileall -q "
            f"{folder} (with uv: uv pip install --compile-bytecode, or UV_COMPILE_BYTECODE=1)")


def startup_finding(package_dir: str, environ: Mapping[str, str]) -> tuple[str, str, str]:
    """(status, message, fix) for the doctor's start-up section: cryostorm's own modules."""
    stale, total = stale_modules(package_dir)
    if not stale:
        return "ok", f"cryostorm's {total} modules are byte-compiled ({package_dir})", ""
    shown = ", ".join(stale[:3]) + (f" and {len(stale) - 3} more" if len(stale) > 3 else "")
    fix = _compile_fix(package_dir)
    why = _every_start(package_dir, environ)
    if not why:
        return ("info", f"{len(stale)} of cryostorm's {total} modules are not byte-compiled ({shown}): the first "
                "start compiles and keeps them here, but a container started from an image compiles them at every "
                "start", fix)
    return ("info", f"{len(stale)} of cryostorm's {total} modules are not byte-compiled ({shown}) and {why}: "
            "every start compiles them again", fix)


def environment_finding(site_dir: str, package_dir: str, environ: Mapping[str, str]) -> tuple[str, str, str]:
    """(status, message, fix): the environment's other packages, which the program and the hook import at
    every start (measured on 2026-12-01: importing FastAPI, uvicorn, the SDK and its gRPC exporter from a
    `uv pip install` without `--compile-bytecode`, PYTHONDONTWRITEBYTECODE=1: 938 ms; compiled: 405 ms)."""
    found, total = uncompiled_packages(site_dir, skip=package_dir)
    if not found:
        return "ok", f"the environment's {total} packages are byte-compiled ({site_dir})", ""
    shown = ", ".join(found[:4]) + (f" and {len(found) - 4} more" if len(found) > 4 else "")
    head = f"{len(found)} of the {total} packages in {site_dir} were installed without byte-compiling ({shown})"
    fix, why = _compile_fix(site_dir), _every_start(site_dir, environ)
    if not why:
        return ("info", f"{head}: the first start compiles those the program imports and keeps them, but a "
                "container started from an image compiles them at every start", fix)
    return ("info", f"{head} and {why}: every start compiles those the program imports again (for FastAPI, "
            "uvicorn and the SDK ~0.5 s)", fix)


def startup_findings(package_dir: str, environ: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """cryostorm's own modules, then each site-packages folder of this interpreter."""
    import sysconfig

    paths = sysconfig.get_paths()
    sites = dict.fromkeys(p for p in (paths.get("purelib"), paths.get("platlib")) if p and os.path.isdir(p))
    return [startup_finding(package_dir, environ)] + [environment_finding(s, package_dir, environ) for s in sites]
