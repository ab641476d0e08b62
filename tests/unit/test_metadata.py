"""The metadata service (`MetadataService`): PEP 658 metadata from upstream's ``.metadata``
when offered and verified, else extracted from the cached wheel; remembered by the wheel's
sha256 in the store and the blob cache, so it is obtained once for every replica."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace

import httpx
import pytest
from packaging.utils import canonicalize_name

from proxy.core.models import File, Page
from proxy.core.origins import Outbound
from proxy.edge.files import FileService
from proxy.edge.metadata import MetadataService
from proxy.edge.stores import keys
from proxy.edge.stores.blobs import BlobStore
from proxy.errors import IntegrityError, NotFound, UpstreamError
from tests.unit.conftest import Wheels
from tests.unit.fakes import FakeIndex, Listed, MemoryStore

Open = Callable[[], MetadataService]


@pytest.fixture
async def open_service(
    index: FakeIndex,
    blobs: BlobStore,
    files: FileService,
    client: httpx.AsyncClient,
    store: MemoryStore,
) -> AsyncIterator[Open]:
    """Services over one state and one cache, as replicas are."""
    opened: list[MetadataService] = []

    def open_one() -> MetadataService:
        opened.append(MetadataService(blobs, files, client, store, Outbound.only(index.url)))
        return opened[-1]

    yield open_one
    for service in opened:
        await service.close()


@pytest.fixture
def wheel(index: FakeIndex, wheels: Wheels) -> Listed:
    return index.add("demo", wheels.demo_1)


def entry(index: FakeIndex, listed: Listed, *, offered: str | None = None) -> File:
    """The wheel as a page lists it; ``offered``: the .metadata digest the page gives."""
    extra = {"core-metadata": {"sha256": offered}} if offered else {}
    return File(listed.filename, index.file_url(listed.filename), {"sha256": listed.sha256}, extra)


def metadata_of(listed: Listed) -> bytes:
    assert listed.metadata is not None
    return listed.metadata


async def test_offered_metadata_is_fetched_once_and_verified(
    index: FakeIndex, open_service: Open, wheel: Listed
) -> None:
    expected = metadata_of(wheel)
    file = entry(index, wheel, offered=hashlib.sha256(expected).hexdigest())
    service = open_service()
    index.delay = 0.05  # every caller asks while the first fetch is on its way
    results = await asyncio.gather(*(service.get(file, "demo") for _ in range(8)))
    assert set(results) == {expected}
    assert index.count(f"/files/{wheel.filename}.metadata") == 1
    assert index.count(f"/files/{wheel.filename}") == 0  # the wheel itself is not needed


async def test_what_was_obtained_is_known_to_every_replica(
    index: FakeIndex, open_service: Open, wheel: Listed
) -> None:
    expected = metadata_of(wheel)
    file = entry(index, wheel, offered=hashlib.sha256(expected).hexdigest())
    first = open_service()
    before = first.generation("demo")
    assert await first.known_hashes([file]) == {}
    await first.get(file, "demo")
    assert first.generation("demo") != before  # decisions using metadata are made again
    other = open_service()
    assert await other.get(file, "demo") == expected
    assert await other.known_hashes([file]) == {wheel.sha256: hashlib.sha256(expected).hexdigest()}
    assert await other.stored([file]) == {wheel.sha256: expected}
    assert index.count(".metadata") == 1


@pytest.mark.parametrize("garbage", [b"garbage", b"\xff" * 64, b"AB" * 32, b"ab" * 32 + b"\n"])
async def test_a_stored_digest_that_is_none_is_a_miss(
    index: FakeIndex, open_service: Open, store: MemoryStore, wheel: Listed, garbage: bytes
) -> None:
    """What a fault or another version left under a wheel's key: the metadata is obtained
    again and the record made right, not an error on every page of the project."""
    expected = metadata_of(wheel)
    file = entry(index, wheel, offered=hashlib.sha256(expected).hexdigest())
    await store.set(keys.metadata(wheel.sha256), garbage)
    service = open_service()
    assert await service.known_hashes([file]) == {}
    assert await service.stored([file]) == {}
    assert await service.get(file, "demo") == expected
    assert await open_service().known_hashes([file]) == {
        wheel.sha256: hashlib.sha256(expected).hexdigest()
    }


async def test_a_page_advertises_what_memory_holds_and_learns_the_rest_behind_it(
    index: FakeIndex, open_service: Open, files: FileService, wheel: Listed
) -> None:
    file = entry(index, wheel)  # no metadata offered upstream: extracted from the wheel
    await files.fetch(file)
    digest = hashlib.sha256(metadata_of(wheel)).hexdigest()
    page = Page(name=canonicalize_name("demo"), files=(file,), revision="r1")
    first = open_service()
    await first.get(file, "demo")
    assert first.advertised(page) == {wheel.sha256: digest}
    # A restart, or another replica: the store knows the digest, memory does not. The
    # page is not kept waiting for the store; the digest comes behind the answer.
    other = open_service()
    before = other.generation("demo")
    assert other.advertised(page) == {}
    await other.settled()
    assert other.generation("demo") != before  # the next rendering is a new one
    assert other.advertised(page) == {wheel.sha256: digest}
    assert index.count(".metadata") == 0 and index.count(wheel.filename) == 1


async def test_a_project_without_digests_is_not_looked_up_wheel_by_wheel(
    index: FakeIndex,
    open_service: Open,
    store: MemoryStore,
    wheel: Listed,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[list[str]] = []
    get_many = store.get_many

    async def counted(keys: Sequence[str]) -> list[bytes | None]:
        asked.append(list(keys))
        return await get_many(keys)

    monkeypatch.setattr(store, "get_many", counted)
    # Digests recorded for another project's wheels say nothing of this one's.
    await store.set(keys.metadata_project("other"), b"1")
    service = open_service()
    page = Page(name=canonicalize_name("demo"), files=(entry(index, wheel),), revision="r1")
    assert service.advertised(page) == {}
    await service.settled()
    assert asked == []
    await store.set(keys.metadata_project("demo"), b"1")
    assert service.advertised(replace(page, revision="r2")) == {}
    await service.settled()
    assert asked == [[keys.metadata(wheel.sha256)]]


async def test_a_digest_recorded_before_project_markers_is_advertised_once_served(
    index: FakeIndex, open_service: Open, files: FileService, store: MemoryStore, wheel: Listed
) -> None:
    file = entry(index, wheel)
    await files.fetch(file)
    await open_service().get(file, "demo")
    await store.delete(keys.metadata_project("demo"))  # as a store from before markers
    digest = hashlib.sha256(metadata_of(wheel)).hexdigest()
    page = Page(name=canonicalize_name("demo"), files=(file,), revision="r1")
    other = open_service()
    assert other.advertised(page) == {}
    await other.settled()
    assert other.advertised(page) == {}  # nothing says the project has digests
    generation = other.generation("demo")
    await other.get(file, "demo")  # served from the record: the marker is set again
    assert other.advertised(page) == {wheel.sha256: digest}
    assert other.generation("demo") == generation  # not new: pages are not made again
    third = open_service()
    assert third.advertised(page) == {}
    await third.settled()
    assert third.advertised(page) == {wheel.sha256: digest}


async def test_metadata_that_does_not_match_the_page_is_refused(
    index: FakeIndex, open_service: Open, store: MemoryStore, wheel: Listed
) -> None:
    file = entry(index, wheel, offered=hashlib.sha256(b"something else").hexdigest())
    service = open_service()
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        await service.get(file, "demo")
    assert store.keys("metadata:") == []
    assert await service.stored([file]) == {}


async def test_metadata_not_offered_is_extracted_from_the_cached_wheel(
    index: FakeIndex, open_service: Open, files: FileService, wheel: Listed
) -> None:
    file = entry(index, wheel)
    await files.fetch(file)
    assert await open_service().get(file, "demo") == metadata_of(wheel)
    assert index.count(".metadata") == 0
    assert index.count(f"/files/{wheel.filename}") == 1  # the download, nothing more


async def test_only_wheels_with_a_digest_have_metadata(
    index: FakeIndex, open_service: Open, wheel: Listed
) -> None:
    service = open_service()
    sdist = File("demo-1.0.tar.gz", index.file_url("demo-1.0.tar.gz"), {"sha256": "ab" * 32})
    unhashed = File(wheel.filename, index.file_url(wheel.filename), {})
    for file in (sdist, unhashed):
        with pytest.raises(NotFound):
            await service.get(file, "demo")
    assert index.requests == []


async def test_what_is_stored_is_answered_without_fetching(
    index: FakeIndex, open_service: Open, wheel: Listed
) -> None:
    file = entry(index, wheel, offered=hashlib.sha256(metadata_of(wheel)).hexdigest())
    service = open_service()
    assert await service.stored([file]) == {}
    assert index.requests == []


@pytest.mark.parametrize(
    ("status", "failure", "said"),
    [(404, None, "HTTP 404"), (None, httpx.ConnectError("refused"), "ConnectError")],
)
async def test_upstream_failures_become_upstream_errors(
    index: FakeIndex,
    open_service: Open,
    store: MemoryStore,
    wheel: Listed,
    status: int | None,
    failure: httpx.HTTPError | None,
    said: str,
) -> None:
    path = f"/files/{wheel.filename}.metadata"
    if status is not None:
        index.status[path] = status
    if failure is not None:
        index.fail[path] = failure
    file = entry(index, wheel, offered=hashlib.sha256(metadata_of(wheel)).hexdigest())
    with pytest.raises(UpstreamError, match=said):
        await open_service().get(file, "demo")
    assert store.keys("metadata:") == []


async def test_metadata_served_once_is_answered_from_memory(
    index: FakeIndex, open_service: Open, blobs: BlobStore, wheel: Listed
) -> None:
    expected = metadata_of(wheel)
    digest = hashlib.sha256(expected).hexdigest()
    file = entry(index, wheel, offered=digest)
    service = open_service()
    assert await service.get(file, "demo") == expected
    # The blob cache loses the file: a wheel's METADATA never changes, so what this
    # service holds in memory still answers, with no thread hop and no upstream fetch.
    blobs.path(digest).unlink()
    assert await service.get(file, "demo") == expected
    assert index.count(".metadata") == 1
    # Another replica has no copy in memory: it makes the metadata again.
    assert await open_service().get(file, "demo") == expected
    assert index.count(".metadata") == 2
