"""cryostorm-run: zero-code OpenTelemetry for Python programs, plus a small facade for manual spans.

Example:
    >>> from cryostorm_run import TelemetrySettings
    >>> TelemetrySettings().exporter_type.value
    'console'
"""

from __future__ import annotations

import importlib

# Names are imported on first use (PEP 562): the hook imports cryostorm_run.hook.bootstrap in every
# instrumented process, and must not pay for pydantic or typer through this package's __init__.
_WHERE = {
    "__version__": "cryostorm_run._version",
    "ChildPropagation": "cryostorm_run.config.enums",
    "Compression": "cryostorm_run.config.enums",
    "EnvironmentType": "cryostorm_run.config.enums",
    "ExporterType": "cryostorm_run.config.enums",
    "FastAPITelemetry": "cryostorm_run.config.enums",
    "LogLevel": "cryostorm_run.config.enums",
    "OtlpProtocol": "cryostorm_run.config.enums",
    "ProcessorType": "cryostorm_run.config.enums",
    "PropagatorType": "cryostorm_run.config.enums",
    "SamplingStrategy": "cryostorm_run.config.enums",
    "ConfigError": "cryostorm_run.config.errors",
    "load_settings": "cryostorm_run.config.loading",
    "TelemetryModel": "cryostorm_run.config.model",
    "TelemetrySetupError": "cryostorm_run.export.errors",
    "Telemetry": "cryostorm_run.facade.telemetry",
    "LaunchError": "cryostorm_run.launch",
    "LaunchPlan": "cryostorm_run.launch",
    "exec_plan": "cryostorm_run.launch",
    "plan_launch": "cryostorm_run.launch",
    "CollectorEndpoint": "cryostorm_run.settings",
    "ExportConfig": "cryostorm_run.settings",
    "LoggingConfig": "cryostorm_run.settings",
    "MetricsConfig": "cryostorm_run.settings",
    "OtlpConfig": "cryostorm_run.settings",
    "PropagationConfig": "cryostorm_run.settings",
    "ServiceInfo": "cryostorm_run.settings",
    "TelemetrySettings": "cryostorm_run.settings",
    "TracingConfig": "cryostorm_run.settings",
}

TYPE_CHECKING = False  # not typing's: the hook keeps typing out of every process
if TYPE_CHECKING:
    from cryostorm_run._version import __version__
    from cryostorm_run.config.enums import (
        ChildPropagation,
        Compression,
        EnvironmentType,
        ExporterType,
        FastAPITelemetry,
        LogLevel,
        OtlpProtocol,
        ProcessorType,
        PropagatorType,
        SamplingStrategy,
    )
    from cryostorm_run.config.errors import ConfigError
    from cryostorm_run.config.loading import load_settings
    from cryostorm_run.config.model import TelemetryModel
    from cryostorm_run.export.errors import TelemetrySetupError
    from cryostorm_run.facade.telemetry import Telemetry
    from cryostorm_run.launch import LaunchError, LaunchPlan, exec_plan, plan_launch
    from cryostorm_run.settings import (
        CollectorEndpoint,
        ExportConfig,
        LoggingConfig,
        MetricsConfig,
        OtlpConfig,
        PropagationConfig,
        ServiceInfo,
        TelemetrySettings,
        TracingConfig,
    )


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'cryostorm_run' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "ChildPropagation",
    "CollectorEndpoint",
    "Compression",
    "ConfigError",
    "EnvironmentType",
    "ExportConfig",
    "ExporterType",
    "FastAPITelemetry",
    "LaunchError",
    "LaunchPlan",
    "LogLevel",
    "LoggingConfig",
    "MetricsConfig",
    "OtlpConfig",
    "OtlpProtocol",
    "ProcessorType",
    "PropagationConfig",
    "PropagatorType",
    "SamplingStrategy",
    "ServiceInfo",
    "Telemetry",
    "TelemetryModel",
    "TelemetrySettings",
    "TelemetrySetupError",
    "TracingConfig",
    "__version__",
    "exec_plan",
    "load_settings",
    "plan_launch",
]
