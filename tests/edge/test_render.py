"""Renderings compress on demand, once, under an ETag of their own, and the cache
counts every byte it holds."""

from __future__ import annotations

import random
import threading
import zlib
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from proxy.edge import compression, offload, render
from proxy.edge.render import _GZIP_SUFFIX as GZIP_SUFFIX
from proxy.edge.render import RenderCache, Rendered
from tests.support.upstream import Upstream, UpstreamFile

JSON = "application/vnd.pypi.simple.v1+json"


def page_like(size: int) -> bytes:
    rng = random.Random(size)
    words = [f'{{"filename":"demo-{rng.random()}.whl","url":"../../files/x"}}' for _ in range(10)]
    out = b""
    while len(out) < size:
        out += rng.choice(words).encode()
    return out


@pytest.mark.parametrize("size", [0, 1000, offload.BIG + 1])
def test_a_page_is_compressed_once_into_one_gzip_member(size: int) -> None:
    for body in (page_like(size), random.Random(size).randbytes(size)):
        rendered = Rendered(body)
        assert rendered.size == len(body)  # nothing compressed until a client asks
        data, tag = rendered.gzip()
        assert tag == rendered.etag[:-1] + GZIP_SUFFIX
        assert rendered.gzip() == (data, tag) and rendered.gzip()[0] is data
        assert rendered.size == len(body) + len(data)
        # Read as a client reads it, a few bytes at a time: one member, nothing after it.
        reader = zlib.decompressobj(16 + zlib.MAX_WBITS)
        read = b"".join(reader.decompress(data[i : i + 997]) for i in range(0, len(data), 997))
        assert read + reader.flush() == body
        assert reader.eof and reader.unused_data == b""
        assert httpx.Response(200, content=data, headers={"content-encoding": "gzip"}).content == (
            body
        )
        # The same bytes for the same body, as the ETag says.
        assert Rendered(body).gzip() == (data, tag)


async def test_a_big_pages_gzip_is_made_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made_on: list[int] = []
    compress = compression.gzipped

    def watched(data: bytes) -> bytes:
        made_on.append(threading.get_ident())
        return compress(data)

    monkeypatch.setattr(compression, "gzipped", watched)
    loop_thread = threading.get_ident()
    small, big = Rendered(page_like(1000)), Rendered(page_like(offload.BIG + 1))
    assert await small.gzip_off_loop() == small.gzip()
    assert made_on == [loop_thread]  # a thread hop would cost more than the compression
    data, tag = await big.gzip_off_loop()
    assert len(made_on) == 2 and made_on[1] != loop_thread
    assert (data, tag) == (compress(big.body), big.etag[:-1] + GZIP_SUFFIX)


def test_requests_that_ask_together_get_one_gzip(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []
    compress, entered, go = compression.gzipped, threading.Event(), threading.Event()

    def slow(data: bytes) -> bytes:
        calls.append(data)
        entered.set()
        go.wait(timeout=30)
        return compress(data)

    monkeypatch.setattr(compression, "gzipped", slow)
    rendered = Rendered(page_like(5000))
    results: list[tuple[bytes, str]] = []
    first = threading.Thread(target=lambda: results.append(rendered.gzip()))
    first.start()
    assert entered.wait(timeout=30)
    second = threading.Thread(target=lambda: results.append(rendered.gzip()))
    second.start()
    second.join(timeout=0.5)  # it waits for the first: without the lock it would not
    assert second.is_alive()
    go.set()
    first.join(timeout=30)
    second.join(timeout=30)
    assert len(calls) == 1 and len(results) == 2 and results[0] is results[1]


def test_the_cache_counts_encodings_made_later_and_forgets_evicted_ones() -> None:
    big, small = page_like(offload.BIG + 10), page_like(2000)
    cache = RenderCache(max_bytes=10 * len(big))

    def counted() -> int:
        return cache._entries.weight

    def held() -> int:
        return sum(entry[0].size for entry in cache._entries.values())

    first = cache.put("big", lambda: big)
    second = cache.put("small", lambda: small)
    assert counted() == held() == len(big) + len(small)
    first.gzip()
    second.gzip()
    assert counted() == held() > len(big) + len(small)

    replaced = cache.put("big", lambda: big)
    assert cache.get("big") is replaced and counted() == held()
    first.gzip()  # the replaced rendering no longer counts, whatever it does
    assert counted() == held()

    tight = RenderCache(max_bytes=len(big) + 100)
    gone = tight.put("a", lambda: big)
    tight.put("b", lambda: small)
    assert tight.get("a") is None and tight._entries.weight == len(small)
    gone.gzip()
    assert tight._entries.weight == len(small)


def big_project(upstream: Upstream, files: int = 1000) -> None:
    for i in range(files):
        upstream.add("big-page", UpstreamFile(f"big_page-{i}.0-py3-none-any.whl", b"x"))


def test_served_gzip_matches_its_etag(
    upstream: Upstream, make_proxy: Callable[..., object], tmp_path: Path
) -> None:
    big_project(upstream)
    proxy = make_proxy(upstream)
    url = proxy.url + "simple/big-page/"  # type: ignore[attr-defined]
    plain = httpx.get(url, headers={"Accept": JSON, "Accept-Encoding": "identity"})
    assert len(plain.content) >= offload.BIG
    first = httpx.get(url, headers={"Accept": JSON, "Accept-Encoding": "gzip"})
    assert first.headers["content-encoding"] == "gzip"
    assert first.content == plain.content  # httpx decodes
    second = httpx.get(url, headers={"Accept": JSON, "Accept-Encoding": "gzip"})
    assert second.content == plain.content
    assert second.headers["etag"] == first.headers["etag"] != plain.headers["etag"]
    assert first.headers["etag"] == plain.headers["etag"][:-1] + GZIP_SUFFIX
    for tag, status in ((first.headers["etag"], 304), (plain.headers["etag"], 200)):
        again = httpx.get(
            url, headers={"Accept": JSON, "Accept-Encoding": "gzip", "If-None-Match": tag}
        )
        assert again.status_code == status


def test_the_gzip_etag_names_the_encoder() -> None:
    """Replicas (or versions) with another encoder make other bytes for the same page: a
    client holding one's tag must not get a 304 from the other."""
    assert compression.ENCODER.startswith("isal ")  # what the suite's machines install
    assert render.gzip_suffix(compression.ENCODER) == GZIP_SUFFIX
    others = {render.gzip_suffix(e) for e in ("zlib 1.3", "isal 1.9.2 level 1", "")}
    assert GZIP_SUFFIX not in others and len(others) == 3
