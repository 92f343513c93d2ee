"""Settings in the environment whose bytes are not UTF-8.

Python keeps such bytes of `os.environ` as lone surrogates (`\\udce9` for 0xe9). Passed on, a value like that
fails wherever it is encoded (a header, a URL, the program's environment), far from the setting that caused it:
the launcher refuses it by name instead, with the byte unless the setting is a secret.
"""

from __future__ import annotations

from collections.abc import Mapping

from cryostorm_run.config.sources import NOT_SETTINGS, OTEL_TABLE, PREFIX, Problem, is_secret_name, mask


def refuse_undecodable(environ: Mapping[str, str]) -> tuple[list[Problem], Mapping[str, str]]:
    """(a problem for each setting that is not UTF-8, the environment without them)."""
    problems: list[Problem] = []
    refused: set[str] = set()
    for key, value in environ.items():
        byte = first_undecodable(value)
        if byte is None or not _is_setting(key):
            continue
        secret = is_secret_name(key)
        refused.add(key)  # an environment variable is named as written (Origin.describe)
        problems.append(Problem(key, mask(value) if secret else value,
                                "not UTF-8 text" + ("" if secret else f": byte 0x{byte:02x}"), "write it in UTF-8"))
    if not refused:
        return problems, environ
    return problems, {key: value for key, value in environ.items() if key not in refused}


def first_undecodable(value: str) -> int | None:
    """The first byte of `value` that was not UTF-8, or None."""
    if value.isascii():
        return None
    return next((ord(char) - 0xDC00 for char in value if 0xDC80 <= ord(char) <= 0xDCFF), None)


def _is_setting(key: str) -> bool:
    return key in OTEL_TABLE or (key.upper().startswith(PREFIX) and key.upper() not in NOT_SETTINGS)
