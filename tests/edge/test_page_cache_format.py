"""The page cache's stored entries: upstream's bytes as they came, gzipped, read back into
the same page by any replica of this version; an entry of another format, or a damaged
one, is a miss, never misread."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from packaging.utils import NormalizedName

from proxy.core.models import Page
from proxy.core.negotiate import JSON_V1
from proxy.edge.compression import gunzipped, gzipped
from proxy.edge.index import UNIVERSAL
from proxy.edge.layers import page_cache
from proxy.edge.layers.page_cache import FORMAT, CachedUpstream, Entry, Stored
from proxy.edge.layers.upstream import HttpUpstream, Validators
from proxy.edge.stores import keys
from proxy.edge.stores.embedded import EmbeddedStore
from tests.support.upstream import Upstream, UpstreamFile

NAME = NormalizedName("demo-pkg")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EmbeddedStore]:
    store = EmbeddedStore(str(tmp_path / "state"))
    yield store
    await store.close()


def add_files(upstream: Upstream, demo_wheel: Path) -> None:
    upstream.url_style = "mixed"  # absolute and relative links: both resolved the same again
    upstream.project_meta["demo-pkg"] = {"project-status": {"status": "quarantined"}}
    upstream.add("demo-pkg", demo_wheel, yanked="broken & <old>", **{"x-future": [1, {"a": 2}]})
    upstream.add("demo-pkg", UpstreamFile("demo_pkg-1.0.tar.gz", b"sdist"), **{"data-x": "y"})


def same_page(a: Page, b: Page) -> None:
    assert (a.name, a.files, a.meta, a.upstream, a.revision) == (
        b.name,
        b.files,
        b.meta,
        b.upstream,
        b.revision,
    )


@pytest.mark.parametrize("fmt", ["json", "html"])
async def test_an_entry_reads_back_as_the_page_fetched(
    upstream: Upstream, demo_wheel: Path, client: httpx.AsyncClient, fmt: str
) -> None:
    upstream.formats = {fmt}
    add_files(upstream, demo_wheel)
    fetched = await HttpUpstream(upstream.url, client).fetch(NAME)
    stored = await Stored.of(fetched.source)
    raw = Entry(fetched.page, fetched.validators, 12.5, stored).encode()

    assert raw.startswith(FORMAT)
    member = raw[raw.index(b"\n", len(FORMAT)) + 1 :]
    # Stored as it came, compressed: never rendered to be stored.
    assert member == stored.member and stored.size == len(fetched.source.body)
    assert gunzipped(member, len(fetched.source.body)) == fetched.source.body
    assert len(member) < len(fetched.source.body) and Entry.size(raw) == len(fetched.source.body)
    back = Entry.decode(raw, fetched.page.upstream)
    assert back.page is not None
    same_page(back.page, fetched.page)
    assert back.validators == fetched.validators
    assert back.fetched == 12.5
    # What a replica reads back it stores again byte for byte (a revalidated entry).
    assert Entry.decode(back.encode(), "").encode() == raw


def test_an_absent_project_reads_back_absent() -> None:
    back = Entry.decode(Entry(None, Validators('"e"', None), 3.0).encode(), "")
    assert (back.page, back.validators, back.fetched) == (None, Validators('"e"', None), 3.0)


async def test_an_entry_of_another_format_is_a_miss_not_a_misreading(
    upstream: Upstream,
    demo_wheel: Path,
    client: httpx.AsyncClient,
    store: EmbeddedStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    add_files(upstream, demo_wheel)
    cache = CachedUpstream(HttpUpstream(upstream.url, client), store, ttl=300.0)
    key = keys.page(cache.upstream.base_url, NAME)
    # The previous format: one JSON object with the page rendered as a string, here
    # holding a page that is not upstream's, fresh, so that reading it would serve it.
    wrong = {"name": "demo-pkg", "files": [{"filename": "x-1.0.tar.gz", "url": "x", "hashes": {}}]}
    old = {"fetched": 1e12, "etag": None, "last_modified": None, "revision": "r"}
    await store.set(key, json.dumps({**old, "page": json.dumps(wrong)}).encode())

    with caplog.at_level(logging.WARNING):
        page = await cache.page(NAME, UNIVERSAL)
    assert {f.filename for f in page.files} == {demo_wheel.name, "demo_pkg-1.0.tar.gz"}
    assert upstream.count("GET", "/simple/demo-pkg/") == 1
    assert not caplog.records  # an upgrade is not a fault
    stored = await store.get(key)
    assert stored is not None and stored.startswith(FORMAT)  # overwritten in this format

    # Another replica of this version reads the stored entry without asking upstream.
    replica = CachedUpstream(HttpUpstream(upstream.url, client), store, ttl=300.0)
    same_page(await replica.page(NAME, UNIVERSAL), page)
    assert upstream.count("GET", "/simple/demo-pkg/") == 1
    await cache.close()
    await replica.close()


def test_a_damaged_entry_is_refused_whole() -> None:
    body = json.dumps({"name": "demo-pkg", "files": []}).encode()
    head = {"fetched": 1.0, "etag": None, "last_modified": None, "name": "demo-pkg"}
    head |= {"url": "https://upstream.test/simple/demo-pkg/", "json": True}

    def stored(said: object, data: bytes) -> bytes:
        return FORMAT + json.dumps({**head, "bytes": said}).encode() + b"\n" + data

    assert Entry.decode(stored(len(body), gzipped(body)), "").page is not None
    for raw in (
        stored(len(body), gzipped(body)[:-4]),  # cut short
        stored(len(body) + 1, gzipped(body)),  # not the size it said
        stored(len(body), body),  # not compressed
    ):
        with pytest.raises(ValueError):
            Entry.decode(raw, "")
    # A header that does not say a size is taken at the entry's own size.
    for said in ("x", True, -1, 0, None):
        raw = stored(said, gzipped(body))
        assert Entry.size(raw) == len(raw)
    assert Entry.size(stored(10**9, b"")) == 10**9  # (then refused when decoded)
    nested = FORMAT + b"[" * 100_000 + b"]" * 100_000 + b"\n"
    for raw in (nested, FORMAT + b"[1]\n", FORMAT + b"{}"):
        assert Entry.size(raw) == len(raw)
        with pytest.raises(ValueError):
            Entry.decode(raw, "")


class ReadsCounted(EmbeddedStore):
    """The embedded store, counting the page reads asked of it."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.reads: list[str] = []

    async def get(self, key: str) -> bytes | None:
        self.reads.append(key)
        return await super().get(key)


async def test_pages_in_memory_are_bounded_by_their_bytes_and_count(
    upstream: Upstream, client: httpx.AsyncClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Weighed by their upstream bytes: 64 KiB holds three pages of ~20 KB, or four small
    ones (a share of the budget each). A page pushed out is read back from the store,
    and upstream is not asked again."""
    monkeypatch.setattr(page_cache, "MEMORY_SOURCE_BYTES", 64 * 1024)
    monkeypatch.setattr(page_cache, "MEMORY_ENTRIES", 4)
    big = [NormalizedName(f"big-{i}") for i in range(5)]
    small = [NormalizedName(f"small-{i}") for i in range(6)]
    for name in big:
        for v in range(80):
            upstream.add(name, UpstreamFile(f"{name.replace('-', '_')}-1.{v}.tar.gz", b"x"))
    for name in small:
        upstream.add(name, UpstreamFile(f"{name.replace('-', '_')}-1.0.tar.gz", b"x"))
    # Three of the big pages fit in 64 KiB and four do not, as JSON, the format asked.
    sizes = set()
    for name in big:
        sent = await client.get(f"{upstream.url}{name}/", headers={"Accept": JSON_V1})
        sizes.add(len(sent.content))
    assert all(64 * 1024 // 4 < size <= 64 * 1024 // 3 for size in sizes), sizes
    upstream.reset_requests()
    store = ReadsCounted(str(tmp_path / "state"))
    cache = CachedUpstream(HttpUpstream(upstream.url, client), store, ttl=300.0)

    async def asked(name: NormalizedName) -> tuple[int, int]:
        """(store reads, upstream requests) that asking for ``name`` took."""
        reads, requests = len(store.reads), upstream.count("GET", f"/simple/{name}/")
        page = await cache.page(name, UNIVERSAL)
        assert page.name == name and page.files
        return len(store.reads) - reads, upstream.count("GET", f"/simple/{name}/") - requests

    for group, held in ((big, 3), (small, 4)):
        for name in group:
            assert await asked(name) == (1, 1)  # a miss in the store, then upstream
        for name in group:  # every one stored (in the background) before any is read back
            key = keys.page(cache.upstream.base_url, name)
            for _ in range(1000):
                if await store.get(key) is not None:
                    break
                await asyncio.sleep(0.01)
        for name in reversed(group[-held:]):
            assert await asked(name) == (0, 0)  # in memory
        assert await asked(group[-held - 1]) == (1, 0)  # pushed out: read back
    await cache.close()
    await store.close()
