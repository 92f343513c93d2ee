"""Small helpers shared by tests (not fixtures)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from cryostorm_run import TelemetrySettings


def leaf_settings(model: type[BaseModel] = TelemetrySettings, prefix: str = "") -> list[str]:
    """Dotted names of every leaf field of the settings model."""
    import typing

    leaves: list[str] = []
    for name, field in model.model_fields.items():
        nested: list[Any] = [a for a in (field.annotation, *typing.get_args(field.annotation))
                             if isinstance(a, type) and issubclass(a, BaseModel)]
        if nested:
            leaves += leaf_settings(nested[0], f"{prefix}{name}.")
        else:
            leaves.append(prefix + name)
    return leaves
