"""Can the collector's host and port be reached? A TCP connection, made only after exports have failed
(stdlib only): at the exit during a long outage (export/outage.py), and after a gRPC deadline, to tell a
collector that never accepted the connection from one slow to answer."""

from __future__ import annotations

__all__ = ["connection_check", "host_port", "reachable"]


def host_port(endpoint: str | None) -> tuple[str, int] | None:
    """(host, port) an endpoint connects to (None: none, or a port that is not a number)."""
    if not endpoint:
        return None
    import urllib.parse

    parsed = urllib.parse.urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
    try:
        return parsed.hostname or "localhost", parsed.port or (443 if parsed.scheme == "https" else 80)
    except ValueError:
        return None


def reachable(endpoint: str | None, timeout_s: float) -> bool:
    """Does the collector accept a TCP connection? (Unknown endpoint: assume so.)"""
    if not endpoint:
        return True
    import socket

    address = host_port(endpoint)
    if address is None:
        return False
    try:
        with socket.create_connection(address, timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


def connection_check(where: str, timeout: float) -> str:
    """After a gRPC "Deadline Exceeded", which says nothing of whether the collector was slow to answer or no
    connection was ever made (a firewall dropping it, a host that is gone): what one TCP connection to
    `where` (host:port) shows, as text for the error ("" when it connects). On the export's thread, after a
    failure only; not through a proxy, whose own connection it would check."""
    import os

    if any(os.environ.get(n, "").strip() for n in ("grpc_proxy", "https_proxy", "http_proxy")):
        return ""
    import socket

    address = host_port(f"http://{where}")
    if address is None:
        return ""
    wait = max(0.05, min(0.5, timeout / 4))
    try:
        with socket.create_connection(address, timeout=wait):
            return ""  # it accepts connections: slow, not unreachable
    except TimeoutError:
        return f"; no TCP connection to {where} within {wait:g} s (TCP connect timed out)"
    except ConnectionRefusedError:
        return f"; {where}: Connection refused"
    except (OSError, ValueError):
        return ""
