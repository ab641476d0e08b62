"""Hash filling (`HashFillIndex`): files an index publishes without sha256 are downloaded
once, hashed and cached; the digest is remembered by URL for every later page."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import httpx
import pytest
from packaging.utils import NormalizedName

from proxy.edge.files import FileService
from proxy.edge.index import UNIVERSAL
from proxy.edge.layers.hash_fill import HashFillIndex
from proxy.edge.stores import keys
from proxy.edge.stores.blobs import BlobStore
from tests.unit.conftest import Wheels, cached
from tests.unit.fakes import FakeIndex, MemoryStore

DEMO = NormalizedName("demo")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def unhashed(index: FakeIndex, wheels: Wheels) -> FakeIndex:
    index.hashes = False
    index.add("demo", wheels.demo_1)
    index.add("demo", wheels.demo_2)
    return index


async def test_files_without_sha256_are_hashed_once(
    unhashed: FakeIndex,
    client: httpx.AsyncClient,
    store: MemoryStore,
    files: FileService,
    blobs: BlobStore,
    wheels: Wheels,
) -> None:
    inner = cached(unhashed, client, store)
    layer = HashFillIndex(inner, files, store)
    page = await layer.page(DEMO, UNIVERSAL)
    expected = {
        wheels.demo_1.name: sha256(wheels.demo_1),
        wheels.demo_2.name: sha256(wheels.demo_2),
    }
    assert {f.filename: f.sha256 for f in page.files} == expected
    assert all(blobs.has(digest) for digest in expected.values())  # cached on the way
    below = await inner.page(DEMO, UNIVERSAL)
    assert {f.sha256 for f in below.files} == {None}
    assert page.revision != below.revision
    again = await layer.page(DEMO, UNIVERSAL)
    assert again == page
    for name in expected:
        assert unhashed.count(f"/files/{name}") == 1


async def test_digests_are_remembered_across_restarts(
    unhashed: FakeIndex,
    client: httpx.AsyncClient,
    store: MemoryStore,
    files: FileService,
    tmp_path: Path,
    wheels: Wheels,
) -> None:
    first = await HashFillIndex(cached(unhashed, client, store), files, store).page(DEMO, UNIVERSAL)
    # Another process on the same state, with a cache of its own: nothing to download.
    other = FileService(BlobStore(tmp_path / "other"), client, store)
    try:
        again = await HashFillIndex(cached(unhashed, client, store), other, store).page(
            DEMO, UNIVERSAL
        )
    finally:
        await other.close()
    assert again.files == first.files and again.revision == first.revision
    assert unhashed.count(f"/files/{wheels.demo_1.name}") == 1


async def test_a_stored_digest_that_is_none_is_hashed_again(
    unhashed: FakeIndex,
    client: httpx.AsyncClient,
    store: MemoryStore,
    files: FileService,
    wheels: Wheels,
) -> None:
    inner = cached(unhashed, client, store)
    for listed in (wheels.demo_1, wheels.demo_2):
        await store.set(keys.url_sha(unhashed.file_url(listed.name)), b"not a digest")
    page = await HashFillIndex(inner, files, store).page(DEMO, UNIVERSAL)
    assert {f.filename: f.sha256 for f in page.files} == {
        wheels.demo_1.name: sha256(wheels.demo_1),
        wheels.demo_2.name: sha256(wheels.demo_2),
    }


async def test_a_file_that_cannot_be_hashed_leaves_the_page_until_it_can(
    unhashed: FakeIndex,
    client: httpx.AsyncClient,
    store: MemoryStore,
    files: FileService,
    wheels: Wheels,
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken = f"/files/{wheels.demo_2.name}"
    unhashed.status[broken] = 503
    layer = HashFillIndex(cached(unhashed, client, store), files, store)
    with caplog.at_level(logging.WARNING, logger="hostfit.hashes"):
        partial = await layer.page(DEMO, UNIVERSAL)
    assert [f.filename for f in partial.files] == [wheels.demo_1.name]
    assert wheels.demo_2.name in caplog.text
    del unhashed.status[broken]
    whole = await layer.page(DEMO, UNIVERSAL)  # an incomplete page is filled again
    assert [f.filename for f in whole.files] == [wheels.demo_1.name, wheels.demo_2.name]
    assert whole.revision != partial.revision
    assert unhashed.count(f"/files/{wheels.demo_1.name}") == 1


async def test_a_file_sent_coded_is_not_hashed_from_decoded_bytes(
    unhashed: FakeIndex,
    client: httpx.AsyncClient,
    store: MemoryStore,
    files: FileService,
    blobs: BlobStore,
    wheels: Wheels,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Its first bytes become its identity, and httpx takes a gzip cut short for fewer
    bytes: a file sent gzipped although asked as stored is left off, saying why."""
    unhashed.coded = {200}
    layer = HashFillIndex(cached(unhashed, client, store), files, store)
    with caplog.at_level(logging.WARNING, logger="hostfit.hashes"):
        page = await layer.page(DEMO, UNIVERSAL)
    assert page.files == ()
    assert "sent in a content coding (gzip), not as stored" in caplog.text
    assert not any(blobs.has(sha256(w)) for w in (wheels.demo_1, wheels.demo_2))
    unhashed.coded = set()
    assert len((await layer.page(DEMO, UNIVERSAL)).files) == 2


async def test_a_page_with_hashes_passes_unchanged(
    index: FakeIndex,
    client: httpx.AsyncClient,
    store: MemoryStore,
    files: FileService,
    wheels: Wheels,
) -> None:
    index.add("demo", wheels.demo_1)
    inner = cached(index, client, store)
    page = await HashFillIndex(inner, files, store).page(DEMO, UNIVERSAL)
    assert page == await inner.page(DEMO, UNIVERSAL)
    assert index.count(f"/files/{wheels.demo_1.name}") == 0
