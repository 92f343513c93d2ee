"""Every `CRYOSTORM_*` name the model accepts, and the did-you-mean for one it does not."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import Any

from cryostorm_run.config.sources import DEFAULT, DELIMITER, PREFIX, Origin, Problem, is_secret_name, mask


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


# OpenTelemetry's words for what cryostorm's settings call otherwise (CRYOSTORM_TRACES__ENABLED is
# CRYOSTORM_TRACING__ENABLED): a misspelling of these is too far from the real name for difflib alone.
_OTEL_WORDS = {"TRACES": "TRACING", "TRACE": "TRACING", "TRACER": "TRACING", "SPANS": "TRACING",
               "LOGS": "LOGGING", "LOG": "LOGGING", "LOGGER": "LOGGING", "METRIC": "METRICS", "METER": "METRICS",
               "ENDPOINT": "COLLECTOR", "SAMPLER": "SAMPLING_STRATEGY", "SAMPLER_ARG": "SAMPLE_RATE",
               "PROPAGATORS": "PROPAGATION__PROPAGATOR_TYPES", "EXPORTER": "EXPORTER_TYPE"}


def _in_our_words(name: str, delimiter: str, prefix: str = "") -> str:
    """`name` (upper case) with each OpenTelemetry word, a whole `delimiter`-separated part after `prefix`,
    in cryostorm's."""
    parts = name.upper()[len(prefix):].split(delimiter)
    return prefix + delimiter.join(_OTEL_WORDS.get(part, part) for part in parts)


def unknown_setting(name: str, origin: Origin, shown: str | None) -> Problem:
    """The problem for a setting the model does not have, with the closest name it has, if one is close."""
    hint = "remove it, or check the spelling"
    close: list[str] = []
    written = name if origin is DEFAULT else origin.name  # a section nobody has: no origin recorded
    if origin.kind == "config_file":  # dotted keys: compare with the model's dotted names
        dotted = [n[len(PREFIX):].lower().replace(DELIMITER, ".") for n in iter_leaf_names()]
        for key in dict.fromkeys((_in_our_words(written, ".").lower(), written.lower())):
            close = close or difflib.get_close_matches(key, dotted, n=1, cutoff=0.75)
    elif written.upper().startswith(PREFIX):
        leaves = list(iter_leaf_names())
        for key in dict.fromkeys((_in_our_words(written, DELIMITER, PREFIX), written.upper())):
            close = close or difflib.get_close_matches(key, leaves, n=1, cutoff=0.75)
    if close:
        hint = f"did you mean {close[0]}?"
    # A misspelt secret is still a secret: CRYOSTORM_OTLP__HEADERZ=authorization=... must stay masked.
    if any(_looks_secret(n) for n in (written, *close)):
        shown = mask(shown)
    return Problem(name, shown, "unknown setting", hint)


def _looks_secret(name: str) -> bool:
    upper = name.upper()
    return is_secret_name(name) or any(word in upper for word in ("HEADER", "AUTH", "PASSW", "CREDENTIAL"))
