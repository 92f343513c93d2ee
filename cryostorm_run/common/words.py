"""Counts told in words (no imports: used on the exit path of every process and by the export workers).

Example:
    >>> counted(1, "log records"), counted(3, "spans"), counted(1, "spans (copy to console)")
    ('1 log record', '3 spans', '1 span (copy to console)')
"""

from __future__ import annotations

__all__ = ["counted", "listed"]


def counted(count: int, things: str) -> str:
    """`count` and the plural noun `things` ("spans", "log records", "data points"), singular for one; what
    follows it in parentheses is kept as it is."""
    noun, space, rest = things.partition(" (")
    return f"{count} {noun[:-1] if count == 1 and noun.endswith('s') else noun}{space}{rest}"


def listed(words: list[str]) -> str:
    """"traces", "traces and logs", "traces, metrics and logs"."""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
