"""The file service (`FileService`): one verified download per file, cached under its
sha256; a body cut short is resumed with a Range request; what does not match the index
is never handed out or kept; upstream failures become hostfit errors."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
from pathlib import Path

import httpx
import pytest

from proxy.core.models import File
from proxy.edge.download import Download
from proxy.edge.files import FileService
from proxy.edge.stores.blobs import BlobStore, CacheFull, OpenBlob
from proxy.errors import IntegrityError, UpstreamError, UpstreamTimeout
from tests.unit.conftest import Wheels
from tests.unit.fakes import FakeIndex, Listed, MemoryStore


def entry(index: FakeIndex, listed: Listed, sha256: str | None = None) -> File:
    """The file as a page lists it."""
    hashes = {"sha256": sha256 or listed.sha256}
    return File(
        listed.filename, index.file_url(listed.filename), hashes, {"size": len(listed.data)}
    )


@pytest.fixture
def wheel(index: FakeIndex, wheels: Wheels) -> Listed:
    return index.add("demo", wheels.demo_1)


async def test_a_file_is_downloaded_once_and_served_from_the_cache(
    index: FakeIndex, files: FileService, blobs: BlobStore, wheel: Listed
) -> None:
    path = await files.fetch(entry(index, wheel))
    assert path == blobs.path(wheel.sha256) and path.read_bytes() == wheel.data
    opened = await files.open(entry(index, wheel))
    assert isinstance(opened, OpenBlob)
    opened.close()
    assert index.count(f"/files/{wheel.filename}") == 1
    assert files.outcomes["cached"] == 1 and files.active == 0
    assert list(blobs.tmp.glob("*.part")) == []


async def test_clients_at_once_share_one_download(
    index: FakeIndex, files: FileService, wheel: Listed
) -> None:
    index.delay = 0.05
    paths = await asyncio.gather(*(files.fetch(entry(index, wheel)) for _ in range(8)))
    assert len(set(paths)) == 1
    assert index.count(f"/files/{wheel.filename}") == 1
    # They joined one download in this process, not followed each other through leases.
    assert {k: v for k, v in files.outcomes.items() if v} == {"cached": 1}


async def test_a_client_follows_the_download_as_it_arrives(
    index: FakeIndex, files: FileService, blobs: BlobStore, wheel: Listed
) -> None:
    opened = await files.open(entry(index, wheel))
    assert isinstance(opened, Download)
    received = b"".join([chunk async for chunk in opened.chunks()])
    assert received == wheel.data
    await opened.wait_done()
    assert blobs.has(wheel.sha256)


async def test_a_body_cut_short_is_resumed_where_it_stopped(
    index: FakeIndex, files: FileService, wheel: Listed
) -> None:
    half = len(wheel.data) // 2
    index.cut[wheel.filename] = half
    path = await files.fetch(entry(index, wheel))
    assert path.read_bytes() == wheel.data
    first, resumed = [r for r in index.requests if r.url.path.endswith(wheel.filename)]
    assert "range" not in first.headers
    assert resumed.headers["range"] == f"bytes={half}-"
    assert resumed.headers["if-range"] == f'"{wheel.sha256[:16]}"'


async def test_a_coded_body_cut_short_is_resumed_as_stored(
    index: FakeIndex, files: FileService, wheel: Listed
) -> None:
    """Sent gzipped although asked as stored, and cut short: what was decoded is the
    file's own first bytes, and the rest comes by a range of the file as stored."""
    index.coded = {200}
    index.cut[wheel.filename] = len(gzip.compress(wheel.data)) // 2
    path = await files.fetch(entry(index, wheel))
    assert path.read_bytes() == wheel.data
    first, resumed = [r for r in index.requests if r.url.path.endswith(wheel.filename)]
    assert "range" not in first.headers and resumed.headers["range"].startswith("bytes=")
    assert resumed.headers["accept-encoding"] == "identity"


async def test_a_resumption_sent_in_a_content_coding_is_refused_by_name(
    index: FakeIndex, files: FileService, blobs: BlobStore, wheel: Listed
) -> None:
    """A range of coded bytes is not the rest of the file (and httpx would decode it as a
    fragment): refused, saying why, and nothing cached."""
    index.cut[wheel.filename] = len(wheel.data) // 2
    index.coded = {206}
    with pytest.raises(UpstreamError, match="resumed in a content coding, not as stored"):
        await files.fetch(entry(index, wheel))
    assert not blobs.has(wheel.sha256) and list(blobs.tmp.glob("*.part")) == []
    asked = [r for r in index.requests if r.url.path.endswith(wheel.filename)]
    assert [r.headers["accept-encoding"] for r in asked] == ["identity", "identity"]


async def test_a_body_cut_short_without_ranges_is_fetched_again_only_before_any_byte(
    index: FakeIndex, files: FileService, blobs: BlobStore, wheel: Listed
) -> None:
    index.ranges = False
    index.cut[wheel.filename] = len(wheel.data) // 2
    with pytest.raises(UpstreamError, match="ReadError"):
        await files.fetch(entry(index, wheel))
    assert not blobs.has(wheel.sha256) and list(blobs.tmp.glob("*.part")) == []
    index.cut[wheel.filename] = 0  # nothing arrived: asked again from the start
    assert (await files.fetch(entry(index, wheel))).read_bytes() == wheel.data
    assert index.count(f"/files/{wheel.filename}") == 3
    assert all("range" not in r.headers for r in index.requests)


async def test_bytes_that_do_not_match_the_index_are_refused(
    index: FakeIndex, files: FileService, blobs: BlobStore, wheel: Listed
) -> None:
    claimed = hashlib.sha256(b"what the index says").hexdigest()
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        await files.fetch(entry(index, wheel, sha256=claimed))
    assert not blobs.has(claimed) and not blobs.has(wheel.sha256)
    assert list(blobs.tmp.glob("*.part")) == []
    assert files.outcomes["failed"] == 1


async def test_a_file_without_sha256_is_not_served(
    index: FakeIndex, files: FileService, wheel: Listed
) -> None:
    unhashed = File(wheel.filename, index.file_url(wheel.filename), {"md5": "0" * 32})
    with pytest.raises(IntegrityError, match="no sha256"):
        await files.open(unhashed)
    assert index.requests == []


@pytest.mark.parametrize(
    ("status", "failure", "raised", "said"),
    [
        (404, None, UpstreamError, "HTTP 404"),
        (None, httpx.ConnectError("refused"), UpstreamError, "ConnectError"),
        (None, httpx.ReadTimeout("slow"), UpstreamTimeout, "timed out"),
    ],
)
async def test_upstream_failures_become_hostfit_errors(
    index: FakeIndex,
    files: FileService,
    wheel: Listed,
    status: int | None,
    failure: httpx.HTTPError | None,
    raised: type[UpstreamError],
    said: str,
) -> None:
    path = f"/files/{wheel.filename}"
    if status is not None:
        index.status[path] = status
    if failure is not None:
        index.fail[path] = failure
    with pytest.raises(raised, match=said) as caught:
        await files.fetch(entry(index, wheel))
    assert type(caught.value) is raised


async def test_a_download_past_its_deadline_times_out(
    index: FakeIndex, client: httpx.AsyncClient, store: MemoryStore, blobs: BlobStore, wheel: Listed
) -> None:
    index.delay = 5.0
    service = FileService(blobs, client, store, deadline=0.1)
    try:
        with pytest.raises(UpstreamTimeout, match="file deadline"):
            await service.fetch(entry(index, wheel))
    finally:
        await service.close()
    assert service.outcomes["timed_out"] == 1


async def test_a_file_over_the_budget_is_streamed_but_not_cached(
    index: FakeIndex, client: httpx.AsyncClient, store: MemoryStore, tmp_path: Path, wheel: Listed
) -> None:
    small = BlobStore(tmp_path / "small", max_size=len(wheel.data) // 2)
    service = FileService(small, client, store)
    try:
        opened = await service.open(entry(index, wheel))
        assert isinstance(opened, Download)
        assert b"".join([chunk async for chunk in opened.chunks()]) == wheel.data
        await opened.wait_done()
        assert opened.uncached is not None and "cache budget" in opened.uncached
        assert not small.has(wheel.sha256)
        with pytest.raises(CacheFull):
            await service.fetch(entry(index, wheel))
    finally:
        await service.close()
    assert service.outcomes["uncached"] == 2


async def test_the_digest_of_an_unhashed_file_is_learnt_by_downloading_it(
    index: FakeIndex, files: FileService, blobs: BlobStore, wheel: Listed
) -> None:
    unhashed = File(wheel.filename, index.file_url(wheel.filename), {})
    assert await files.digest_of(unhashed) == wheel.sha256
    assert blobs.has(wheel.sha256)
    index.status[f"/files/{wheel.filename}"] = 410
    with pytest.raises(UpstreamError, match="HTTP 410"):
        await files.digest_of(unhashed)
