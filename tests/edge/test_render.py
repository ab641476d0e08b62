"""Renderings compress on demand: fast first, then the best level in the background,
each encoding under its own ETag, and the cache counts every byte it holds."""

from __future__ import annotations

import gzip
import os
import random
import threading
import zlib
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from proxy.edge import render
from proxy.edge.render import BEST_LEVEL, FAST_FROM, RenderCache, Rendered
from tests.support.upstream import Upstream, UpstreamFile

JSON = "application/vnd.pypi.simple.v1+json"


def settled() -> None:
    """Wait for the recompression thread to finish what was given to it."""
    render._recompress.submit(lambda: None).result(timeout=30)


def page_like(size: int) -> bytes:
    rng = random.Random(size)
    words = [f'{{"filename":"demo-{rng.random()}.whl","url":"../../files/x"}}' for _ in range(10)]
    out = b""
    while len(out) < size:
        out += rng.choice(words).encode()
    return out


def test_a_big_page_is_compressed_fast_first_then_at_the_best_level() -> None:
    body = page_like(FAST_FROM + 1)
    rendered = Rendered(body)
    assert rendered.size == len(body)  # nothing compressed until a client asks
    fast, fast_tag = rendered.gzip()
    assert gzip.decompress(fast) == body
    assert fast_tag == rendered.etag[:-1] + '-gz1"'
    settled()
    best, best_tag = rendered.gzip()
    assert gzip.decompress(best) == body
    assert best == gzip.compress(body, compresslevel=BEST_LEVEL, mtime=0)
    assert best_tag == rendered.etag[:-1] + '-gz"' != fast_tag
    assert (rendered.gzipped, rendered.gzip_etag) == (best, best_tag)


@pytest.mark.parametrize("size", [FAST_FROM, FAST_FROM + 1, 3 * FAST_FROM + 7])
def test_the_first_fast_gzip_made_in_halves_is_one_gzip_member(size: int) -> None:
    for body in (page_like(size), random.Random(size).randbytes(size)):
        data = render.gzip_in_halves(body)
        assert gzip.decompress(data) == body
        # Read as a client reads it, a few bytes at a time: one member, nothing after it.
        reader = zlib.decompressobj(16 + zlib.MAX_WBITS)
        read = b"".join(reader.decompress(data[i : i + 997]) for i in range(0, len(data), 997))
        assert read + reader.flush() == body
        assert reader.eof and reader.unused_data == b""
        assert httpx.Response(200, content=data, headers={"content-encoding": "gzip"}).content == (
            body
        )


def test_with_both_half_threads_busy_a_page_gets_the_same_bytes() -> None:
    body = page_like(FAST_FROM)
    in_halves = render.gzip_in_halves(body)
    taken = [render._halves_free.acquire(blocking=False) for _ in range(render._HALVES)]
    try:
        assert all(taken)
        alone = render.gzip_in_halves(body)
    finally:
        for _ in taken:
            render._halves_free.release()
    assert alone == in_halves and gzip.decompress(alone) == body


def test_a_small_page_gets_the_best_level_at_once() -> None:
    body = page_like(1000)
    rendered = Rendered(body)
    data, tag = rendered.gzip()
    assert data == gzip.compress(body, compresslevel=BEST_LEVEL, mtime=0)
    assert tag.endswith('-gz"')


async def test_a_big_pages_first_gzip_is_made_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made_on: list[int] = []
    compress, in_halves = gzip.compress, render.gzip_in_halves

    def watched(data: bytes, compresslevel: int = 9, *, mtime: float | None = None) -> bytes:
        if compresslevel != BEST_LEVEL or len(data) < FAST_FROM:  # not the later level 6
            made_on.append(threading.get_ident())
        return compress(data, compresslevel=compresslevel, mtime=mtime)

    def watched_halves(data: bytes) -> bytes:
        made_on.append(threading.get_ident())
        return in_halves(data)

    monkeypatch.setattr(gzip, "compress", watched)
    monkeypatch.setattr(render, "gzip_in_halves", watched_halves)
    loop_thread = threading.get_ident()
    small, big = Rendered(page_like(1000)), Rendered(page_like(FAST_FROM + 1))
    assert await small.gzip_off_loop() == small.gzip()
    assert made_on == [loop_thread]  # a thread hop would cost more than the compression
    data, tag = await big.gzip_off_loop()
    settled()
    assert len(made_on) == 2 and made_on[1] != loop_thread
    assert (data, tag) == (in_halves(big.body), big.etag[:-1] + '-gz1"')


def test_the_cache_counts_encodings_made_later_and_forgets_evicted_ones() -> None:
    big, small = page_like(FAST_FROM + 10), page_like(2000)
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
    settled()
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
    settled()
    assert tight._entries.weight == len(small)


def big_project(upstream: Upstream, files: int = 1000) -> None:
    for i in range(files):
        upstream.add("big-page", UpstreamFile(f"big_page-{i}.0-py3-none-any.whl", b"x"))


def test_served_gzip_matches_its_etag_before_and_after_recompression(
    upstream: Upstream, make_proxy: Callable[..., object], tmp_path: Path
) -> None:
    big_project(upstream)
    proxy = make_proxy(upstream)
    url = proxy.url + "simple/big-page/"  # type: ignore[attr-defined]
    plain = httpx.get(url, headers={"Accept": JSON, "Accept-Encoding": "identity"})
    assert len(plain.content) >= FAST_FROM
    first = httpx.get(url, headers={"Accept": JSON, "Accept-Encoding": "gzip"})
    assert first.headers["content-encoding"] == "gzip"
    assert first.content == plain.content  # httpx decodes
    settled()
    second = httpx.get(url, headers={"Accept": JSON, "Accept-Encoding": "gzip"})
    assert second.content == plain.content
    tags = {first.headers["etag"], second.headers["etag"], plain.headers["etag"]}
    assert len(tags) == 3
    assert first.headers["etag"].endswith('-gz1"') and second.headers["etag"].endswith('-gz"')
    # A client holding the fast encoding's tag gets the better bytes, not a 304.
    again = httpx.get(
        url,
        headers={
            "Accept": JSON,
            "Accept-Encoding": "gzip",
            "If-None-Match": first.headers["etag"],
        },
    )
    assert again.status_code == 200
    current = httpx.get(
        url,
        headers={
            "Accept": JSON,
            "Accept-Encoding": "gzip",
            "If-None-Match": second.headers["etag"],
        },
    )
    assert current.status_code == 304


def test_the_recompressing_thread_yields_the_cpu_to_requests() -> None:
    thread = render._recompress.submit(threading.get_native_id).result()
    ours = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert os.getpriority(os.PRIO_PROCESS, thread) == render.lowered(ours) > ours
