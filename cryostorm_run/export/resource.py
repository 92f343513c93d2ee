"""The resource every signal of a process shares: this process's identity, computed cheaply.

Built on the first use of any signal (export/deferred.py), never at import of `providers`.
"""

from __future__ import annotations

import os
import sys
import uuid
from typing import Any

from opentelemetry.sdk.resources import Resource

from cryostorm_run._version import __version__
from cryostorm_run.common.runtime import Runtime


class _Resource(Resource):
    """A Resource that knows which process it describes, and hashes once per process.

    Fork: a worker is a new instance with its own pid. Its attributes carry this process's
    identity (`service.instance.id`, `process.pid`), looked up through the public `attributes`
    property, so every provider's resource follows a fork on every SDK release without reaching
    into the providers. An identity attribute the user set (`service.instance.id` from
    OTEL_RESOURCE_ATTRIBUTES, injected by the OpenTelemetry Operator) is kept as written, in every
    process, as the SDK's Resource.create keeps it. Hash: the OTLP encoders group spans by
    resource, hashing it for every span; the SDK's hash serialises all attributes to JSON each time
    (~40 % of the encoding cost of a small span here), so it is kept for the life of the process.
    """

    _cryostorm_pid = -1
    _cryostorm_attributes: dict[str, Any] | None = None
    _cryostorm_hash: int | None = None
    _cryostorm_user: dict[str, Any] = {}  # the identity attributes the user set (never mutated)

    @property
    def attributes(self) -> Any:
        pid = os.getpid()
        if self._cryostorm_pid != pid or self._cryostorm_attributes is None:
            current = dict(super().attributes)
            current.update(_process_identity())
            current.update(self._cryostorm_user)  # the SDK's fork refresh merges its own id: the user's still wins
            self._cryostorm_attributes, self._cryostorm_hash, self._cryostorm_pid = current, None, pid
        return self._cryostorm_attributes

    def __hash__(self) -> int:
        attributes = self.attributes  # refreshes the cache after a fork
        if self._cryostorm_hash is None:
            import json

            self._cryostorm_hash = hash((json.dumps(attributes, sort_keys=True, default=str), self.schema_url))
        return self._cryostorm_hash

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Resource):
            return NotImplemented
        return dict(self.attributes) == dict(other.attributes) and self.schema_url == other.schema_url

    def merge(self, other: Resource) -> Resource:
        merged = super().merge(other)  # the SDK merges at fork on some releases: stay a _Resource
        out = _Resource(merged.attributes, merged.schema_url)
        out._cryostorm_user = self._cryostorm_user
        return out


_IDENTITY: tuple[int, dict[str, Any]] = (-1, {})


def _process_identity() -> dict[str, Any]:
    """This process's identity, one per pid: the same on every signal's resource."""
    global _IDENTITY
    pid = os.getpid()
    if _IDENTITY[0] != pid:
        _IDENTITY = (pid, {"service.instance.id": str(uuid.uuid4()), "process.pid": pid})
    return _IDENTITY[1]


# platform.machine() → the semantic conventions' host.arch values
_HOST_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "i386": "x86", "i686": "x86",
              "x86": "x86", "ppc64le": "ppc64", "ppc64": "ppc64", "ppc": "ppc32", "s390x": "s390x", "armv7l": "arm32"}


def _cheap_detected() -> dict[str, Any]:
    """What semantic conventions describe and costs nothing to know: the SDK, the runtime, the host."""
    import platform
    import socket

    from opentelemetry.sdk.version import __version__ as sdk_version

    implementation = sys.implementation
    try:  # what opentelemetry-instrument stamps (the deprecated name dashboards still query): its release
        from opentelemetry.instrumentation.version import __version__ as auto_version
    except ImportError:  # installed with --no-deps, without opentelemetry-instrumentation
        auto = {}
    else:
        auto = {"telemetry.auto.version": auto_version}
    return {
        **auto,
        "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.version": sdk_version,
        "process.runtime.name": implementation.name,
        "process.runtime.version": ".".join(str(v) for v in implementation.version[:3]),
        "process.runtime.description": sys.version,
        "process.executable.path": sys.executable,
        "host.name": socket.gethostname(),
        "host.arch": _HOST_ARCH.get(platform.machine().lower(), platform.machine().lower() or "unknown"),
    }


def build_resource(rt: Runtime) -> Resource:
    attrs: dict[str, Any] = {
        **_cheap_detected(),
        "telemetry.distro.name": "cryostorm-run",
        "telemetry.distro.version": __version__,
        **rt.resource_attributes,
        "service.name": rt.service_name,
        **_process_identity(),
    }
    # The user's `service.instance.id` / `process.pid` win over the generated ones (as the SDK's Resource.create)
    user = {key: rt.resource_attributes[key] for key in _process_identity() if key in rt.resource_attributes}
    attrs.update(user)
    resource = _Resource(attrs, rt.schema_url)
    resource._cryostorm_user = user
    return resource
