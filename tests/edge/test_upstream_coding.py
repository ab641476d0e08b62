"""Upstream answers in a content coding (gzip), read by `hostfit serve` from a real
upstream: a gzip body cut short is refused, never taken for a shorter page or shorter
metadata; several members are read whole; a coding hostfit did not ask for is refused by
name; and a page's source is stored as upstream's own gzip member when it has one."""

from __future__ import annotations

import gzip
import io
import sqlite3
import zlib
from pathlib import Path

import httpx
import pytest

from proxy.core.negotiate import JSON_V1
from proxy.edge.compression import gunzipped
from proxy.edge.layers.page_cache import FORMAT
from tests.edge.fault_checks import Faults, assert_cache_sound, assert_clean, serve, state_keys
from tests.support.upstream import Upstream, UpstreamFile

PAGE = "/simple/demo-pkg/"
GZIP = [(b"content-encoding", b"gzip")]
FILES = 40  # enough that a page cut short still holds some whole anchors


def _project(upstream: Upstream, demo_wheel: Path) -> set[str]:
    upstream.add("demo-pkg", demo_wheel)
    for i in range(FILES):
        upstream.add("demo-pkg", UpstreamFile(f"demo_pkg-0.{i}.tar.gz", content=b"%d" % i))
    return {demo_wheel.name} | {f"demo_pkg-0.{i}.tar.gz" for i in range(FILES)}


def _cut(body: bytes) -> bytes:
    """gzip of ``body`` with its last third gone: what a broken upstream sends."""
    member = gzip.compress(body, mtime=0)
    return member[: 2 * len(member) // 3]


def _listed(proxy_url: str) -> httpx.Response:
    """The page as hostfit serves it, in JSON whatever upstream sent."""
    return httpx.get(proxy_url + "simple/demo-pkg/", headers={"Accept": JSON_V1}, timeout=30)


def _names(page: httpx.Response) -> set[str]:
    return {f["filename"] for f in page.json()["files"]}


@pytest.mark.parametrize("formats", [{"html"}, {"json"}])
def test_gzip_page_cut_short_is_refused_and_never_cached(
    faulty: tuple[Upstream, Faults], demo_wheel: Path, tmp_path: Path, formats: set[str]
) -> None:
    upstream, faults = faulty
    upstream.formats = formats
    upstream.etags = False  # every fetch a whole answer, never a 304
    names = _project(upstream, demo_wheel)
    faults.body[PAGE], faults.headers[PAGE] = _cut, GZIP
    cache = tmp_path / "cache"
    with serve(upstream.url, cache) as proxy:
        refused = _listed(proxy.url)
        assert refused.status_code == 502, refused.text
        assert "gzip body cut short" in refused.text
        assert state_keys(cache, "page:") == []
        # Whole again: served, every file.
        del faults.body[PAGE], faults.headers[PAGE]
        whole = _listed(proxy.url)
        assert whole.status_code == 200 and _names(whole) == names
        # Cut short once more after a good answer (page TTL 0: asked every time): the last
        # good page is served, stale, with every file, and stays the one stored.
        faults.body[PAGE], faults.headers[PAGE] = _cut, GZIP
        stale = _listed(proxy.url)
        assert stale.status_code == 200 and _names(stale) == names
        assert "gzip body cut short" in stale.headers["warning"]
    assert_clean(proxy, cache)


def test_gzip_members_are_read_whole(
    faulty: tuple[Upstream, Faults], demo_wheel: Path, tmp_path: Path
) -> None:
    upstream, faults = faulty
    upstream.formats = {"html"}
    names = _project(upstream, demo_wheel)

    def two_members(body: bytes) -> bytes:
        half = len(body) // 2
        return gzip.compress(body[:half], mtime=0) + gzip.compress(body[half:], mtime=0)

    faults.body[PAGE], faults.headers[PAGE] = two_members, GZIP
    cache = tmp_path / "cache"
    with serve(upstream.url, cache) as proxy:
        page = _listed(proxy.url)
        assert page.status_code == 200, page.text
        assert _names(page) == names
    assert_clean(proxy, cache)


@pytest.mark.parametrize(
    ("coding", "body"),
    [
        ("br", lambda body: body),
        ("gzip, br", lambda body: gzip.compress(body)),
        ("deflate", lambda body: zlib.compress(body)),
    ],
)
def test_a_coding_not_asked_for_is_refused_by_name(
    faulty: tuple[Upstream, Faults], demo_wheel: Path, tmp_path: Path, coding: str, body: object
) -> None:
    upstream, faults = faulty
    _project(upstream, demo_wheel)
    faults.body[PAGE] = body  # type: ignore[assignment]
    faults.headers[PAGE] = [(b"content-encoding", coding.encode())]
    cache = tmp_path / "cache"
    with serve(upstream.url, cache) as proxy:
        refused = _listed(proxy.url)
        assert refused.status_code == 502, refused.text
        assert f"content-encoding {coding!r}: only gzip was asked for" in refused.text
        asked = [r for r in upstream.requests if r.path == PAGE]
        assert asked and all(r.headers.get("accept-encoding") == "gzip" for r in asked)
    assert_clean(proxy, cache)


def _stored_member(cache: Path) -> bytes:
    with sqlite3.connect(cache / "state" / "state.sqlite3") as db:
        (value,) = db.execute("SELECT value FROM kv WHERE key LIKE 'page:%'").fetchone()
    raw = bytes(value)
    assert raw.startswith(FORMAT)
    return raw[raw.index(b"\n", len(FORMAT)) + 1 :]


@pytest.mark.parametrize("level", [9, 0])
def test_page_source_is_stored_as_upstreams_own_gzip(
    faulty: tuple[Upstream, Faults], demo_wheel: Path, tmp_path: Path, level: int
) -> None:
    """Level 9: upstream's member, byte for byte (with a name in its header, which hostfit
    never writes). Level 0 (stored blocks, no smaller than the page): compressed here."""
    upstream, faults = faulty
    upstream.formats = {"json"}
    names = _project(upstream, demo_wheel)
    sent: list[bytes] = []

    def member(body: bytes) -> bytes:
        out = io.BytesIO()
        with gzip.GzipFile("index.json", "wb", level, out, mtime=0) as written:
            written.write(body)
        data = out.getvalue()
        assert data[3] & 0x08  # FNAME: a name in the member's header
        sent.append(data)
        return data

    faults.body[PAGE], faults.headers[PAGE] = member, GZIP
    cache = tmp_path / "cache"
    with serve(upstream.url, cache, "--page-ttl", "3600") as proxy:
        assert _names(_listed(proxy.url)) == names
    stored = _stored_member(cache)
    if level == 9:
        assert stored == sent[-1]
    else:
        assert stored != sent[-1] and len(stored) < len(sent[-1]) // 2
    assert gunzipped(stored, 1 << 20) == gunzipped(sent[-1], 1 << 20)
    # Read back after a restart, with upstream gone: the page from the store alone.
    upstream.down = True
    with serve(upstream.url, cache, "--page-ttl", "3600") as proxy:
        again = _listed(proxy.url)
        assert again.status_code == 200 and _names(again) == names
        assert "warning" not in again.headers
    assert_clean(proxy, cache)


def test_metadata_gzip_cut_short_is_refused(
    faulty: tuple[Upstream, Faults], demo_wheel: Path, tmp_path: Path
) -> None:
    """Metadata without a hash in the index (``core-metadata: true``) has nothing to be
    checked against: a body cut short would have reached pip as shorter metadata."""
    upstream, faults = faulty
    upstream.hash_names = ()
    upstream.add("demo-pkg", demo_wheel)
    path = f"/files/{demo_wheel.name}.metadata"
    cache = tmp_path / "cache"
    with serve(upstream.url, cache) as proxy:
        page = httpx.get(proxy.url + "simple/demo-pkg/", headers={"Accept": JSON_V1})
        (entry,) = page.json()["files"]
        assert entry["core-metadata"] is True
        link = httpx.URL(proxy.url + "simple/demo-pkg/").join(entry["url"] + ".metadata")
        faults.body[path], faults.headers[path] = _cut, GZIP
        refused = httpx.get(link, timeout=30)
        assert refused.status_code == 502, refused.text
        assert "gzip body cut short" in refused.text
        del faults.body[path], faults.headers[path]
        whole = httpx.get(link, timeout=30)
        assert whole.status_code == 200
        assert whole.content == upstream.files("demo-pkg")[0].metadata
    assert_clean(proxy, cache)


def test_files_are_asked_for_as_stored(
    faulty: tuple[Upstream, Faults], demo_wheel: Path, tmp_path: Path
) -> None:
    """An upstream that gzips what it sends when asked (gzip on for every type, as some
    servers and CDNs do): its Content-Length and ranges would be the coded bytes'. Asked
    for `identity`, it sends the wheel as stored, which is served and cached."""
    upstream, faults = faulty
    upstream.add("demo-pkg", demo_wheel)
    path = f"/files/{demo_wheel.name}"
    faults.gzip_when_asked.add(path)
    cache = tmp_path / "cache"
    with serve(upstream.url, cache) as proxy:
        for _ in range(2):  # downloaded, then from the cache
            got = httpx.get(proxy.url + f"files/demo-pkg/{demo_wheel.name}", timeout=30)
            assert got.status_code == 200 and got.content == demo_wheel.read_bytes()
        asked = [r for r in upstream.requests if r.path == path]
        assert len(asked) == 1 and asked[0].headers["accept-encoding"] == "identity"
    assert_clean(proxy, cache)


def test_a_file_coded_all_the_same_is_decoded_and_verified(
    faulty: tuple[Upstream, Faults], demo_wheel: Path, tmp_path: Path
) -> None:
    """Sent gzipped although asked for `identity`: its Content-Length is not the file's
    (the index's size is used), and the sha256 is checked over the decoded bytes."""
    upstream, faults = faulty
    upstream.add("demo-pkg", demo_wheel)
    path = f"/files/{demo_wheel.name}"
    faults.body[path], faults.headers[path] = gzip.compress, GZIP
    cache = tmp_path / "cache"
    with serve(upstream.url, cache) as proxy:
        got = httpx.get(proxy.url + f"files/demo-pkg/{demo_wheel.name}", timeout=30)
        assert got.status_code == 200 and got.content == demo_wheel.read_bytes()
        assert int(got.headers["content-length"]) == demo_wheel.stat().st_size
        # Coded and cut short (which httpx's decoder lets through as fewer bytes): the
        # transfer, begun, is broken off before its last byte, and nothing is cached.
        faults.body[path] = _cut
        other = tmp_path / "other"
        with serve(upstream.url, other) as second:
            with pytest.raises(httpx.RemoteProtocolError):
                httpx.get(second.url + f"files/demo-pkg/{demo_wheel.name}", timeout=30)
            assert "size mismatch" in second.output()
        assert assert_cache_sound(other) == []
        assert_clean(second, other)
    assert_clean(proxy, cache)
