"""The blob store (`BlobStore`): content-addressed, written through a verified temp file,
bounded by a budget with least-recently-used eviction that never breaks a reader."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path

import pytest

from proxy.edge.stores import blobs as blobs_module
from proxy.edge.stores.blobs import HOST, BlobStore, CacheFull
from proxy.errors import IntegrityError

SIZE = 1000


def blob(n: int, size: int = SIZE) -> bytes:
    return bytes([n]) * size


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read(store: BlobStore, sha256: str) -> bytes:
    opened = store.open(sha256)
    assert opened is not None, "not in the store"
    try:
        return os.pread(opened.fd, opened.size + 1, 0)
    finally:
        opened.close()


async def test_a_verified_blob_is_found_by_its_digest(blobs: BlobStore) -> None:
    data = blob(1)
    async with blobs.writer(digest(data), len(data)) as writer:
        await writer.write(data[:10])
        await writer.write(data[10:])
    assert blobs.has(digest(data)) and read(blobs, digest(data)) == data
    assert blobs.path(digest(data)).parent.name == digest(data)[:2]
    assert (blobs.used, blobs.count) == (SIZE, 1)
    assert list(blobs.tmp.iterdir()) == []


@pytest.mark.parametrize(
    ("expected", "size", "message"),
    [
        (digest(b"other bytes"), None, "sha256 mismatch"),
        (digest(blob(1)), SIZE + 1, "size mismatch"),
    ],
)
async def test_bytes_that_do_not_match_are_never_stored(
    blobs: BlobStore, expected: str, size: int | None, message: str
) -> None:
    writer = blobs.writer(expected, size)
    await writer.open()
    try:
        await writer.write(blob(1))
        with pytest.raises(IntegrityError, match=message):
            await writer.commit()
    finally:
        await writer.discard()  # as the file service does with a writer it did not commit
    assert not blobs.has(expected) and not blobs.has(digest(blob(1)))
    assert list(blobs.tmp.iterdir()) == []  # the temp file went too
    assert blobs.count == 0


async def test_bytes_of_unknown_digest_are_filed_under_their_own(blobs: BlobStore) -> None:
    async with blobs.writer(None) as writer:
        await writer.write(blob(2))
    assert writer.sha256 == digest(blob(2)) and blobs.has(digest(blob(2)))
    assert await blobs.put_bytes(blob(2)) == digest(blob(2))  # already there: kept
    assert blobs.count == 1


async def test_a_failed_write_leaves_nothing(blobs: BlobStore) -> None:
    with pytest.raises(RuntimeError):
        async with blobs.writer(digest(blob(3))) as writer:
            await writer.write(blob(3))
            raise RuntimeError("the client went away")
    assert not blobs.has(digest(blob(3))) and list(blobs.tmp.iterdir()) == []


async def test_a_commit_failing_at_exit_leaves_nothing(blobs: BlobStore) -> None:
    """The writer's own commit on a clean exit fails verification: no temp file is left."""
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        async with blobs.writer(digest(b"other")) as writer:
            await writer.write(b"these bytes")
    assert list(blobs.tmp.iterdir()) == []
    assert not blobs.has(digest(b"these bytes"))


async def test_a_blob_damaged_on_disk_is_found_out_by_a_process_that_did_not_write_it(
    tmp_path: Path,
) -> None:
    """The writer hashed its bytes; another process on the directory (or this one after a
    restart) hashes a blob once before trusting it, and removes one that is not whole."""
    writer_side = BlobStore(tmp_path)
    whole, small = blob(1, 300_000), b"Metadata-Version: 2.1\n"
    for data in (whole, small):
        async with writer_side.writer(digest(data), len(data)) as writer:
            await writer.write(data)
    assert await writer_side.check(digest(whole)) and await writer_side.read(digest(small)) == small
    for data in (whole, small):
        writer_side.path(digest(data)).write_bytes(data[:-1] + b"?")
    reader_side = BlobStore(tmp_path)
    assert not await reader_side.check(digest(whole))
    assert await reader_side.read(digest(small)) is None
    assert not reader_side.has(digest(whole)) and not reader_side.has(digest(small))
    assert await reader_side.read(digest(small)) is None and not await reader_side.check(
        digest(whole)
    )
    data = blob(2, 5000)
    reader_side.path(digest(data)).parent.mkdir(exist_ok=True)
    reader_side.path(digest(data)).write_bytes(data)  # whole, written outside a writer
    assert await reader_side.check(digest(data)) and read(reader_side, digest(data)) == data


def placed(store: BlobStore, data: bytes) -> str:
    """Bytes put under their name as another process would: not through this store."""
    path = store.path(digest(data))
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return digest(data)


async def test_a_blob_is_hashed_once_however_many_ask_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = BlobStore(tmp_path)
    sha256 = placed(store, blob(3, 200_000))
    hashed = []
    real = blobs_module._sha256_closing

    def counted(fd: int, size: int) -> str | None:
        hashed.append(size)
        time.sleep(0.2)  # long enough for every caller to join
        return real(fd, size)

    monkeypatch.setattr(blobs_module, "_sha256_closing", counted)
    assert await asyncio.gather(*(store.check(sha256) for _ in range(6))) == [True] * 6
    assert await store.check(sha256) and hashed == [200_000]
    assert not store._pins  # every blob opened for it closed


async def test_a_check_given_up_closes_its_blob(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = BlobStore(tmp_path)
    sha256 = placed(store, blob(4))
    real = blobs_module._sha256_closing

    def slow(fd: int, size: int) -> str | None:
        time.sleep(0.3)
        return real(fd, size)

    monkeypatch.setattr(blobs_module, "_sha256_closing", slow)
    opened = store.open(sha256)
    assert opened is not None
    waiting = asyncio.ensure_future(store.checked(opened))
    await asyncio.sleep(0.05)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert not store._pins  # closed, so evictable again
    assert await store.check(sha256)  # the hash went on, and a later caller has its answer


async def test_an_unreadable_blob_is_damaged_and_one_the_disk_keeps_is_passed_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = BlobStore(tmp_path)
    data = blob(5)
    sha256 = placed(store, data)
    monkeypatch.setattr(blobs_module, "_sha256_closing", lambda fd, size: os.close(fd))
    monkeypatch.setattr(blobs_module, "_unlink_if_same", lambda path, identity: None)
    assert not await store.check(sha256)  # a bad sector: unreadable bytes are no blob
    assert store.path(sha256).exists()  # a read-only disk kept it...
    assert not store.has(sha256) and store.open(sha256) is None  # ...and it is passed over
    monkeypatch.undo()
    store.path(sha256).unlink()
    async with store.writer(sha256, len(data)) as writer:  # fetched again, and cached
        await writer.write(data)
    assert store.has(sha256) and read(store, sha256) == data


async def test_a_name_written_again_after_eviction_is_hashed_again(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, max_size=3 * SIZE)
    first = blob(6)
    async with store.writer(digest(first), len(first)) as writer:
        await writer.write(first)
    for n in (7, 8, 9):  # the budget pushes the first out
        async with store.writer(digest(blob(n)), SIZE) as writer:
            await writer.write(blob(n))
        await store.enforce()
    assert not store.has(digest(first))
    store.path(digest(first)).write_bytes(first[:-1] + b"?")  # other bytes under its name
    assert not await store.check(digest(first))
    assert not store.has(digest(first))


def test_only_digests_name_blobs(blobs: BlobStore) -> None:
    for bad in ("../../etc/passwd", "AB" * 32, "ab" * 31):
        with pytest.raises(ValueError, match="not a sha256"):
            blobs.path(bad)
    assert blobs.open("ab" * 32) is None


async def test_the_least_recently_used_blob_is_evicted(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "files", max_size=int(SIZE * 2.5))
    first, second = await store.put_bytes(blob(1)), await store.put_bytes(blob(2))
    read(store, first)  # used since: now the most recent
    third = await store.put_bytes(blob(3))
    assert (store.has(first), store.has(second), store.has(third)) == (True, False, True)
    assert (store.evicted, store.evicted_bytes, store.used) == (1, SIZE, 2 * SIZE)


async def test_recency_survives_a_restart(tmp_path: Path) -> None:
    root = tmp_path / "files"
    unbounded = BlobStore(root)
    names = [await unbounded.put_bytes(blob(n)) for n in (1, 2, 3)]
    for age, name in zip((100, 300, 200), names, strict=True):  # the second is the oldest
        when = 1_700_000_000 - age
        os.utime(unbounded.path(name), (when, when))
    restarted = BlobStore(root, max_size=int(SIZE * 2.5))
    assert restarted.used == 3 * SIZE
    await restarted.enforce()
    assert [restarted.has(n) for n in names] == [True, False, True]


async def test_a_blob_being_read_is_not_evicted_here_and_stays_readable(tmp_path: Path) -> None:
    root = tmp_path / "files"
    store = BlobStore(root, max_size=int(SIZE * 1.5))
    held = await store.put_bytes(blob(1))
    reading = store.open(held)
    assert reading is not None
    await store.put_bytes(blob(2))  # over budget: the open blob is spared
    assert store.has(held) and not store.has(digest(blob(2)))
    # Another process on the directory may evict it: the open descriptor still reads it.
    other = BlobStore(root, max_size=SIZE // 2)
    await other.enforce()
    assert not store.has(held)
    assert os.pread(reading.fd, SIZE + 1, 0) == blob(1)
    reading.close()
    reading.close()  # idempotent


async def test_reservations_are_bounded_by_the_budget(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "files", max_size=2 * SIZE)
    with pytest.raises(CacheFull, match="more than the cache budget"):
        await store.reserve(2 * SIZE + 1)
    held = await store.reserve(SIZE + SIZE // 2)
    with pytest.raises(CacheFull, match="taken by files being served or written"):
        await store.reserve(SIZE)
    held.release()
    (await store.reserve(SIZE)).release()
    assert CacheFull.status_code == 503


async def test_start_up_removes_only_temp_files_nobody_writes(blobs: BlobStore) -> None:
    ours_left = blobs.tmp / blobs.temp_name("ab" * 32)
    ours_left.write_bytes(b"left by a process gone")
    elsewhere_fresh = blobs.tmp / f"{'cd' * 32}.otherhost.0123456789ab.part"
    elsewhere_fresh.write_bytes(b"another host may be writing this")
    elsewhere_stale = blobs.tmp / f"{'ef' * 32}.otherhost.ba9876543210.part"
    elsewhere_stale.write_bytes(b"nobody touched this for long")
    os.utime(elsewhere_stale, (1_000_000_000, 1_000_000_000))
    writer = blobs.writer(digest(blob(4)))
    await writer.open()  # being written here: locked
    await writer.write(blob(4)[:10])
    try:
        assert HOST in ours_left.name
        assert blobs.clean_temp() == 2
        assert sorted(p.name for p in blobs.tmp.iterdir()) == sorted(
            [elsewhere_fresh.name, writer.temp_path.name]
        )
    finally:
        await writer.discard()
