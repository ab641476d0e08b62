"""Two file services on one cache directory, as two workers of one host are: one download
from upstream, the other following it (`proxy.edge.files`, `proxy.edge.follow`). In one
process, against a real upstream; flock tells two open files apart as it tells two
processes."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest

from proxy.core.models import File
from proxy.edge.download import Download
from proxy.edge.files import FileService, PeerFailed
from proxy.edge.follow import Follower, Holding
from proxy.edge.stores import keys
from proxy.edge.stores import leases as leases_module
from proxy.edge.stores.blobs import BlobStore
from proxy.edge.stores.embedded import EmbeddedStore
from proxy.errors import HostfitError, IntegrityError
from tests.support.upstream import Upstream, UpstreamFile
from tests.support.waiting import until

SIZE = 3 * 1024 * 1024


@pytest.fixture
def payload(upstream: Upstream) -> tuple[File, bytes]:
    data = os.urandom(SIZE)
    upstream.add("shared", UpstreamFile("shared-1.0.tar.gz", content=data))
    upstream.slow_files["shared-1.0.tar.gz"] = 0.01  # about half a second in all
    digest = hashlib.sha256(data).hexdigest()
    url = upstream.file_url("shared-1.0.tar.gz")
    return File("shared-1.0.tar.gz", url, {"sha256": digest}, {"size": SIZE}), data


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[list[FileService]]:
    """Two services like two workers: each its blob store and state store, one directory."""
    async with AsyncExitStack() as stack:
        client = await stack.enter_async_context(httpx.AsyncClient(timeout=30))
        made = []
        for _ in range(2):
            store = EmbeddedStore(str(tmp_path / "state"))
            stack.push_async_callback(store.close)
            service = FileService(BlobStore(tmp_path / "files"), client, store)
            stack.push_async_callback(service.close)
            made.append(service)
        yield made


def gets(upstream: Upstream) -> int:
    return upstream.count("GET", "/files/shared-1.0.tar.gz")


async def read(service: FileService, file: File) -> bytes:
    return (await service.fetch(file)).read_bytes()


async def test_one_downloads_the_other_follows(
    upstream: Upstream, services: list[FileService], payload: tuple[File, bytes]
) -> None:
    file, data = payload
    first, second = services
    got = await asyncio.gather(read(first, file), read(second, file))
    assert list(got) == [data, data]
    assert gets(upstream) == 1
    outcomes = [{k: v for k, v in s.outcomes.items() if v} for s in services]
    assert sorted(outcomes, key=str) == [{"cached": 1}, {"followed": 1}]
    assert os.listdir(first.blobs.tmp) == []


async def test_a_follower_streams_the_bytes_as_they_come(
    upstream: Upstream, services: list[FileService], payload: tuple[File, bytes]
) -> None:
    file, data = payload
    first, second = services
    leading = await first.open(file)
    assert isinstance(leading, Download)
    await until(lambda: bool(os.listdir(first.blobs.tmp)) and gets(upstream) > 0)
    following = await second.open(file)
    assert isinstance(following, Download)
    received = bytearray()
    sizes = []
    async for chunk in following.chunks():
        received += chunk
        sizes.append(len(received))
        assert first.blobs.has(file.sha256 or "") or len(received) < SIZE
    assert received == data
    assert len(sizes) > 3  # in pieces, before the leader had it all
    await leading.wait_done()
    assert gets(upstream) == 1


async def test_a_leaders_failure_reaches_its_followers(
    upstream: Upstream, services: list[FileService], payload: tuple[File, bytes]
) -> None:
    file, _ = payload
    upstream.errors["/files/shared-1.0.tar.gz"] = 404
    upstream.hang = 0.5  # the follower comes while the leader waits for the answer
    results = await asyncio.gather(*(read(s, file) for s in services), return_exceptions=True)
    assert all(isinstance(r, HostfitError) and r.status_code == 502 for r in results), results
    assert all("HTTP 404" in str(r) for r in results)
    assert gets(upstream) == 1  # the follower did not ask again


async def test_a_follower_downloads_for_itself_when_the_leader_keeps_no_file(
    upstream: Upstream, services: list[FileService], payload: tuple[File, bytes]
) -> None:
    file, data = payload
    first, second = services
    first.blobs.max_size = SIZE // 2  # the leader's cache cannot take it
    leading = await first.open(file)
    assert isinstance(leading, Download)
    await until(lambda: gets(upstream) > 0)
    got, streamed = await asyncio.gather(read(second, file), _drain(leading))
    assert got == data and streamed == data
    assert gets(upstream) == 2
    assert first.outcomes["uncached"] == 1 and second.outcomes["cached"] == 1


async def _drain(download: Download) -> bytes:
    received = bytearray()
    async for chunk in download.chunks():
        received += chunk
    return bytes(received)


async def test_a_leader_goes_on_while_another_process_follows(
    upstream: Upstream, tmp_path: Path, payload: tuple[File, bytes]
) -> None:
    file, data = payload
    upstream.slow_files[file.filename] = 0.05  # about 2.5 s
    async with AsyncExitStack() as stack:
        client = await stack.enter_async_context(httpx.AsyncClient(timeout=30))
        made = []
        for linger in (1.0, 10.0):
            store = EmbeddedStore(str(tmp_path / "state"))
            stack.push_async_callback(store.close)
            service = FileService(BlobStore(tmp_path / "files"), client, store, linger=linger)
            stack.push_async_callback(service.close)
            made.append(service)
        impatient, patient = made
        await impatient.open(file)  # a client that never reads: it leaves at once
        await until(lambda: bool(os.listdir(impatient.blobs.tmp)) and gets(upstream) > 0)
        assert await read(patient, file) == data
        await until(lambda: impatient.active == 0)
        assert impatient.outcomes["cached"] == 1 and impatient.outcomes["abandoned"] == 0
        assert patient.outcomes["followed"] == 1
        assert gets(upstream) == 1


async def test_a_follower_hands_on_no_byte_it_cannot_vouch_for(tmp_path: Path) -> None:
    """What a shared file system shows a follower early (NFS) cannot complete a transfer:
    its own digest decides, and a leader taking over must begin with the same bytes."""
    blobs = BlobStore(tmp_path)
    data = os.urandom(100_000)
    sha256 = hashlib.sha256(data).hexdigest()
    file = File("f-1.0.tar.gz", "http://127.0.0.1:9/f-1.0.tar.gz", {"sha256": sha256})

    async def gone() -> Holding | None:
        return None  # the leader is gone at the first look

    first = Follower(Download(file), blobs, sha256)
    (blobs.tmp / "one.part").write_bytes(data[:50_000])
    await first.follow(Holding("one.part", started=True, size=len(data)), gone)
    assert first.position == 50_000 and first.download.written == 50_000
    (blobs.tmp / "two.part").write_bytes(b"y" * 50_000 + data[50_000:])
    with pytest.raises(IntegrityError, match="differ"):
        await first.follow(Holding("two.part", started=True, size=len(data)), gone)
    first.close()

    second = Follower(Download(file), blobs, sha256)
    blobs.path(sha256).parent.mkdir(parents=True)
    blobs.path(sha256).write_bytes(data[:-1] + b"!")  # a blob seen before its bytes were
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        await second.finish()
    assert second.download.final_path is None
    second.close()


@pytest.mark.parametrize(
    ("recorded", "passed_on"), [(404, 404), (503, 503), (200, 502), (302, 502)]
)
async def test_a_failure_record_passes_on_error_statuses_only(
    services: list[FileService], payload: tuple[File, bytes], recorded: int, passed_on: int
) -> None:
    """What a leader left for its followers is read from the shared store: a record with
    another status (another version's, a damaged store's) is never an answer that could
    pass for the file."""
    file, _ = payload
    service = services[0]
    record = json.dumps({"message": "boom", "status": recorded}).encode()
    await service.store.set(keys.download_failed(file.sha256 or ""), record, 5)
    with pytest.raises(PeerFailed) as failed:
        await service._failed_elsewhere(file.sha256 or "")
    assert failed.value.status_code == passed_on and "boom" in str(failed.value)


async def test_a_download_goes_on_without_a_lease_the_disk_refuses(
    upstream: Upstream,
    services: list[FileService],
    payload: tuple[File, bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The lock file cannot be made (a read-only or full cache disk): the file is still
    downloaded and verified, as a file the cache cannot take is, not a 500."""

    def refused(path: object) -> int:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(leases_module, "_lock", refused)
    file, data = payload
    assert await read(services[0], file) == data
    assert gets(upstream) == 1
