"""The configuration error, apart from the loading machinery: the CLI's error boundary catches it
without importing pydantic (the `--` path with a cached plan never does)."""

from __future__ import annotations

from collections.abc import Sequence

TYPE_CHECKING = False  # not typing's: the `--` path's error boundary imports this module at every start
if TYPE_CHECKING:
    from cryostorm_run.config.sources import Problem


class ConfigError(Exception):
    """Invalid configuration: every problem at once, each naming the input as the user wrote it."""

    def __init__(self, problems: Sequence[Problem], switched_off: str | None = None) -> None:
        super().__init__("\n".join(f"{p.name}={p.value!r}: {p.message}" for p in problems))
        self.problems = list(problems)
        # The input that turns telemetry off (CRYOSTORM_ENABLED=false, OTEL_SDK_DISABLED=true, ...), as the user
        # wrote it, when it is valid itself: the `--` path then runs the program as it is.
        self.switched_off = switched_off


class InvalidSettings(ConfigError, ValueError):
    """`TelemetrySettings()` in a program (the facade without the launcher) refused what it read: the same
    problems as the launcher's (named as written, secrets masked, with the fix), never pydantic's own text,
    which quotes every input value in clear. A ValueError, as pydantic's ValidationError is."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__(problems)
        lines = [f"{p.name}" + ("" if p.value is None else f" = {p.value!r}") + f": {p.message}"
                 + (f" ({p.hint})" if p.hint else "") for p in self.problems]
        self.args = (f"invalid cryostorm settings ({len(lines)} problem{'s' if len(lines) != 1 else ''}):\n  "
                     + "\n  ".join(lines),)
