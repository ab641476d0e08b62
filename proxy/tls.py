"""TLS for outbound requests: the system's trust store, plus bundles the operator names.

Trust is what pip's is on the same machine: `ssl.create_default_context` loads OpenSSL's
default verify paths, which on Linux distributions is the system store that
``update-ca-certificates`` (Debian, Ubuntu, Alpine) or ``update-ca-trust`` (RHEL) keeps,
and which honours ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``; on Windows it loads the system
store too. Where OpenSSL knows no store at all (a Python built without one, as on macOS),
certifi's bundle is loaded instead (httpx depends on certifi, so it is always there).
Extra bundles (``--upstream-ca``, an upstream's ``ca``) are added to that trust, never
substituted for it, and a client certificate is loaded where one is configured.

Nothing here turns verification off: every context verifies the chain and the host name.
A context is built once per distinct setting in a process and shared by its connections.
"""

from __future__ import annotations

import os
import ssl
from functools import cache

import certifi

from proxy.core.origins import TLS
from proxy.errors import ConfigError


def _system_store_missing() -> bool:
    paths = ssl.get_default_verify_paths()
    has_file = paths.cafile is not None and os.path.isfile(paths.cafile)
    has_dir = paths.capath is not None and os.path.isdir(paths.capath)
    return not (has_file or has_dir)


@cache
def context(tls: TLS) -> ssl.SSLContext:
    """A verifying client context: the system store, ``tls.ca`` added, its client cert loaded.

    A file that cannot be used raises `ConfigError` naming it (never its contents).
    """
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if _system_store_missing():
        ctx.load_verify_locations(cafile=certifi.where())
    for bundle in tls.ca:
        try:
            ctx.load_verify_locations(cafile=bundle)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"CA bundle {bundle}: {_reason(exc)}") from None
    if tls.cert is not None:
        try:
            ctx.load_cert_chain(tls.cert, tls.key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"client certificate {tls.cert}: {_reason(exc)}") from None
    return ctx


def _reason(exc: OSError | ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLError):
        return f"not usable ({exc.reason or exc.strerror or 'bad PEM'})"
    return exc.strerror or type(exc).__name__


def check(tls: TLS) -> None:
    """Refuse at start-up a bundle or client certificate that cannot be loaded."""
    context(tls)


def explain(exc: BaseException, origin: str, *, https: bool, has_cert: bool) -> str | None:
    """What a failure while talking to ``origin`` means for the operator, when TLS may
    be why; else None."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            why = cause.verify_message or "verification failed"
            return (
                f"TLS: the certificate of {origin} is not trusted ({why}); add the CA that "
                "issued it with --upstream-ca FILE or the upstream's ca = FILE"
            )
        if "CERTIFICATE_REQUIRED" in str(cause):
            return f"TLS: {origin} requires a client certificate (the upstream's client_cert)"
        cause = cause.__cause__ or cause.__context__
    if https and not has_cert and "disconnected" in str(exc):
        # With TLS 1.3 a server that wants a client certificate checks it after the
        # handshake and hangs up, often before its alert can be read.
        return (
            f"{exc} ({origin} hung up after the TLS handshake: if it requires a client "
            "certificate, give the upstream's client_cert)"
        )
    return None
