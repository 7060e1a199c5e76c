"""The front door's TLS files (``gateway.tls-cert`` / ``gateway.tls-key``), checked before use."""

from __future__ import annotations

import ssl
from pathlib import Path


def tls_problem(cert: str | None, key: str | None) -> str | None:
    """Why the TLS files cannot be used (both or neither; a readable PEM certificate chain
    and its private key), else None."""
    if not cert and not key:
        return None
    if not cert or not key:
        return ("TLS needs both gateway.tls-cert and gateway.tls-key (only "
                + ("tls-cert" if cert else "tls-key") + " is set)")
    for what, path in (("tls-cert", cert), ("tls-key", key)):
        try:
            Path(path).read_bytes()
        except OSError as exc:
            return f"cannot read gateway.{what} {path} ({exc.strerror or type(exc).__name__})"
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (ssl.SSLError, ValueError) as exc:
        return f"gateway.tls-cert / tls-key are not a PEM certificate and its private key ({exc})"
    return None
