"""Every `CRYOSTORM_*` name the model accepts, for did-you-mean suggestions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from cryostorm_run.config.sources import DELIMITER, PREFIX


def iter_leaf_names() -> Iterator[str]:
    """Every CRYOSTORM_* variable name the model accepts (for did-you-mean suggestions)."""
    from pydantic import BaseModel

    from cryostorm_run.config.model import TelemetryModel

    def walk(model: type[BaseModel], prefix: str) -> Iterator[str]:
        for name, field in model.model_fields.items():
            env = f"{prefix}{name.upper()}"
            yield env
            for arg in _model_types(field.annotation):
                yield from walk(arg, env + DELIMITER)

    yield from walk(TelemetryModel, PREFIX)


def _model_types(annotation: Any) -> list[type[Any]]:
    import typing

    from pydantic import BaseModel

    found = []
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            found.append(candidate)
    return found
