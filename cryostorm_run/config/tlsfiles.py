"""The TLS files a configuration names, read as the exporters will read them: a CA bundle and a client
certificate with its key, in PEM. A file that exists but holds no certificate, or a key that is not the
certificate's, was accepted and then failed at every export with a reason that named something else
("connection refused", "use http://"); it is refused by name before the program starts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cryostorm_run.config.sources import DEFAULT, DELIMITER, PREFIX, Origin, Path_, Problem, origin_of

__all__ = ["tls_file_problems"]

_GROUPS = (("otlp",), ("tracing",), ("metrics",), ("logging",))


def _name(path: Path_, origins: Mapping[Path_, Origin]) -> str:
    origin = origin_of(path, origins)
    return origin.describe() if origin is not DEFAULT else PREFIX + DELIMITER.join(p.upper() for p in path)


def _reason(exc: Exception) -> str:
    return str(getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc)


def tls_file_problems(settings: Any, origins: Mapping[Path_, Origin]) -> list[Problem]:
    problems: list[Problem] = []
    for group in _GROUPS:
        config = getattr(settings, group[0])
        ca = getattr(config, "certificate_file", None)
        cert, key = getattr(config, "client_certificate_file", None), getattr(config, "client_key_file", None)
        if ca is None and cert is None:
            continue
        import ssl  # only when a file is named: ~10 ms of start-up otherwise

        if ca is not None:
            try:
                ssl.create_default_context(cafile=str(ca))
            except (ssl.SSLError, OSError, ValueError) as exc:
                problems.append(Problem(_name((*group, "certificate_file"), origins), str(ca),
                                        f"holds no CA certificate the exporters can read ({_reason(exc)})",
                                        "give a PEM file, beginning -----BEGIN CERTIFICATE-----, with the CA that "
                                        "signed the collector's certificate"))
        if cert is not None and key is not None:
            try:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                context.load_cert_chain(str(cert), str(key), password=b"")  # an encrypted key: refused, no prompt
            except (ssl.SSLError, OSError, ValueError) as exc:
                names = f"{_name((*group, 'client_certificate_file'), origins)} and " \
                        f"{_name((*group, 'client_key_file'), origins)}"
                problems.append(Problem(names, None, f"not a client certificate and its key ({_reason(exc)})",
                                        "give the PEM certificate and the PEM private key made for it"))
    return problems
