"""A cache of validated plans: `cryostorm-run -- CMD` skips pydantic when none of its inputs changed.

A plan (`launch.plan.Prepared`: what the settings take out of and put into the program's environment,
and their warnings) is stored after a successful validation, by `--` and by `check-config`, under a
key that is a hash of every input that can change it (`material`). Any input differing is a miss,
and the miss runs the full validation: errors always come from the real path, and an invalid
configuration is never stored. Standard library only: on a hit the launcher imports no pydantic.

Where: `$CRYOSTORM_PLAN_CACHE`, else `$XDG_CACHE_HOME/cryostorm`, else `~/.cache/cryostorm`;
`CRYOSTORM_PLAN_CACHE=off` disables it. A directory that cannot be made, read or written means no
cache, silently. Entries are written atomically (0600, in a 0700 directory) and never hold a value in
clear: each is encrypted with a key derived from its inputs (secret headers included), so only a
launcher given those same inputs can read it; a corrupt or foreign entry fails its check and is ignored.
"""

from __future__ import annotations

import marshal
import os
import sys
from collections.abc import Mapping, Sequence

from cryostorm_run.launch.plan import Prepared

try:  # the standard library's own BLAKE2b and SHAKE256 (hashlib's, the same functions) without importing
    # hashlib, whose OpenSSL bindings (`_hashlib`, which `hmac` imports too) cost every start ~3 ms. One of
    # the places listed in the README ("Private attributes"); tests/test_plancache.py checks the fallback.
    from _blake2 import blake2b
    from _sha3 import shake_256  # type: ignore[import-not-found,unused-ignore]
except ImportError:
    from hashlib import blake2b, shake_256

ENV_VAR = "CRYOSTORM_PLAN_CACHE"  # a directory, or off; read by the launcher only (not a setting)
OFF = ("off", "0", "false", "no", "none")
MAGIC = b"cryostorm-plan 1\n"
KEEP = 64  # entries kept per directory; the oldest go first
# Variables the settings can read besides CRYOSTORM_* and OTEL_*: the CA-bundle advice, gRPC's own
# (program defaults), PYTHONPATH (which optional packages the launcher finds).
_PREFIXES = ("CRYOSTORM_", "OTEL_", "GRPC_")
_PROXIES = ("http_proxy", "https_proxy", "grpc_proxy", "all_proxy", "no_proxy", "no_grpc_proxy")  # config/proxies
_NAMES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "PYTHONPATH", *_PROXIES, *(n.upper() for n in _PROXIES))
_CONFIG_FILES = ("cryostorm.toml", "pyproject.toml")  # config/configfile.py CONFIG_FILES, in the directory
_VALIDATORS = ("config", "launch")  # the launcher's own code that makes a plan (changed in a dev install)


def cache_dir(environ: Mapping[str, str]) -> str | None:
    """The cache directory, or None when the cache is off."""
    chosen = environ.get(ENV_VAR, "").strip()
    if chosen.lower() in OFF:
        return None
    if chosen:
        return chosen
    base = environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):  # the XDG spec: a relative path is ignored
        home = os.path.expanduser("~")  # "~" itself with no HOME and a uid without a passwd entry; "" with HOME=""
        if not os.path.isabs(home):
            return None  # no home: no cache, rather than a `~/.cache` made in the program's working directory
        base = os.path.join(home, ".cache")
    return os.path.join(base, "cryostorm")


def relevant(name: str) -> bool:
    """Is this environment variable part of the key?"""
    return (name.upper().startswith(_PREFIXES) and name.upper() != ENV_VAR) or name in _NAMES


def material(environ: Mapping[str, str], env_file: str | None, otel_config: str | None,
             assignments: Sequence[str], flags: Mapping[str, str]) -> bytes | None:
    """Every input that can change the plan, as bytes: the options, the variables the settings read,
    the files they read (their contents), the interpreter, the installed packages (the modification
    time of each directory on sys.path: installing, upgrading or removing a package changes it) and
    the launcher's own code. None when the working directory is gone (deleted while a shell was in it):
    what its relative paths name is unknown, so such a start is validated in full, never cached."""
    from cryostorm_run import __version__

    try:
        cwd = os.getcwd()
    except OSError:
        return None

    env = sorted((k, v) for k, v in environ.items() if relevant(k))
    otel_file = otel_config if otel_config is not None else environ.get("OTEL_CONFIG_FILE", "").strip() or None
    otel_text, env_text = _read(otel_file), _read(env_file)
    for text in (otel_text, env_text):  # ${NAME} in either file (python-dotenv expands it too) reads any variable
        if text:
            env += sorted((name, environ.get(name)) for name in _references(text))  # type: ignore[misc]
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    inputs = (
        MAGIC, __version__, sys.version, sys.prefix, cwd,
        env_file, otel_config, tuple(assignments), tuple(sorted(flags.items())), tuple(env),
        env_text, otel_text, tuple(_read(name) for name in _CONFIG_FILES),
        tuple((entry, _mtime(entry)) for entry in sys.path),
        tuple(_listing(os.path.join(here, folder)) for folder in _VALIDATORS),
    )
    return repr(inputs).encode("utf-8", "surrogatepass")


def lookup(directory: str, key: bytes) -> Prepared | None:
    """The plan stored under `key`, if there is a sound one whose files still exist; else None."""
    try:
        with open(os.path.join(directory, _name(key)), "rb") as fh:
            blob = fh.read()
        if not blob.startswith(MAGIC):
            return None
        tag, cipher = blob[len(MAGIC):len(MAGIC) + 32], blob[len(MAGIC) + 32:]
        if _tag(key, tag) != _tag(key, _tag(key, cipher)):  # compared as MACs of the tags: no timing to learn
            return None  # corrupt, foreign, or written for other inputs
        record = marshal.loads(_xor(cipher, _stream(key, len(cipher))))  # our own bytes: checked above
        prepared = Prepared(*record)
    except (OSError, ValueError, EOFError, TypeError):
        return None
    if not all(os.path.isfile(path) for path in prepared.files):
        return None  # a file the settings name is gone: the full validation says so
    return prepared


def store(directory: str, key: bytes, prepared: Prepared) -> None:
    """Keep `prepared` under `key`; silently nothing when the directory is not usable."""
    record = (prepared.enabled, prepared.drop, prepared.put, prepared.file_drop, prepared.file_put,
              prepared.warnings, prepared.files, prepared.off)
    plain = marshal.dumps(record)
    cipher = _xor(plain, _stream(key, len(plain)))
    name = _name(key)
    temporary = os.path.join(directory, f".{name}.{os.getpid()}.tmp")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, MAGIC + _tag(key, cipher) + cipher)
        finally:
            os.close(fd)
        os.replace(temporary, os.path.join(directory, name))
        _prune(directory)
    except OSError:  # not writable (read-only, full, not a directory): no cache, silently
        try:  # noqa: SIM105 (contextlib costs the `--` path ~1.5 ms: functools, types)
            os.unlink(temporary)
        except OSError:
            pass


def _prune(directory: str) -> None:
    entries = [e for e in os.scandir(directory) if e.name.endswith(".plan")]
    if len(entries) > KEEP:
        for entry in sorted(entries, key=lambda e: e.stat().st_mtime)[: len(entries) - KEEP]:
            os.unlink(entry.path)


def _digest(key: bytes, purpose: bytes, size: int = 32) -> bytes:
    return blake2b(key, digest_size=size, person=b"cryostorm-" + purpose).digest()


def _name(key: bytes) -> str:
    return _digest(key, b"name").hex() + ".plan"


def _tag(key: bytes, cipher: bytes) -> bytes:
    return blake2b(cipher, digest_size=32, key=_digest(key, b"mac", 64)).digest()


def _stream(key: bytes, size: int) -> bytes:
    stream: bytes = shake_256(_digest(key, b"stream", 64)).digest(size)
    return stream


def _xor(data: bytes, stream: bytes) -> bytes:
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(len(data), "big")


def _read(path: str | None) -> bytes | None:
    if path is None or not os.path.isfile(path):  # a pipe or a device is never opened: a FIFO would block,
        return None  # /dev/zero never end (the validation refuses them by name)
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except (OSError, ValueError):
        return None  # absent or unreadable: part of the key as such (the validation reports it)


def _references(text: bytes) -> set[str]:
    """Names a `${NAME}` or `${NAME:-default}` may substitute (more than the file uses is harmless)."""
    names = set()
    for piece in text.decode("utf-8", "replace").split("${")[1:]:
        name = ""
        for char in piece:
            if not (char.isalnum() or char == "_"):
                break
            name += char
        names.add(name)
    return names


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path or ".").st_mtime_ns
    except OSError:
        return None


def _listing(folder: str) -> tuple[tuple[str, int, int], ...]:
    try:
        return tuple(sorted((e.name, e.stat().st_mtime_ns, e.stat().st_size) for e in os.scandir(folder)
                            if e.name.endswith(".py")))
    except OSError:
        return ()
