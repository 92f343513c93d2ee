"""What the probe checks and what it found: targets, results, failures (no I/O here)."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryostorm_run.config.enums import OtlpProtocol


@dataclass(frozen=True)
class ProbeTarget:
    """One collector endpoint as the exporters use it. `signals`: the OTel names (traces, metrics, logs);
    `base_url`: the gRPC endpoint, or the OTLP/HTTP base URL (the exporter adds /v1/<signal>)."""

    signals: tuple[str, ...]
    protocol: OtlpProtocol
    base_url: str
    tls: bool
    certificate: str | None = None
    client_certificate: str | None = None
    client_key: str | None = None
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # secret values

    @property
    def host(self) -> str:
        return urllib.parse.urlsplit(self.base_url).hostname or ""

    @property
    def port(self) -> int:
        parsed = urllib.parse.urlsplit(self.base_url)
        return parsed.port or (443 if parsed.scheme == "https" else 80)

    def url(self, signals: Sequence[str]) -> str:
        """The URL exported to: for HTTP with several signals, `.../v1/<signal>`."""
        if self.protocol is OtlpProtocol.GRPC:
            return self.base_url
        return f"{self.base_url}/v1/{signals[0] if len(signals) == 1 else '<signal>'}"


@dataclass(frozen=True)
class ProbeResult:
    """`kind`: ok, dns, refused, timeout, unreachable, tls, unauthenticated, permission_denied,
    not_found or error. `message` and `hint` never contain a header value."""

    target: ProbeTarget
    signals: tuple[str, ...]
    kind: str
    message: str
    hint: str = ""

    @property
    def ok(self) -> bool:
        return self.kind == "ok"

    @property
    def url(self) -> str:
        return self.target.url(self.signals)


class ProbeFailure(Exception):
    """What one step found; `kind` as in ProbeResult ("ok" too, for a step that worked)."""

    def __init__(self, kind: str, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.kind, self.message, self.hint = kind, message, hint


def remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out")
    return left
