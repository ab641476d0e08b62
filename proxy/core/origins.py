"""Which origins hostfit may contact: only configured ones (no server-side request forgery).

An upstream page is input from the network. It may link a file on another host or
port, on ``file:``, on a link-local or cloud metadata address, or redirect there;
hostfit fetches none of them. It contacts each upstream's origin (scheme, host, port),
and for files the upstream's file origins: its own origin, the origins the operator
adds (``--file-origin``) and, for pip's own default index only, the host that index
serves its files from (asked of pip at start-up, never written down).

- `plan_origins` turns the settings into that plan once: upstream URLs without their
  credentials, each upstream's file origins, and the `Outbound` policy every request
  is checked against (every redirect hop too) with what each origin is sent: headers
  (``Authorization`` from userinfo, a password or a token; extra headers) and TLS
  (extra CA bundles, a client certificate). An upstream's own settings apply to its
  origin and to the file origins it lists, and nowhere else.
- `screen` splits a page's files into those it may link and those it may not, with
  the reason, so a link elsewhere leaves the page instead of being fetched.

A link-local or cloud metadata address is never a file origin, so a link or redirect
there is refused unless an upstream itself was configured on it.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter, methodcaller
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


Headers = tuple[tuple[str, str], ...]  # (name, value) pairs, names as configured


def basic(user: str, password: str) -> str:
    """An ``Authorization`` value for HTTP Basic."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@dataclass(frozen=True, order=True, slots=True)
class TLS:
    """How to connect to an https origin beyond the default trust (paths, read by the edge)."""

    ca: tuple[str, ...] = ()  # extra CA bundles, trusted besides the system store
    cert: str | None = None  # client certificate (PEM), presented when the server asks
    key: str | None = None  # its private key, when not in ``cert``

    def __bool__(self) -> bool:
        return bool(self.ca or self.cert)


@dataclass(frozen=True, slots=True)
class Outbound:
    """Every request hostfit sends: where it may go, and what each origin is sent.

    ``headers`` are secrets (credentials, API keys): set on requests to their own origin
    only, and taken off any request to another (a redirect hop carries its first request's
    headers). ``ca`` is trusted for every origin, ``tls`` adds to it per origin. ``netrc``:
    a file whose entries give Basic credentials to origins with no ``headers``.
    """

    allowed: frozenset[Origin]
    headers: Mapping[Origin, Headers] = field(default_factory=dict, repr=False)
    tls: Mapping[Origin, TLS] = field(default_factory=dict)
    ca: tuple[str, ...] = ()
    netrc: str | None = None
    # Where a request that began at an origin may be redirected: the origins of the
    # upstreams that origin is one of (an origin no entry names: anywhere allowed).
    reach: Mapping[Origin, frozenset[Origin]] = field(default_factory=dict)

    @classmethod
    def only(cls, url: str) -> Outbound:
        """Nothing but the origin of ``url``, without credentials."""
        origin = origin_of(url)
        return cls(frozenset() if origin is None else frozenset({origin}))

    def refusal(self, url: str) -> str | None:
        return refusal(url, self.allowed)

    def hop_refusal(self, start: Origin, url: str) -> str | None:
        """Why a redirect from a request that began at ``start`` may not go to ``url``:
        an upstream's redirects stay among its own origins, so one upstream's file cannot
        send hostfit to another's origin (with that one's credentials)."""
        why = self.refusal(url)
        if why is not None:
            return why
        reach, origin = self.reach.get(start), origin_of(url)
        if reach is None or origin in reach:
            return None
        return f"refused {origin}: a redirect from {start} stays among its upstream's origins"

    def headers_for(self, url: str) -> Headers:
        origin = origin_of(url)
        return self.headers.get(origin, ()) if origin is not None else ()

    def authorization(self, url: str) -> str | None:
        """The ``Authorization`` header value for ``url``'s origin, if it has credentials."""
        for name, value in self.headers_for(url):
            if name.lower() == "authorization":
                return value
        return None

    @property
    def secret_names(self) -> frozenset[str]:
        """Every header name (lower case) that carries a secret to some origin."""
        names = {"authorization"}
        names.update(name.lower() for pairs in self.headers.values() for name, _ in pairs)
        return frozenset(names)

    def tls_for(self, url: str) -> TLS:
        """The TLS settings for ``url``'s origin: the shared bundles, then its own."""
        origin = origin_of(url)
        own = self.tls.get(origin, TLS()) if origin is not None else TLS()
        return TLS(self.ca + own.ca, own.cert, own.key)

    def to_json(self) -> dict[str, Any]:
        """For an analysis worker: it sends its own requests (and redirects) the same way."""
        return {
            "allowed": [_origin_json(o) for o in sorted(self.allowed)],
            "headers": [[*_origin_json(o), [list(p) for p in h]] for o, h in self.headers.items()],
            "tls": [[*_origin_json(o), list(t.ca), t.cert, t.key] for o, t in self.tls.items()],
            "ca": list(self.ca),
            "netrc": self.netrc,
            "reach": [[*_origin_json(o), [_origin_json(r) for r in sorted(to)]]
                      for o, to in self.reach.items()],
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Outbound:
        allowed = frozenset(Origin(str(s), str(h), int(p)) for s, h, p in data["allowed"])
        headers = {
            Origin(str(s), str(h), int(p)): tuple((str(n), str(v)) for n, v in pairs)
            for s, h, p, pairs in data.get("headers", ())
        }
        tls = {
            Origin(str(s), str(h), int(p)): TLS(tuple(map(str, ca)), cert, key)
            for s, h, p, ca, cert, key in data.get("tls", ())
        }
        netrc = data.get("netrc")
        reach = {
            Origin(str(s), str(h), int(p)): frozenset(
                Origin(str(a), str(b), int(c)) for a, b, c in to
            )
            for s, h, p, to in data.get("reach", ())
        }
        return cls(allowed, headers, tls, tuple(map(str, data.get("ca", ()))), netrc, reach)


def _origin_json(origin: Origin) -> list[Any]:
    return [origin.scheme, origin.host, origin.port]


@dataclass(frozen=True, slots=True)
class UpstreamAccess:
    """One upstream and what its requests carry: for its origin and the file origins it lists.

    ``url`` may hold ``user:password@`` (Basic); ``headers`` are sent as they are.
    """

    url: str
    headers: Headers = field(default=(), repr=False)
    tls: TLS = TLS()
    file_origins: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class UpstreamOrigins:
    url: str  # the upstream's URL without credentials
    files: frozenset[Origin]  # where its pages may link files


@dataclass(frozen=True, slots=True)
class OriginPlan:
    upstreams: tuple[UpstreamOrigins, ...]
    outbound: Outbound


def plan_origins(
    upstreams: Sequence[str | UpstreamAccess],
    file_origins: Sequence[str] = (),
    pip_default: tuple[str, str] | None = None,
    *,
    ca: Sequence[str] = (),
    netrc: str | None = None,
) -> OriginPlan:
    """``pip_default``: pip's default index URL and the host name it serves files from.

    ``file_origins`` are every upstream's (each with its own userinfo credentials, if
    any); an `UpstreamAccess`'s own file origins are only its, and get its headers and TLS.
    """
    headers: dict[Origin, Headers] = {}
    tls: dict[Origin, TLS] = {}

    def add(origin: Origin, sent: Headers, secure: TLS) -> None:
        if sent:
            if headers.get(origin, sent) != sent:
                raise ConfigError(f"different credentials are configured for {origin}")
            headers[origin] = sent
        if secure:
            if tls.get(origin, secure) != secure:
                raise ConfigError(f"different TLS settings are configured for {origin}")
            tls[origin] = secure

    extra = set()
    for given in file_origins:
        url, pair = split_credentials(given)
        operator_origin = file_origin(url)
        add(operator_origin, _userinfo_headers(pair), TLS())
        extra.add(operator_origin)
    default_index = _index_key(pip_default[0]) if pip_default else None
    planned = []
    for entry in upstreams:
        access = entry if isinstance(entry, UpstreamAccess) else UpstreamAccess(entry)
        url, pair = split_credentials(access.url)
        origin = origin_of(url)
        if origin is None:
            raise ConfigError(f"upstream {access.url!r} is not an http(s) URL")  # redacted
        if pair is not None and any(n.lower() == "authorization" for n, _ in access.headers):
            raise ConfigError(f"upstream {redact(access.url)}: credentials given twice")
        sent = _userinfo_headers(pair) + access.headers
        own = {origin}
        for given in access.file_origins:
            own.add(file_origin(given))
        for each in sorted(own):
            add(each, sent, access.tls if each.scheme == "https" else TLS())
        files = {*own, *extra}
        pip_files = origin_of(f"{origin.scheme}://{pip_default[1]}") if pip_default else None
        if pip_files is not None and _index_key(url) == default_index:
            files.add(pip_files)
        planned.append(UpstreamOrigins(url, frozenset(files)))
    allowed = frozenset(o for u in planned for o in u.files)
    reach = {o: frozenset().union(*(u.files for u in planned if o in u.files)) for o in allowed}
    outbound = Outbound(allowed, headers, tls, tuple(ca), netrc, reach)
    return OriginPlan(tuple(planned), outbound)


def _userinfo_headers(pair: tuple[str, str] | None) -> Headers:
    return () if pair is None else (("Authorization", basic(*pair)),)


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


# "scheme://authority/" of a plain URL: all urlsplit reads for the origin.
_AUTHORITY = re.compile(r"https?://[A-Za-z0-9\-._~%!$&'()*+,;=:@]+/")


def screen(files: Sequence[File], allowed: frozenset[Origin]) -> Screened:
    return _on_one_origin(files, allowed) or _screen_each(files, allowed)


def _on_one_origin(files: Sequence[File], allowed: frozenset[Origin]) -> Screened | None:
    """Every file kept, when all of them link one allowed origin (most pages): the test
    `_screen_each` makes of each, made at once, in C. None when it cannot say."""
    if not files:
        return Screened((), ())
    first = files[0].url
    authority = _AUTHORITY.match(first)
    if authority is None or refusal(first, allowed) is not None:
        return None
    # Ends with the "/" that ends the authority: a URL starting with it has the same one.
    if not all(map(methodcaller("startswith", authority.group()), map(_URL, files))):
        return None
    return Screened(tuple(files), ())


_URL = attrgetter("url")


def _screen_each(files: Iterable[File], allowed: frozenset[Origin]) -> Screened:
    kept: list[File] = []
    withheld: list[tuple[File, str]] = []
    # A big page links thousands of files on one or two origins: each is judged once.
    seen_allowed: set[str] = set()
    for f in files:
        authority = _AUTHORITY.match(f.url)
        if authority is not None and authority.group() in seen_allowed:
            kept.append(f)
            continue
        why = refusal(f.url, allowed)
        if why is None:
            kept.append(f)
            if authority is not None:
                seen_allowed.add(authority.group())
        else:
            withheld.append((f, why))
    return Screened(tuple(kept), tuple(withheld))
