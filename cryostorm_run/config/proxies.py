"""Proxy variables that would carry a local collector's exports through a proxy (stdlib only).

Both exporters honour the environment's proxy variables: requests (OTLP/HTTP) reads `https_proxy`/`http_proxy`
and `no_proxy` in either case; gRPC's core reads `grpc_proxy`, `https_proxy`, `http_proxy` and `no_grpc_proxy`,
`no_proxy` in lower case only. A corporate container sets them for the internet; a collector in the cluster, on
the node or in the pod is then reached through the proxy, and what fails is told as something else (a 403 from
the proxy as bad credentials, the proxy's unresolvable name as the collector's)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

__all__ = ["proxy_for"]


def _local(host: str) -> bool:
    """A collector no proxy is meant for: an internal address or name (a cluster service, the node, the pod)."""
    host = host.strip("[]").lower()
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "." not in host or host.endswith((".local", ".svc", ".cluster.local", ".internal", ".localhost"))
    return address.is_private or address.is_loopback or address.is_link_local


def _bypassed(host: str, no_proxy: str) -> bool:
    host = host.strip("[]").lower()
    for written in (e.strip().lower() for e in no_proxy.split(",") if e.strip()):
        entry = written.split(":")[0] if written.count(":") == 1 else written  # host:port
        if entry == "*" or host == entry.lstrip(".") or host.endswith("." + entry.lstrip(".")):
            return True
        try:
            if ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def proxy_for(host: str, scheme: str, grpc: bool, environ: Mapping[str, str]) -> tuple[str, str] | None:
    """(variable, proxy URL) the exporter would send a local collector's exports through, or None."""
    if not _local(host):
        return None
    if grpc:
        names = ["grpc_proxy", "https_proxy", "http_proxy"]
        no_proxy = environ.get("no_grpc_proxy") or environ.get("no_proxy", "")
    else:
        names = [f"{scheme}_proxy", f"{scheme.upper()}_PROXY", "all_proxy", "ALL_PROXY"]
        no_proxy = environ.get("no_proxy") or environ.get("NO_PROXY", "")
    found = next(((name, environ[name]) for name in names if environ.get(name, "").strip()), None)
    if found is None or _bypassed(host, no_proxy):
        return None
    return found
