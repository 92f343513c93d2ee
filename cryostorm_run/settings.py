"""The public settings class: `TelemetryModel` read from flags, the environment and files.

Environment names use the prefix ``CRYOSTORM_`` and ``__`` between levels::

    CRYOSTORM_SERVICE__NAME=checkout
    CRYOSTORM_TRACING__SAMPLE_RATE=0.25
    CRYOSTORM_COLLECTOR=http://otel-collector:4317

Example:
    >>> from cryostorm_run import TelemetrySettings
    >>> s = TelemetrySettings(service={"name": "checkout"})
    >>> s.service.name
    'checkout'
"""

from __future__ import annotations

import os
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from cryostorm_run.config.model import (
    CollectorEndpoint,
    ExportConfig,
    LoggingConfig,
    MetricsConfig,
    OtlpConfig,
    PropagationConfig,
    ServiceInfo,
    TelemetryModel,
    TracingConfig,
)

__all__ = [
    "CollectorEndpoint",
    "ExportConfig",
    "LoggingConfig",
    "MetricsConfig",
    "OtlpConfig",
    "PropagationConfig",
    "ServiceInfo",
    "TelemetryModel",
    "TelemetrySettings",
    "TracingConfig",
]


class EnvironSource(PydanticBaseSettingsSource):
    """`TelemetryModel()` reads `os.environ` through the same readers as the CLI."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ returns everything at once

    def __call__(self) -> dict[str, Any]:
        from pathlib import Path

        from cryostorm_run.config.configfile import read_config_file
        from cryostorm_run.config.sources import SourceError, environ_entries, merge
        from cryostorm_run.config.undecodable import refuse_undecodable

        # Same order as `load_settings` without flags or env file: config file < OTEL_* < CRYOSTORM_*. The
        # directory is relative, as there: a deleted working directory has no config file, not an error.
        undecodable, environ = refuse_undecodable(os.environ)
        if undecodable:
            raise SourceError(undecodable)
        data, _ = merge(read_config_file(Path()) + environ_entries(environ))
        return data


class TelemetrySettings(BaseSettings, TelemetryModel):
    """Everything cryostorm needs, validated once.

    Sources, highest first: init arguments (CLI flags), ``CRYOSTORM_*`` variables,
    standard ``OTEL_*`` variables, the env file, the config file, defaults.
    """

    model_config = SettingsConfigDict(frozen=True, extra="forbid", env_prefix="CRYOSTORM_")

    def __init__(self, **values: Any) -> None:
        """Invalid settings raise `InvalidSettings` (a ValueError): each problem named as written, secrets masked."""
        from pydantic import ValidationError

        from cryostorm_run.config.errors import InvalidSettings
        from cryostorm_run.config.sources import SourceError

        try:
            super().__init__(**values)
        except SourceError as exc:  # an OTEL_* variable its reader refused (already named and masked)
            raise InvalidSettings(exc.problems) from None
        except ValidationError as exc:
            raise InvalidSettings(_explained(exc, values)) from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # One reader for the environment, shared with `load_settings` (which also
        # keeps provenance): CRYOSTORM_* over OTEL_*. See cryostorm_run/config/sources.py.
        return (init_settings, EnvironSource(settings_cls))


def _explained(exc: Any, values: dict[str, Any]) -> list[Any]:
    """The problems of a refused `TelemetrySettings(**values)`, as `load_settings` words them (masked); a value
    the code passed is named `TelemetrySettings(service=...)`."""
    from pathlib import Path

    from cryostorm_run.config.configfile import read_config_file
    from cryostorm_run.config.explain import explain_errors
    from cryostorm_run.config.loading import _redacted
    from cryostorm_run.config.sources import Entry, Origin, environ_entries, merge

    passed = [Entry((key,), value, Origin("flag", f"TelemetrySettings({key}=...)")) for key, value in values.items()]
    data, origins = merge(read_config_file(Path()) + environ_entries(os.environ) + passed)
    return [_redacted(p) for p in explain_errors(exc.errors(include_url=False), data, origins, dict(os.environ))]
