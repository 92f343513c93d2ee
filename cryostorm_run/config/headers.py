"""What an OTLP header can carry, checked when the settings are validated: a header that passes here is
sent by both exporters. A message never quotes a header value: it is a secret."""

from __future__ import annotations

import re

from pydantic import SecretStr

_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def check_headers(value: dict[str, SecretStr] | None) -> dict[str, SecretStr] | None:
    """Header names HTTP can send, and values both gRPC and HTTP can send: gRPC metadata takes printable
    ASCII only (0x20-0x7E; anything else: every export fails, INTERNAL "Invalid metadata"), HTTP at most
    Latin-1 and no line break (else UnicodeEncodeError, or a split header). So a value holds printable
    ASCII only, for both protocols. Values are stripped of surrounding whitespace, as the SDK does when it
    reads OTEL_EXPORTER_OTLP_HEADERS (and percent-decoded before, as it does)."""
    if not value:
        return value
    checked = {}
    for name, secret in value.items():
        if not _HEADER_NAME.match(name):
            raise ValueError(f"invalid header name {name!r}: use letters, digits and !#$%&'*+-.^_`|~ only")
        text = secret.get_secret_value().strip()
        bad = next((i for i, char in enumerate(text) if not " " <= char <= "~"), None)
        if bad is not None and text[bad] > "\x7f":  # the character is not shown: it is part of a secret
            raise ValueError(f"the value of header {name!r} has a character that is not ASCII (at position "
                             f"{bad + 1} of {len(text)}): header values must be ASCII (visible characters and "
                             "spaces) over gRPC and HTTP alike (a %XX escape counts as what it decodes to); remove "
                             "the stray character (a typographic quote or a non-breaking space pasted with the "
                             "token?)")
        if bad is not None:
            raise ValueError(f"the value of header {name!r} has a control character ({text[bad]!r} at position "
                             f"{bad + 1} of {len(text)}): headers cannot carry it; remove it (a line break "
                             "copied with a token?)")
        checked[name] = SecretStr(text)
    return checked
