"""Counts told in words (no imports: used on the exit path of every process and by the export workers).

Example:
    >>> counted(1, "log records"), counted(3, "spans")
    ('1 log record', '3 spans')
"""

from __future__ import annotations

__all__ = ["counted"]


def counted(count: int, things: str) -> str:
    """`count` and the plural noun `things` ("spans", "log records", "data points"), singular for one."""
    return f"{count} {things[:-1] if count == 1 and things.endswith('s') else things}"
