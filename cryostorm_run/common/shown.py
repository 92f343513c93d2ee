"""Values as a terminal may show them: secrets in URLs masked, control characters escaped, long ones cut.

Used by the launcher's messages and by the hook's stderr lines (stdlib only, cheap to import).

Example:
    >>> printable("http://me:pw@host:4318/v1?token=abc&x=1\\x1b[2J")
    'http://****:****@host:4318/v1?token=****&x=****'
    >>> printable("x" * 100, limit=5)
    'xxxxx… (100 chars)'
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

__all__ = ["clean", "header_secrets", "mask_url", "mask_values", "printable", "quoted", "scrubbed"]

# C0 and C1 controls, DEL, the Unicode line separators and bidi overrides that rearrange a line, and
# lone surrogates (undecodable bytes of an environment value, which no terminal can show).
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_CONTROLS_BUT_NEWLINE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# scheme://userinfo@ (the last @ before the path ends the userinfo, as urllib reads it)
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^/?#\s@]*(?:@[^/?#\s@]*)*)@")
# ?k=v&k2=v2 after a scheme://: every value masked, names kept
_QUERY = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^?#\s]*\?)([^#\s'\"]*)")
_FRAGMENT = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^#\s]*#)([^\s'\"]+)")
# user:password@host written without a well-formed scheme (refused as a URL, but still a password): none at all,
# or one with a slash too few or too many (`http:/u:pw@host`, `//u:pw@host`, `http:///u:pw@host`)
_BARE_USERINFO = re.compile(r"(?<![\w.+:-])[^\s/?#@:'\"]+:[^\s/?#@'\"]*@(?=[\w\[])")
# a percent-encoded scheme://... up to where a k=v list, a sentence or a quoted value goes on
_ENCODED_URL = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*%3A%2F%2F[^\s,;'\"<>]*")
_MARK = "****"


def _escape(match: re.Match[str]) -> str:
    char = match.group(0)
    named = _NAMED.get(char)
    if named is not None:
        return named
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def _userinfo(match: re.Match[str]) -> str:
    return f"{match.group(1)}{_MARK}:{_MARK}@" if ":" in match.group(2) else f"{match.group(1)}{_MARK}@"


def _encoded_url(match: re.Match[str]) -> str:
    import urllib.parse

    decoded = urllib.parse.unquote(match.group(0))
    masked = mask_url(decoded)
    return match.group(0) if masked == decoded else urllib.parse.quote(masked, safe="*")


def _query(match: re.Match[str]) -> str:
    pairs = []
    for pair in match.group(2).split("&"):
        name, sep, _ = pair.partition("=")
        pairs.append(f"{name}={_MARK}" if sep else (_MARK if pair else ""))
    return match.group(1) + "&".join(pairs)


def mask_url(text: str) -> str:
    """Every `user:password@` and query or fragment value of a URL inside `text` replaced by ****; also of a
    percent-encoded URL (a value of OTEL_RESOURCE_ATTRIBUTES: `https%3A%2F%2Fu%3Apw%40host`)."""
    if "%" in text and "%3A%2F%2F" in text.upper():
        text = _ENCODED_URL.sub(_encoded_url, text)
    if "@" in text:
        text = _BARE_USERINFO.sub(f"{_MARK}:{_MARK}@", text)
    if "://" not in text:
        return text
    text = _USERINFO.sub(_userinfo, text)
    text = _QUERY.sub(_query, text)
    return _FRAGMENT.sub(lambda m: m.group(1) + _MARK, text)


_WHOLE_BELOW = 8  # a shorter secret is masked only where it is not part of a longer word


def mask_values(text: str, values: Iterable[object]) -> str:
    """Every one of `values` (secrets: header values, tokens) replaced by **** in `text`, longest first.

    A short value is masked only where it stands alone (not inside a longer word): a one-letter header
    value must not turn "separated by commas" into "separated ****y commas". Where it is quoted, after
    `=` or between separators, it is masked; a longer value is masked wherever it appears.
    """
    for value in sorted({v for v in values if isinstance(v, str) and v}, key=len, reverse=True):
        if len(value) >= _WHOLE_BELOW:
            text = text.replace(value, _MARK)
            continue
        before = r"(?<![A-Za-z0-9])" if value[0].isalnum() else ""
        after = r"(?![A-Za-z0-9])" if value[-1].isalnum() else ""
        text = re.sub(before + re.escape(value) + after, _MARK, text)
    return text


def header_secrets(environ: Mapping[str, str]) -> list[str]:
    """Every header value set in `environ` (any variable whose name has HEADERS: `k=v,...` or a JSON object),
    in each form a message may quote it (see `_forms`)."""
    found: set[str] = set()
    for name, text in environ.items():
        if "HEADERS" not in name.upper() or not text.strip():
            continue
        if not text.lstrip().startswith("{"):
            found |= _pair_values(text)
            continue
        import json

        try:
            loaded = json.loads(text)
        except ValueError:
            loaded = None
        for value in loaded.values() if isinstance(loaded, dict) else [text]:
            if isinstance(value, str):
                found |= _forms(value)
    return [value for value in found if value.strip()]


def _pair_values(text: str) -> set[str]:
    """Every piece of the `k=v,...` list `text` that could be a secret value (each value, each item without
    `=`, the whole list), in each of its forms."""
    pieces = _forms(text)
    for item in text.split(","):
        _, sep, value = item.partition("=")
        pieces |= _forms(value if sep else item)
    return pieces


def _forms(value: str) -> set[str]:
    """`value` as set, stripped, percent-decoded, and as `repr` writes each (an exception's message quotes a
    value with a line break as `'Bearer x\\n'`)."""
    forms = {value, value.strip()}
    if "%" in value:
        import urllib.parse

        forms |= {urllib.parse.unquote(value), urllib.parse.unquote(value).strip()}
    return forms | {repr(form)[1:-1] for form in forms}


def mask_pairs(text: str) -> str:
    """A `k=v,k2=v2` list of secrets, shown: names readable, every value masked (`api-key=****,x=****`); an
    item without `=` (often a token pasted alone) is masked whole."""
    items = []
    for item in text.split(","):
        name, sep, value = item.partition("=")
        if not item.strip():
            items.append(item)
        elif sep and name.strip():
            items.append(f"{name}={_MARK if value.strip() else ''}")
        else:
            items.append(_MARK)
    return ",".join(items)


def mask_pair_values(message: str, text: str) -> str:
    """`message` with every piece of the `k=v,...` list `text` that could be a secret value masked (each value,
    each item without `=`, percent-decoded too); the names stay readable."""
    return mask_values(message, _pair_values(text))


def clean(text: str, limit: int = 2000) -> str:
    """A whole message (lines kept): URL secrets masked, control characters escaped, at most ~`limit` chars."""
    return _cut(_CONTROLS_BUT_NEWLINE.sub(_escape, mask_url(text)), limit, len(text))


def scrubbed(message: str) -> str:
    """A `cryostorm:` line's text: `clean`, and every header value of this process's environment masked
    (an exporter's error may quote the header it refused)."""
    import os

    return clean(mask_values(message, header_secrets(os.environ)))


def printable(value: object, limit: int = 60) -> str:
    """One value on one line: URL secrets masked, control characters (newlines too) escaped, and when it is
    longer than `limit` (+20) its first `limit` characters and its length. Applying it twice changes nothing."""
    text = value if isinstance(value, str) else str(value)
    return _cut(_CONTROLS.sub(_escape, mask_url(text)), limit, len(text))


def quoted(value: object, limit: int = 60) -> str:
    """`printable(value)` in quotes, for a value inside a sentence."""
    return f"'{printable(value, limit)}'"


def _cut(text: str, limit: int, length: int) -> str:
    if len(text) <= limit + 20:  # room for the suffix: a shortened text is never shortened again
        return text
    return f"{text[:limit]}… ({length} chars)"
