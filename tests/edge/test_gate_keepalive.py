"""The download gate keeps an installer's connection busy while a wheel is judged.

A wheel not analysed yet is judged from the whole cached file, after its last byte is
in; for a big wheel that takes longer than installers wait for a read (pip: 15 s). Here
the analysis is slow for real (1,500 shared objects to read) and the client's read
timeout is short, with the trickle's interval shortened to match: a wheel that fits
arrives whole, a misfit never does, and neither transfer times out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

import proxy.edge.gate
import proxy.edge.responses
from proxy.edge.responses import HOLD, KEEP
from tests.support.proxy import ProxyThread
from tests.support.upstream import Upstream, UpstreamFile
from tests.support.wheels import NEEDS_GLIBC_2_34, WheelSpec, build_wheel, compile_shared_object

MakeProxy = Callable[..., ProxyThread]
TAG = "cp311-cp311-manylinux_2_17_x86_64"
HOST = "python=3.11,impl=cp,arch=x86_64"
OLD = f"{HOST},libc=glibc-2.17"  # the misfit's: it needs GLIBC_2.34
NEW = f"{HOST},libc=glibc-2.36"
MEMBERS = 1500  # shared objects: seconds of analysis, several read timeouts
READ_TIMEOUT = 1.0  # (every read: the response's head too, behind GATE_WAIT)


@pytest.fixture(scope="module")
def slow_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("slow")
    so = compile_shared_object(NEEDS_GLIBC_2_34, out / "needs.so", libs=["pthread"])
    data = so.read_bytes()
    files = {f"slowjudged/m{i}.so": data for i in range(MEMBERS)}
    return build_wheel(WheelSpec("slowjudged", "1.0", tag=TAG, files=files), out)


@pytest.fixture(autouse=True)
def short_waits(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The trickle's interval, and the wait before a cached wheel's bytes, well inside
    the client's read timeout (as 2 s is inside pip's 15)."""
    monkeypatch.setattr(proxy.edge.responses, "KEEPALIVE", READ_TIMEOUT / 5)
    monkeypatch.setattr(proxy.edge.gate, "GATE_WAIT", READ_TIMEOUT / 5)
    yield


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, bool]:
    """Status, the bytes received, and whether the transfer completed; a read that
    waits longer than READ_TIMEOUT fails the test (httpx.ReadTimeout)."""
    received = bytearray()
    timeout = httpx.Timeout(30, read=READ_TIMEOUT)
    with httpx.stream("GET", url, headers=headers, timeout=timeout) as response:
        try:
            for chunk in response.iter_raw():
                received += chunk
        except httpx.RemoteProtocolError:
            return response.status_code, bytes(received), False
    return response.status_code, bytes(received), True


def held(caplog: pytest.LogCaptureFixture, wheel: Path) -> bool:
    """Whether the proxy held the wheel's end back, judging it, with bytes trickling."""
    return f"holding the end of {wheel.name} until it is judged" in caplog.text


@pytest.fixture
def proxy_for(
    upstream: Upstream, make_proxy: MakeProxy, slow_wheel: Path, caplog: pytest.LogCaptureFixture
) -> tuple[ProxyThread, UpstreamFile]:
    caplog.set_level(logging.INFO, logger="hostfit.files")
    item = upstream.add("slowjudged", slow_wheel)
    return make_proxy(upstream), item


def test_a_fitting_wheel_arrives_whole_while_it_is_judged(
    proxy_for: tuple[ProxyThread, UpstreamFile], slow_wheel: Path, caplog: pytest.LogCaptureFixture
) -> None:
    proxy, _ = proxy_for
    status, body, complete = fetch(proxy.url + f"p/{NEW}/files/slowjudged/{slow_wheel.name}")
    assert (status, complete) == (200, True)
    assert body == slow_wheel.read_bytes()
    assert held(caplog, slow_wheel)


def test_a_misfit_never_arrives_whole_and_is_refused_once_judged(
    proxy_for: tuple[ProxyThread, UpstreamFile], slow_wheel: Path, caplog: pytest.LogCaptureFixture
) -> None:
    proxy, item = proxy_for
    url = proxy.url + f"p/{OLD}/files/slowjudged/{slow_wheel.name}"
    status, body, complete = fetch(url)
    assert (status, complete) == (200, False)
    assert item.size - HOLD <= len(body) <= item.size - KEEP
    assert body == slow_wheel.read_bytes()[: len(body)]
    assert held(caplog, slow_wheel)
    assert "cut short: slowjudged-1.0" in caplog.text
    assert httpx.get(url).status_code == 403


def test_a_cached_wheel_not_judged_yet_starts_at_once(
    proxy_for: tuple[ProxyThread, UpstreamFile], slow_wheel: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Cached through the universal view (not gated), then asked for by hosts while its
    analysis from the cache runs: the fitting host gets it whole, the other never."""
    proxy, item = proxy_for
    path = f"files/slowjudged/{slow_wheel.name}"
    assert httpx.get(proxy.url + f"universal/{path}").content == slow_wheel.read_bytes()
    status, body, complete = fetch(proxy.url + f"p/{OLD}/{path}")
    assert (status, complete) == (200, False)
    assert len(body) <= item.size - KEEP
    assert held(caplog, slow_wheel)
    assert fetch(proxy.url + f"p/{NEW}/{path}") == (200, slow_wheel.read_bytes(), True)


def test_a_range_of_a_wheel_not_judged_yet_streams_while_it_downloads(
    proxy_for: tuple[ProxyThread, UpstreamFile], slow_wheel: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A resumed download (pip's Range) is judged like the whole: once the whole file
    is here; meanwhile its bytes flow, its end held back."""
    proxy, _ = proxy_for
    url = proxy.url + f"p/{NEW}/files/slowjudged/{slow_wheel.name}"
    status, body, complete = fetch(url, {"Range": "bytes=1000-"})
    assert (status, complete) == (206, True)
    assert body == slow_wheel.read_bytes()[1000:]
    assert held(caplog, slow_wheel)
    assert (
        fetch(proxy.url + f"p/{OLD}/files/slowjudged/{slow_wheel.name}", {"Range": "bytes=1000-"})[
            0
        ]
        == 403
    )
