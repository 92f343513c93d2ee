"""Samplers and propagators by the names OpenTelemetry gives them (registries keyed by name)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.sdk.trace import sampling as _sampling

from cryostorm_run.export.errors import TelemetrySetupError


def _ratio(arg: float | None) -> float:
    return 1.0 if arg is None else arg


SAMPLERS: dict[str, Callable[[float | None], _sampling.Sampler]] = {
    "always_on": lambda _: _sampling.ALWAYS_ON,
    "always_off": lambda _: _sampling.ALWAYS_OFF,
    "traceidratio": lambda arg: _sampling.TraceIdRatioBased(_ratio(arg)),
    "parentbased_always_on": lambda _: _sampling.ParentBased(_sampling.ALWAYS_ON),
    "parentbased_always_off": lambda _: _sampling.ParentBased(_sampling.ALWAYS_OFF),
    "parentbased_traceidratio": lambda arg: _sampling.ParentBased(_sampling.TraceIdRatioBased(_ratio(arg))),
}


def _optional(module: str, attr: str, package: str) -> Callable[[], TextMapPropagator]:
    def make() -> TextMapPropagator:
        import importlib

        try:
            cls = getattr(importlib.import_module(module), attr)
        except ImportError:
            raise TelemetrySetupError(
                f"propagator needs the package {package}: pip install {package}"
            ) from None
        propagator: TextMapPropagator = cls()
        return propagator

    return make


def _tracecontext() -> TextMapPropagator:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator()


def _baggage() -> TextMapPropagator:
    from opentelemetry.baggage.propagation import W3CBaggagePropagator

    return W3CBaggagePropagator()


PROPAGATORS: dict[str, Callable[[], TextMapPropagator]] = {
    "tracecontext": _tracecontext,
    "baggage": _baggage,
    "b3": _optional("opentelemetry.propagators.b3", "B3SingleFormat", "opentelemetry-propagator-b3"),
    "b3multi": _optional("opentelemetry.propagators.b3", "B3MultiFormat", "opentelemetry-propagator-b3"),
    "jaeger": _optional("opentelemetry.propagators.jaeger", "JaegerPropagator", "opentelemetry-propagator-jaeger"),
}


def build_propagator(names: Sequence[str]) -> TextMapPropagator:
    from opentelemetry.propagators.composite import CompositePropagator

    unknown = [n for n in names if n not in PROPAGATORS]
    if unknown:
        raise TelemetrySetupError(f"unknown propagator {unknown[0]!r}; allowed: {', '.join(PROPAGATORS)}")
    return CompositePropagator([PROPAGATORS[n]() for n in names])


