"""The one way hostfit sends requests, in the server and in analysis workers.

`async_client` and `sync_client` build the httpx clients; each request passes:

- a request hook, run before each request is sent, every redirect hop included, and
  whatever proxy carries it (it sees the target URL, not the proxy's): a request to an
  origin the `Outbound` policy does not allow raises `OriginRefused` (an httpx error, so
  `upstream_errors` translates it with the others and names the refusal). Then the
  request's secret headers are made those of its own origin: any a previous hop carried
  are taken off (httpx drops only ``Authorization`` when a redirect leaves the origin),
  the origin's configured headers are set, and an origin with none gets Basic credentials
  from the netrc file through httpx's own `httpx.NetRCAuth`, when it has an entry.
- a transport that connects with the origin's TLS settings (`proxy.tls`: the system store,
  extra bundles, a client certificate) and says plainly when a certificate is not trusted.
- proxies from the environment, as httpx reads them (``HTTP_PROXY``, ``HTTPS_PROXY``,
  ``ALL_PROXY``, ``NO_PROXY``, upper or lower case): `environment_proxies` builds the same
  mounts httpx's ``trust_env`` would, so that a proxied connection keeps its origin's TLS.

What goes wrong on the way is translated here too, once: `upstream_errors` turns the
httpx errors raised while talking to an upstream into `UpstreamTimeout` or
`UpstreamError` (504 and 502), the way httpx maps its transport's errors at its boundary.
Beneath, the async transport names a connection reset that the network library meets as an
AttributeError (its socket gone under it, `socket_gone`) as the `httpx.ConnectError` it is,
so that it is retried and translated like any other.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator, Mapping
from types import TracebackType
from urllib.request import getproxies

import httpx

from proxy import tls
from proxy.core.origins import TLS, Outbound, origin_of
from proxy.errors import UpstreamError, UpstreamTimeout


class OriginRefused(httpx.RequestError):
    """A request (or a redirect) to an origin hostfit may not contact."""


# Asked with every file request: a file as upstream stores it, whose length, ranges and
# sha256 are the stored bytes'. A coding made on the way (a server or CDN that gzips what
# it sends) would make Content-Length and every range the coded bytes'.
AS_STORED = {"Accept-Encoding": "identity"}
# Asked with pages and metadata: the one coding `proxy.edge.compression` decodes, from the
# bytes as sent (`received`); httpx's decoder takes a gzip body cut short for a shorter one.
GZIP_OR_NOTHING = {"Accept-Encoding": "gzip"}


async def received(response: httpx.Response, limit: int, upstream: str, doing: str) -> bytes:
    """A streamed answer's body as sent, in its content coding: an `UpstreamError` as soon
    as it grows past ``limit`` bytes."""
    chunks, size = [], 0
    async for chunk in response.aiter_raw():
        size += len(chunk)
        if size > limit:
            raise UpstreamError(upstream, f"{doing}: more than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def upstream_error(upstream: str, doing: str, exc: httpx.HTTPError) -> UpstreamError:
    """The hostfit error for an httpx error met while ``doing`` something with ``upstream``
    (``"fetching <url>"``): `UpstreamTimeout` for a timeout, else `UpstreamError`."""
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeout(upstream, f"{doing}: timed out ({type(exc).__name__})")
    return UpstreamError(upstream, f"{doing}: {type(exc).__name__}: {exc}")


@contextlib.contextmanager
def upstream_errors(upstream: str, doing: str) -> Iterator[None]:
    """Raise httpx errors from inside as `upstream_error` makes them."""
    try:
        yield
    except httpx.HTTPError as exc:
        # Not chained: the httpx error's text is in the message, redacted; its own may
        # carry a URL with credentials into a logged traceback.
        raise upstream_error(upstream, doing, exc) from None


# The request extension holding the origin where a request (and its redirects) began.
_STARTED_AT = "hostfit.started_at"


def check(outbound: Outbound, request: httpx.Request, netrc: httpx.NetRCAuth | None) -> None:
    url = str(request.url)
    start = request.extensions.get(_STARTED_AT)
    why = outbound.refusal(url) if start is None else outbound.hop_refusal(start, url)
    if why is not None:
        raise OriginRefused(why, request=request)
    if start is None:
        # A new dict, not the caller's: httpx hands the request's own on to each redirect.
        request.extensions = {**request.extensions, _STARTED_AT: origin_of(url)}
    for name in outbound.secret_names:
        request.headers.pop(name, None)
    configured = outbound.headers_for(url)
    for name, value in configured:
        request.headers[name] = value
    if not configured and netrc is not None:
        flow = netrc.sync_auth_flow(request)  # sets Authorization where netrc has the host
        next(flow)
        flow.close()


def _netrc(outbound: Outbound) -> httpx.NetRCAuth | None:
    return httpx.NetRCAuth(outbound.netrc) if outbound.netrc else None


def request_hooks(outbound: Outbound) -> dict[str, list[Callable[[httpx.Request], None]]]:
    """``event_hooks`` for an `httpx.Client`."""
    netrc = _netrc(outbound)
    return {"request": [lambda request: check(outbound, request, netrc)]}


def async_request_hooks(
    outbound: Outbound,
) -> dict[str, list[Callable[[httpx.Request], Awaitable[None]]]]:
    """``event_hooks`` for an `httpx.AsyncClient`."""
    netrc = _netrc(outbound)

    async def hook(request: httpx.Request) -> None:
        check(outbound, request, netrc)

    return {"request": [hook]}


def environment_proxies() -> dict[str, str | None]:
    """httpx's mounts for the proxy environment variables: pattern -> proxy URL, or None
    for a direct connection (``NO_PROXY``). The rules are httpx's ``trust_env`` ones."""
    found = getproxies()
    mounts: dict[str, str | None] = {}
    for scheme in ("http", "https", "all"):
        if found.get(scheme):
            proxy = found[scheme]
            mounts[f"{scheme}://"] = proxy if "://" in proxy else f"http://{proxy}"
    for host in (h.strip() for h in found.get("no", "").split(",")):
        if host == "*":
            return {}
        if not host:
            continue
        if "://" in host:
            mounts[host] = None
        elif _is_ip(host, 4) or host.lower() == "localhost":
            mounts[f"all://{host}"] = None
        elif _is_ip(host, 6):
            mounts[f"all://[{host}]"] = None
        else:
            mounts[f"all://*{host}"] = None
    return mounts


def _is_ip(host: str, version: int) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(host.strip("[]")).version == version
    except ValueError:
        return False


class _Routes:
    """One connection pool per TLS setting, all through the same proxy (or none)."""

    def __init__(self, outbound: Outbound | None, proxy: str | None, limits: httpx.Limits) -> None:
        self.outbound = outbound
        self.proxy = proxy
        self.limits = limits

    def tls_for(self, request: httpx.Request) -> TLS:
        if self.outbound is None:
            return TLS()
        return self.outbound.tls_for(str(request.url))

    def proxy_for(self) -> httpx.Proxy | None:
        if self.proxy is None:
            return None
        if not self.proxy.startswith("https:"):
            return httpx.Proxy(self.proxy)
        return httpx.Proxy(self.proxy, ssl_context=tls.context(self._shared()))

    def _shared(self) -> TLS:
        return TLS(self.outbound.ca) if self.outbound is not None else TLS()

    def explained(self, exc: httpx.TransportError, request: httpx.Request, setting: TLS) -> None:
        origin = origin_of(str(request.url))
        why = tls.explain(
            exc,
            str(origin) if origin else str(request.url),
            https=request.url.scheme == "https",
            has_cert=setting.cert is not None,
        )
        if why is not None:
            raise type(exc)(why, request=request) from exc


def socket_gone(exc: AttributeError) -> bool:
    """An attribute looked up on None: what the network library raises when it reads the
    socket of a connection closed under it. Any other AttributeError is a bug, left loud."""
    return exc.obj is None and exc.name is not None


class AsyncOriginTransport(httpx.AsyncBaseTransport):
    def __init__(self, routes: _Routes) -> None:
        self.routes = routes
        self._pools: dict[TLS, httpx.AsyncHTTPTransport] = {}

    def _pool(self, setting: TLS) -> httpx.AsyncHTTPTransport:
        pool = self._pools.get(setting)
        if pool is None:
            pool = self._pools[setting] = httpx.AsyncHTTPTransport(
                verify=tls.context(setting),
                limits=self.routes.limits,
                proxy=self.routes.proxy_for(),
                trust_env=False,
            )
        return pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        setting = self.routes.tls_for(request)
        try:
            return await self._pool(setting).handle_async_request(request)
        except (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError) as exc:
            self.routes.explained(exc, request, setting)
            raise
        except AttributeError as exc:
            if not socket_gone(exc):
                raise
            # A connection reset while httpcore sets it up: asyncio has closed the
            # transport, whose socket is then None, and anyio's address lookup (for
            # ``ssl_object``) reads it unguarded. Nothing was sent: a failed connection.
            raise httpx.ConnectError(
                f"connection lost while being set up ({exc})", request=request
            ) from exc

    async def aclose(self) -> None:
        for pool in self._pools.values():
            await pool.aclose()


class OriginTransport(httpx.BaseTransport):
    def __init__(self, routes: _Routes) -> None:
        self.routes = routes
        self._pools: dict[TLS, httpx.HTTPTransport] = {}

    def _pool(self, setting: TLS) -> httpx.HTTPTransport:
        pool = self._pools.get(setting)
        if pool is None:
            pool = self._pools[setting] = httpx.HTTPTransport(
                verify=tls.context(setting),
                limits=self.routes.limits,
                proxy=self.routes.proxy_for(),
                trust_env=False,
            )
        return pool

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        setting = self.routes.tls_for(request)
        try:
            return self._pool(setting).handle_request(request)
        except (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError) as exc:
            self.routes.explained(exc, request, setting)
            raise

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        self.close()


def _routes(
    outbound: Outbound | None, limits: httpx.Limits
) -> tuple[_Routes, dict[str, _Routes | None]]:
    direct = _Routes(outbound, None, limits)
    mounts = {
        pattern: None if proxy is None else _Routes(outbound, proxy, limits)
        for pattern, proxy in environment_proxies().items()
    }
    return direct, mounts


def async_client(
    outbound: Outbound,
    *,
    timeout: httpx.Timeout,
    headers: Mapping[str, str] | None = None,
    limits: httpx.Limits | None = None,
    wrap: Callable[[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport] = lambda t: t,
) -> httpx.AsyncClient:
    """The server's client: redirects followed, every hop checked (`check`); ``wrap``
    goes around each transport (retries)."""
    direct, mounts = _routes(outbound, limits or httpx.Limits(max_connections=100))
    return httpx.AsyncClient(
        timeout=timeout,
        follow_redirects=True,
        headers=headers,
        event_hooks=async_request_hooks(outbound),
        transport=wrap(AsyncOriginTransport(direct)),
        mounts={p: None if r is None else wrap(AsyncOriginTransport(r)) for p, r in mounts.items()},
        trust_env=False,  # the environment's proxies are in ``mounts``, read as httpx would
    )


def sync_client(
    outbound: Outbound | None,
    *,
    timeout: httpx.Timeout,
    wrap: Callable[[httpx.BaseTransport], httpx.BaseTransport] = lambda t: t,
) -> httpx.Client:
    """An analysis worker's client; without a policy (``hostfit inspect URL``) any origin."""
    direct, mounts = _routes(outbound, httpx.Limits(max_connections=10))
    return httpx.Client(
        timeout=timeout,
        follow_redirects=True,
        event_hooks=request_hooks(outbound) if outbound is not None else None,
        transport=wrap(OriginTransport(direct)),
        mounts={p: None if r is None else wrap(OriginTransport(r)) for p, r in mounts.items()},
        trust_env=False,
    )


def validate(outbound: Outbound) -> None:
    """Refuse at start-up TLS files that cannot be loaded and a netrc file that cannot be read."""
    tls.check(TLS(outbound.ca))
    for setting in outbound.tls.values():
        tls.check(TLS(outbound.ca + setting.ca, setting.cert, setting.key))
    if outbound.netrc:
        import netrc

        from proxy.errors import ConfigError

        try:
            netrc.netrc(outbound.netrc)
        except netrc.NetrcParseError as exc:
            raise ConfigError(
                f"netrc file {outbound.netrc}: parse error at line {exc.lineno}"
            ) from None
        except OSError as exc:
            raise ConfigError(f"netrc file {outbound.netrc}: {exc.strerror}") from None
