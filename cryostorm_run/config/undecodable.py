"""Settings in the environment whose bytes are not UTF-8.

Python keeps such bytes of `os.environ` as lone surrogates (`\\udce9` for 0xe9). Passed on, a value like that
fails wherever it is encoded (a header, a URL, the program's environment), far from the setting that caused it:
the launcher refuses it by name instead, with the byte unless the setting is a secret.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from cryostorm_run.config.sources import NOT_SETTINGS, OTEL_TABLE, PREFIX, Problem, is_secret_name, mask


def refuse_undecodable(environ: Mapping[str, str]) -> tuple[list[Problem], Mapping[str, str]]:
    """(a problem for each setting Python could not read as text, the environment without them)."""
    problems: list[Problem] = []
    refused: set[str] = set()
    for key, value in environ.items():
        if value.isascii() or not _is_setting(key) or not any(0xDC80 <= ord(char) <= 0xDCFF for char in value):
            continue
        secret = is_secret_name(key)
        refused.add(key)  # an environment variable is named as written (Origin.describe)
        byte = first_undecodable(value)
        if byte is None:  # UTF-8 bytes that Python read under an ASCII locale (LC_ALL=C without UTF-8 mode)
            problems.append(Problem(key, mask(value) if secret else value, "UTF-8 text that this Python, running "
                                    "under an ASCII locale without UTF-8 mode, cannot read",
                                    "set PYTHONUTF8=1, or a UTF-8 locale (LC_ALL=C.UTF-8)"))
            continue
        problems.append(Problem(key, mask(value) if secret else value,
                                "not UTF-8 text" + ("" if secret else f": byte 0x{byte:02x}"), "write it in UTF-8"))
    if not refused:
        return problems, environ
    return problems, {key: value for key, value in environ.items() if key not in refused}


def first_undecodable(value: str) -> int | None:
    """The first byte of `value` that is not UTF-8, or None. Judged on its bytes, as the environment holds them:
    under a C locale without UTF-8 mode (PYTHONUTF8=0 PYTHONCOERCECLOCALE=0 LC_ALL=C) Python decodes them as
    ASCII, and valid UTF-8 such as 'café' arrives escaped too."""
    try:
        os.fsencode(value).decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.object[exc.start]
    except UnicodeEncodeError:  # a character the file-system encoding cannot hold: not from the environment
        return None
    return None


def _is_setting(key: str) -> bool:
    return key in OTEL_TABLE or (key.upper().startswith(PREFIX) and key.upper() not in NOT_SETTINGS)
