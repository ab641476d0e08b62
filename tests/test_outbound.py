"""The outbound client against real local servers: secrets stay with their origin across
redirects, netrc through httpx, TLS trust and client certificates, and proxies from the
environment (with the origin check still on the target)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest

from proxy.core.origins import TLS, Outbound, UpstreamAccess, plan_origins
from proxy.errors import UpstreamError, UpstreamTimeout
from proxy.outbound import (
    AsyncOriginTransport,
    OriginRefused,
    async_client,
    environment_proxies,
    sync_client,
    upstream_errors,
)
from proxy.retry import RetryingTransport
from tests.support.forward_proxy import ForwardProxy
from tests.support.tls import Certificates, make_certificates
from tests.support.upstream import ServerTLS, Upstream

TIMEOUT = httpx.Timeout(10)
TOKEN = "tok-3141-secret"
API_KEY = "key-2718-secret"
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def tls_upstream(certs: Certificates) -> Iterator[Upstream]:
    with Upstream(ServerTLS(certs.server_cert, certs.server_key)) as server:
        server.add_project("demo")
        yield server


@pytest.fixture
def mtls_upstream(certs: Certificates) -> Iterator[Upstream]:
    with Upstream(ServerTLS(certs.server_cert, certs.server_key, certs.client_ca)) as server:
        server.add_project("demo")
        yield server


def test_secrets_stay_with_their_origin_across_redirects(tmp_path: Path) -> None:
    with Upstream() as index, Upstream() as elsewhere:
        index.bearer_token, index.required_headers = TOKEN, {"X-Api-Key": API_KEY}
        index.add_project("demo")
        elsewhere.add_project("demo")
        index.redirects["/simple/moved/"] = elsewhere.url + "demo/"
        headers = (("Authorization", f"Bearer {TOKEN}"), ("X-Api-Key", API_KEY))
        access = UpstreamAccess(index.url, headers)
        outbound = plan_origins([access], [elsewhere.origin]).outbound  # allowed, no secrets
        with sync_client(outbound, timeout=TIMEOUT) as client:
            assert client.get(index.url + "demo/").status_code == 200
            assert client.get(index.url + "moved/").status_code == 200
        assert [r.status for r in index.requests] == [200, 302]
        assert len(elsewhere.requests) == 1
        sent = elsewhere.requests[0].headers
        assert "authorization" not in sent and "x-api-key" not in sent


async def test_a_redirect_stays_among_its_upstreams_origins() -> None:
    """Both are upstreams, so both origins are allowed; but a file of the first that
    redirects to the second must not take hostfit there, with the second's credentials."""
    with Upstream() as public, Upstream() as private:
        private.bearer_token = TOKEN
        private.add_project("demo")
        public.add_project("demo")
        public.redirects["/simple/moved/"] = private.url + "demo/"
        bearer = (("Authorization", f"Bearer {TOKEN}"),)
        outbound = plan_origins([public.url, UpstreamAccess(private.url, bearer)]).outbound
        refused = "stays among its upstream's origins"
        async with async_client(outbound, timeout=TIMEOUT) as client:
            with pytest.raises(OriginRefused, match=refused):
                await client.get(public.url + "moved/")
            assert (await client.get(private.url + "demo/")).status_code == 200
        # An analysis worker's client, given the same policy as JSON.
        worker = sync_client(Outbound.from_json(outbound.to_json()), timeout=TIMEOUT)
        with worker, pytest.raises(OriginRefused, match=refused):
            worker.get(public.url + "moved/")
        assert [r.path for r in private.requests] == ["/simple/demo/"]


async def test_netrc_gives_basic_credentials_where_nothing_else_does(tmp_path: Path) -> None:
    with Upstream() as index, Upstream() as configured:
        index.basic_auth = ("reader", "netrc-secret")
        index.add_project("demo")
        configured.bearer_token = TOKEN
        configured.add_project("demo")
        netrc = tmp_path / "netrc"
        netrc.write_text("machine 127.0.0.1 login reader password netrc-secret\n")
        bearer = (("Authorization", f"Bearer {TOKEN}"),)
        plan = plan_origins([index.url, UpstreamAccess(configured.url, bearer)], netrc=str(netrc))
        async with async_client(plan.outbound, timeout=TIMEOUT) as client:
            assert (await client.get(index.url + "demo/")).status_code == 200
            # The same host, but configured: netrc is not consulted.
            assert (await client.get(configured.url + "demo/")).status_code == 200
        assert index.requests[0].headers["authorization"].startswith("Basic ")
        assert configured.requests[0].headers["authorization"] == f"Bearer {TOKEN}"


def test_refused_origins_raise_before_anything_is_sent() -> None:
    with Upstream() as index, Upstream() as foreign:
        client = sync_client(Outbound.only(index.url), timeout=TIMEOUT)
        with client, pytest.raises(OriginRefused, match="not an upstream"):
            client.get(foreign.url)
        assert foreign.requests == []


def test_an_untrusted_certificate_is_refused_and_named(tls_upstream: Upstream) -> None:
    outbound = Outbound.only(tls_upstream.url)
    client = sync_client(outbound, timeout=TIMEOUT)
    with client, pytest.raises(httpx.ConnectError, match="not trusted") as error:
        client.get(tls_upstream.url)
    assert tls_upstream.origin in str(error.value) and "--upstream-ca" in str(error.value)
    assert isinstance(error.value.__cause__, httpx.ConnectError)


async def test_the_configured_bundle_is_trusted(
    tls_upstream: Upstream, certs: Certificates
) -> None:
    shared = plan_origins([tls_upstream.url], ca=[str(certs.ca)]).outbound
    async with async_client(shared, timeout=TIMEOUT) as client:
        assert (await client.get(tls_upstream.url + "demo/")).status_code == 200
    own = plan_origins([UpstreamAccess(tls_upstream.url, tls=TLS((str(certs.ca),)))]).outbound
    with sync_client(own, timeout=TIMEOUT) as sync:
        assert sync.get(tls_upstream.url + "demo/").status_code == 200


def test_a_client_certificate_is_presented(mtls_upstream: Upstream, certs: Certificates) -> None:
    without = plan_origins([mtls_upstream.url], ca=[str(certs.ca)]).outbound
    client = sync_client(without, timeout=TIMEOUT)
    with client, pytest.raises(httpx.TransportError, match="client certificate"):
        client.get(mtls_upstream.url + "demo/")
    tls = TLS((str(certs.ca),), str(certs.client_cert), str(certs.client_key))
    outbound = plan_origins([UpstreamAccess(mtls_upstream.url, tls=tls)]).outbound
    with sync_client(outbound, timeout=TIMEOUT) as client:
        assert client.get(mtls_upstream.url + "demo/").status_code == 200


async def test_proxies_from_the_environment_keep_tls_and_the_origin_check(
    mtls_upstream: Upstream, certs: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    tls = TLS((str(certs.ca),), str(certs.client_cert), str(certs.client_key))
    with Upstream() as plain, Upstream() as foreign, ForwardProxy() as proxy:
        plain.add_project("demo")
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        plan = plan_origins([UpstreamAccess(mtls_upstream.url, tls=tls), plain.url])
        async with async_client(plan.outbound, timeout=TIMEOUT) as client:
            assert (await client.get(mtls_upstream.url + "demo/")).status_code == 200
            assert (await client.get(plain.url + "demo/")).status_code == 200
            with pytest.raises(OriginRefused):
                await client.get(foreign.url)  # checked on the target, not the proxy
        assert proxy.seen == [
            f"CONNECT {mtls_upstream.origin.removeprefix('https://')}",
            f"GET {plain.url}demo/",
        ]
        assert foreign.requests == []
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        with sync_client(plan.outbound, timeout=TIMEOUT) as sync:
            assert sync.get(plain.url + "demo/").status_code == 200
        assert len(proxy.seen) == 2  # went direct


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"HTTPS_PROXY": "http://p:3128", "HTTP_PROXY": "p2:8080"},
        {"ALL_PROXY": "http://p:1", "NO_PROXY": "localhost,10.0.0.1,::1,.corp.example,a.test"},
        {"https_proxy": "http://user:pw@p:1", "no_proxy": "*"},
        {"HTTP_PROXY": "http://p:1", "NO_PROXY": "http://direct.test"},
    ],
)
def test_environment_proxies_are_read_as_httpx_reads_them(
    environ: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from httpx._utils import get_environment_proxies  # the reference, in a test only

    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert environment_proxies() == get_environment_proxies()


def test_tls_contexts_verify_and_load_the_system_store() -> None:
    from proxy import tls

    context = tls.context(TLS())
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    paths = ssl.get_default_verify_paths()
    if paths.cafile or paths.capath:
        assert context.cert_store_stats()["x509_ca"] > 0 or paths.capath


PAGE_URL = "http://upstream.test/simple/demo/"


class _SocketGone(httpcore.AsyncMockStream):
    """A connection reset as it was set up, as anyio meets it once asyncio has closed the
    transport: the raw socket is None, and asking for any extra attribute (httpcore asks
    for ``ssl_object``) looks up its peer name on None."""

    def __init__(self, error: AttributeError) -> None:
        super().__init__([])
        self.error = error

    def get_extra_info(self, info: str) -> Any:
        raise self.error


class _ResetAtSetup(httpcore.AsyncMockBackend):
    """httpcore's network: the first ``resets`` connections are lost as they are set up,
    the next ones answer a page."""

    def __init__(self, resets: int, error: AttributeError) -> None:
        super().__init__([b"HTTP/1.1 200 OK\r\n", b"Content-Length: 4\r\n\r\n", b"page"])
        self.resets = resets
        self.error = error

    async def connect_tcp(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        if self.resets > 0:
            self.resets -= 1
            return _SocketGone(self.error)
        return await super().connect_tcp(*args, **kwargs)


def _gone() -> AttributeError:
    return AttributeError(
        "'NoneType' object has no attribute 'getpeername'", name="getpeername", obj=None
    )


async def _no_wait(seconds: float) -> None:
    pass


def _client_over(backend: httpcore.AsyncNetworkBackend) -> httpx.AsyncClient:
    """The server's client (retries around the origin transport) over ``backend``."""
    outbound = Outbound.only(PAGE_URL)
    origins: list[AsyncOriginTransport] = []

    def wrap(transport: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
        assert isinstance(transport, AsyncOriginTransport)
        origins.append(transport)
        return RetryingTransport(transport, sleep=_no_wait)

    client = async_client(outbound, timeout=TIMEOUT, wrap=wrap)
    pool = origins[0]._pool(outbound.tls_for(PAGE_URL))
    pool._pool._network_backend = backend  # httpcore's seam for the network
    return client


async def test_a_connection_lost_while_being_set_up_is_retried() -> None:
    # Seen under CPU load: an upstream reset the connection before httpcore asked for its
    # TLS object, and the AttributeError reached the app as a 500.
    backend = _ResetAtSetup(1, _gone())
    async with _client_over(backend) as client:
        response = await client.get(PAGE_URL)
    assert response.status_code == 200 and response.content == b"page"
    assert backend.resets == 0


async def test_connections_always_lost_while_being_set_up_are_a_named_502() -> None:
    async with _client_over(_ResetAtSetup(10, _gone())) as client:
        with pytest.raises(UpstreamError) as error, upstream_errors(PAGE_URL, "fetching"):
            await client.get(PAGE_URL)
    assert not isinstance(error.value, UpstreamTimeout)
    assert "ConnectError: connection lost while being set up" in str(error.value)


async def test_other_attribute_errors_stay_loud() -> None:
    bug = AttributeError("'Stream' object has no attribute 'nope'", name="nope", obj=object())
    async with _client_over(_ResetAtSetup(1, bug)) as client:
        with pytest.raises(AttributeError, match="nope"):
            await client.get(PAGE_URL)
