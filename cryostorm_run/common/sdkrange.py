"""The SDK releases cryostorm-run supports, as pyproject.toml declares them (tests/test_packaging.py checks it).

The hook tells a program that runs on another (an install with --no-deps) before anything fails obscurely; it
asks at every start, so this stays free of imports (common/otel_line.py, which words the advice, imports re).
"""

from __future__ import annotations

__all__ = ["SDK_RANGE", "outside_range"]

SDK_RANGE = ((1, 40), (2, 0))


def outside_range(version: str) -> bool:
    """Is this opentelemetry-sdk version outside SDK_RANGE (an unreadable one is not said to be)?"""
    try:
        found = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        return False
    return not SDK_RANGE[0] <= found < SDK_RANGE[1]
