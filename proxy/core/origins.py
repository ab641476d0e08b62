"""Which origins hostfit may contact: only configured ones (no server-side request forgery).

An upstream page is input from the network. It may link a file on another host or
port, on ``file:``, on a link-local or cloud metadata address, or redirect there;
hostfit fetches none of them. It contacts each upstream's origin (scheme, host, port),
and for files the upstream's file origins: its own origin, the origins the operator
adds (``--file-origin``) and, for pip's own default index only, the host that index
serves its files from (asked of pip at start-up, never written down).

- `plan_origins` turns the settings into that plan once: upstream URLs without their
  credentials, each upstream's file origins, and the `Outbound` policy every request
  is checked against (every redirect hop too) with the credentials for each origin.
- `screen` splits a page's files into those it may link and those it may not, with
  the reason, so a link elsewhere leaves the page instead of being fetched.

A link-local or cloud metadata address is never a file origin, so a link or redirect
there is refused unless an upstream itself was configured on it.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from proxy.core.models import File
from proxy.core.redact import redact, split_credentials
from proxy.errors import ConfigError

DEFAULT_PORTS = {"http": 80, "https": 443}
# Instance metadata services reachable by name or by an address outside 169.254.0.0/16.
METADATA_HOSTS = frozenset(
    {"metadata.google.internal", "metadata.goog", "fd00:ec2::254", "100.100.100.200"}
)


@dataclass(frozen=True, order=True, slots=True)
class Origin:
    scheme: str
    host: str  # lower case, IPv6 without brackets
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if DEFAULT_PORTS.get(self.scheme) == self.port else f":{self.port}"
        return f"{self.scheme}://{host}{port}"


def origin_of(url: str) -> Origin | None:
    """The origin of an http(s) URL; None for any other scheme or a malformed one."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return Origin(scheme, parts.hostname.lower().rstrip("."), port or DEFAULT_PORTS[scheme])


def forbidden(origin: Origin) -> bool:
    """A link-local or cloud metadata address: never a file origin, and never contacted
    unless an upstream itself was configured on it."""
    if origin.host in METADATA_HOSTS:
        return True
    try:
        address = ipaddress.ip_address(origin.host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_link_local or str(address) in METADATA_HOSTS


def refusal(url: str, allowed: frozenset[Origin]) -> str | None:
    """Why ``url`` may not be fetched, or None when its origin is allowed."""
    origin = origin_of(url)
    if origin is None:
        scheme = urlsplit(url).scheme or "(none)"
        return f"refused {redact(url)}: scheme {scheme!r} is never fetched, only http(s)"
    if origin in allowed:
        return None
    if forbidden(origin):
        return f"refused {origin}: a link-local or cloud metadata address is never fetched"
    return f"refused {origin}: not an upstream or allowed file origin (see --file-origin)"


@dataclass(frozen=True, slots=True)
class Outbound:
    """Every request hostfit sends: where it may go, and the credentials of each origin."""

    allowed: frozenset[Origin]
    credentials: Mapping[Origin, tuple[str, str]] = field(default_factory=dict, repr=False)

    @classmethod
    def only(cls, url: str) -> Outbound:
        """Nothing but the origin of ``url``, without credentials."""
        origin = origin_of(url)
        return cls(frozenset() if origin is None else frozenset({origin}))

    def refusal(self, url: str) -> str | None:
        return refusal(url, self.allowed)

    def authorization(self, url: str) -> str | None:
        """The ``Authorization`` header value for ``url``'s origin, if it has credentials."""
        origin = origin_of(url)
        pair = self.credentials.get(origin) if origin is not None else None
        if pair is None:
            return None
        token = base64.b64encode(f"{pair[0]}:{pair[1]}".encode()).decode()
        return f"Basic {token}"

    def to_json(self) -> dict[str, Any]:
        """For an analysis worker: it checks its own requests (and redirects) the same way."""
        return {
            "allowed": [[o.scheme, o.host, o.port] for o in sorted(self.allowed)],
            "credentials": [
                [o.scheme, o.host, o.port, *pair] for o, pair in self.credentials.items()
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Outbound:
        allowed = frozenset(Origin(str(s), str(h), int(p)) for s, h, p in data["allowed"])
        credentials = {
            Origin(str(s), str(h), int(p)): (str(u), str(w))
            for s, h, p, u, w in data["credentials"]
        }
        return cls(allowed, credentials)


@dataclass(frozen=True, slots=True)
class UpstreamOrigins:
    url: str  # the upstream's URL without credentials
    files: frozenset[Origin]  # where its pages may link files


@dataclass(frozen=True, slots=True)
class OriginPlan:
    upstreams: tuple[UpstreamOrigins, ...]
    outbound: Outbound


def plan_origins(
    upstreams: Sequence[str],
    file_origins: Sequence[str] = (),
    pip_default: tuple[str, str] | None = None,
) -> OriginPlan:
    """``pip_default``: pip's default index URL and the host name it serves files from."""
    credentials: dict[Origin, tuple[str, str]] = {}

    def add(origin: Origin, pair: tuple[str, str] | None) -> None:
        if pair is None:
            return
        if credentials.get(origin, pair) != pair:
            raise ConfigError(f"different credentials are configured for {origin}")
        credentials[origin] = pair

    extra = set()
    for given in file_origins:
        url, pair = split_credentials(given)
        operator_origin = file_origin(url)
        add(operator_origin, pair)
        extra.add(operator_origin)
    default_index = _index_key(pip_default[0]) if pip_default else None
    planned = []
    for given in upstreams:
        url, pair = split_credentials(given)
        origin = origin_of(url)
        if origin is None:
            raise ConfigError(f"upstream {given!r} is not an http(s) URL")  # redacted
        add(origin, pair)
        files = {origin, *extra}
        pip_files = origin_of(f"{origin.scheme}://{pip_default[1]}") if pip_default else None
        if pip_files is not None and _index_key(url) == default_index:
            files.add(pip_files)
        planned.append(UpstreamOrigins(url, frozenset(files)))
    allowed = frozenset(o for u in planned for o in u.files)
    return OriginPlan(tuple(planned), Outbound(allowed, credentials))


def file_origin(url: str) -> Origin:
    """An origin the operator allows files from; a ConfigError names a bad one."""
    origin = origin_of(url)
    if origin is None:
        raise ConfigError(f"file origin {url!r} is not an http(s) URL")
    if forbidden(origin):
        raise ConfigError(f"file origin {origin} is a link-local or cloud metadata address")
    return origin


def _index_key(url: str) -> tuple[Origin | None, str]:
    return origin_of(url), urlsplit(url).path.rstrip("/")


@dataclass(frozen=True, slots=True)
class Screened:
    files: tuple[File, ...]  # those the page may link
    withheld: tuple[tuple[File, str], ...]  # the others, each with why


def screen(files: Iterable[File], allowed: frozenset[Origin]) -> Screened:
    kept: list[File] = []
    withheld: list[tuple[File, str]] = []
    for f in files:
        why = refusal(f.url, allowed)
        if why is None:
            kept.append(f)
        else:
            withheld.append((f, why))
    return Screened(tuple(kept), tuple(withheld))
