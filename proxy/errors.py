"""One exception hierarchy; the edge maps it to HTTP statuses in one place.

Messages are redacted when an error is made (`proxy.core.redact`): they reach logs,
response bodies and headers, and must never carry a credential.
"""

from __future__ import annotations

from typing import Any

from proxy.core.redact import redact


class HostfitError(Exception):
    """Base of every error hostfit raises on purpose."""

    status_code = 500

    def __init__(self, *args: Any) -> None:
        super().__init__(*(redact(a) if isinstance(a, str) else a for a in args))


class BadRequest(HostfitError):
    status_code = 400


class NotFound(HostfitError):
    status_code = 404


class NotAcceptable(HostfitError):
    status_code = 406


class UpstreamError(HostfitError):
    """An upstream answered badly or not at all."""

    status_code = 502

    def __init__(self, upstream: str, detail: str) -> None:
        super().__init__(f"upstream {upstream}: {detail}")
        self.upstream = redact(upstream)
        self.detail = redact(detail)


class UpstreamTimeout(UpstreamError):
    status_code = 504


class IntegrityError(HostfitError):
    """Bytes from upstream do not match what the index promised."""

    status_code = 502


class ConfigError(HostfitError):
    """Configuration or rules that cannot be used; the server refuses to start."""
