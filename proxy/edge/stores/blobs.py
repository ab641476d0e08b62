"""Content-addressed file cache: one file per sha256, written via temp file, fsync, rename.

A blob is only ever reachable under its final name after its digest was checked,
so a crash mid-write leaves at most a temp file. What lies on a disk can still change
under hostfit (a damaged disk, a hand, another version): before a process first serves
or analyses a blob it did not write itself, it hashes it once (`checked`), and one whose
bytes are not its name's is removed, to be downloaded again.

The directory may be shared by several processes and replicas, each writing its own
temp files (a download's is followed by the others, `proxy.edge.files`): start-up
removes only temp files and lock files nobody uses (`clean_temp`).

A budget (``max_size``) bounds the bytes under ``sha256/``; the least recently used
blobs are evicted to stay within it. Recency is a blob's mtime, refreshed (at most once
a minute) whenever it is opened for serving, so it survives restarts and every process
on the directory sees it. The index (size per blob, least recently used first) is built
from the directory at start and rebuilt from it before an eviction round, so blobs
written by other processes or outside a `BlobWriter` are counted too.

Eviction never breaks a reader. Blobs are served through a descriptor opened when the
blob is looked up (`open`), and a file unlinked on Linux stays readable through an open
descriptor, its space freed when the last one closes. A blob open in this process is
never chosen (evicting it would free nothing yet); one open in another process on the
same directory may be unlinked, and that reader still gets every byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import secrets
import shutil
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiofiles
import aiofiles.os

from proxy.core.models import is_sha256
from proxy.edge.flight import Flights
from proxy.edge.stores.leases import LOCK_SUFFIX, remove_unheld
from proxy.errors import HostfitError, IntegrityError

log = logging.getLogger("hostfit.cache")

TOUCH_SECONDS = 60.0  # a blob's recency is refreshed at most this often
RESCAN_SECONDS = 30.0  # the index is read again from the directory when this old
SLACK = 0.1  # an eviction round frees this share of the budget more than it must
STALE_TEMP = 900.0  # a temp file untouched this long has no live writer
TEMP_SUFFIX = ".part"
# This host, in temp file names: short, and safe in a file name whatever the host is called.
HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


class CacheFull(HostfitError):
    """The cache cannot take a file: over the budget, or the disk refused it."""

    status_code = 503


def disk_reason(exc: OSError) -> str:
    """What the cache disk said, for logs and clients: 'No space left on device'."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"the cache disk is full ({exc.strerror})"
    if exc.errno == errno.EFBIG:
        return f"the cache disk refused a file this large ({exc.strerror})"
    return f"the cache disk failed: {exc.strerror or exc}"


# (st_dev, st_ino): which file a blob's name pointed at. A name may come to point at
# another file (evicted, then written again; put back by another process).
Identity = tuple[int, int]


def _identity(stat: os.stat_result) -> Identity:
    return stat.st_dev, stat.st_ino


class OpenBlob:
    """A blob opened for reading: it stays readable until closed, even if evicted meanwhile."""

    def __init__(
        self, store: BlobStore, sha256: str, fd: int, size: int, identity: Identity = (0, 0)
    ) -> None:
        self.store = store
        self.sha256 = sha256
        self.fd = fd
        self.size = size
        self.identity = identity  # which file the name pointed at when it was opened
        self.path = store.path(sha256)
        self._closed = False

    def close(self) -> None:
        """Idempotent and never awaits, so a cancelled response cannot leak it."""
        if not self._closed:
            self._closed = True
            os.close(self.fd)
            self.store._unpin(self.sha256)


class Reservation:
    """Room promised to one download of a known size, until it is committed or dropped."""

    def __init__(self, store: BlobStore, size: int) -> None:
        self.store = store
        self.size = size

    def release(self) -> None:
        self.store._reserved -= self.size
        self.size = 0


class BlobStore:
    def __init__(self, root: Path, max_size: int | None = None) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.blobs = root / "sha256"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.max_size = max_size
        self.evicted = 0  # blobs evicted since start
        self.evicted_bytes = 0
        self.on_evicted: list[Callable[[int, int], None]] = []  # told (blobs, bytes) evicted
        self._index: OrderedDict[str, int] = OrderedDict()  # sha256 -> size, oldest first
        self._seen: dict[str, float] = {}  # sha256 -> when this process last used it
        self._used = 0
        self._reserved = 0
        self._pins: dict[str, int] = {}
        # The files whose bytes this process saw match their name: written here, or hashed.
        self._vouched: dict[str, Identity] = {}
        # Files found damaged that the disk would not let go (a read-only cache): passed
        # over as if not here, so that the file is fetched from upstream instead.
        self._damaged: dict[str, Identity] = {}
        self._hashing: Flights[tuple[str, Identity], str | None] = Flights()
        # Whole-file hashes on threads of their own: a first look at a big file after a
        # restart holds a thread for seconds, which renders and writes must not wait out.
        self._hasher = ThreadPoolExecutor(max_workers=2, thread_name_prefix="hostfit-hash")
        self._lock = asyncio.Lock()
        self._scanned = 0.0
        self._added_during_scan: dict[str, int] | None = None
        self._install(_scan(self.blobs), {})

    # --- what is here ------------------------------------------------------------

    @property
    def used(self) -> int:
        """Bytes of blobs in the index (this process's view, reconciled at each eviction)."""
        return self._used

    @property
    def count(self) -> int:
        return len(self._index)

    def clean_temp(self, stale: float = STALE_TEMP) -> int:
        """Remove temp files left by processes gone; returns how many went.

        The directory may be shared with processes of other hosts, alive. A writer
        locks its temp file while it writes, and temp file names say on which host
        they were written. So: lock files and this host's temp files go when nobody
        holds them; other temp files go when nobody holds them either and nobody has
        touched them for ``stale`` seconds (another host's locks may not show here)."""
        removed = 0
        now = time.time()
        for leftover in self.tmp.iterdir():
            name = leftover.name
            if name.startswith(".nfs"):
                continue  # NFS keeps a file removed while open under such a name: in use
            try:
                idle = now - leftover.stat().st_mtime
            except FileNotFoundError:
                continue
            here = name.endswith(LOCK_SUFFIX) or _written_here(name)
            if here or idle > stale:
                gone = remove_unheld(leftover)
                if gone is None and idle > stale:  # no locks on this filesystem
                    leftover.unlink(missing_ok=True)
                    gone = True
                removed += bool(gone)
        return removed

    def temp_name(self, sha256: str | None) -> str:
        """A temp file name of its own: whose bytes it will hold, and written on which
        host (see `clean_temp`)."""
        return f"{sha256 or 'unknown'}.{HOST}.{secrets.token_hex(6)}{TEMP_SUFFIX}"

    def path(self, sha256: str) -> Path:
        if not is_sha256(sha256):
            raise ValueError(f"not a sha256 digest: {sha256!r}")
        return self.blobs / sha256[:2] / sha256

    def has(self, sha256: str) -> bool:
        path = self.path(sha256)
        damaged = self._damaged.get(sha256)
        if damaged is not None:
            try:
                if _identity(path.stat()) == damaged:
                    return False
            except FileNotFoundError:
                return False
            del self._damaged[sha256]  # another file there now
        return path.is_file()

    def open(self, sha256: str) -> OpenBlob | None:
        """The blob, opened for reading and marked used; None when it is not here."""
        path = self.path(sha256)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            self._forget(sha256)
            return None
        stat = os.fstat(fd)
        if self._damaged.get(sha256) == _identity(stat):
            os.close(fd)
            return None
        if time.time() - stat.st_mtime > TOUCH_SECONDS:
            with contextlib.suppress(OSError):  # a read-only cache still serves
                os.utime(fd)
        self._note(sha256, stat.st_size)
        self._pins[sha256] = self._pins.get(sha256, 0) + 1
        return OpenBlob(self, sha256, fd, stat.st_size, _identity(stat))

    async def checked(self, blob: OpenBlob) -> bool:
        """Whether an open blob's bytes are those its name says: hashed the first time
        this process opens a file it did not write (once, however many ask at once).
        When not (bytes changed on disk, or unreadable), it is removed from the cache and
        False. On False, and when the wait is cancelled, ``blob`` is closed."""
        if self._vouched.get(blob.sha256) == blob.identity:
            return True

        def hashing() -> Coroutine[Any, Any, str | None]:
            # A descriptor of its own, taken now: the caller may close its blob meanwhile.
            return self._hash(os.dup(blob.fd), blob.size)

        try:
            digest = await self._hashing.run((blob.sha256, blob.identity), hashing)
        except BaseException:
            blob.close()
            raise
        if digest == blob.sha256:
            self._vouched[blob.sha256] = blob.identity
            return True
        await self._remove_damaged(blob, digest)
        return False

    async def check(self, sha256: str) -> bool:
        """`checked` for a blob by name: False when it is not here, or was not whole."""
        blob = self.open(sha256)
        if blob is None:
            return False
        try:
            return await self.checked(blob)
        finally:
            blob.close()

    async def read(self, sha256: str) -> bytes | None:
        """A small blob's bytes (core metadata, a variant.json), checked against its name
        on every read; None when it is not here, or held other bytes (then removed)."""
        blob = self.open(sha256)
        if blob is None:
            return None
        try:
            data, digest = await asyncio.to_thread(_read_and_hash, blob.fd, blob.size)
            if digest != sha256:
                await self._remove_damaged(blob, digest)
                return None
            return data
        finally:
            blob.close()

    def close(self) -> None:
        """Hashes not started yet are dropped (at shutdown)."""
        self._hasher.shutdown(wait=False, cancel_futures=True)

    async def _hash(self, fd: int, size: int) -> str | None:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._hasher, _sha256_closing, fd, size)

    async def _remove_damaged(self, blob: OpenBlob, digest: str | None) -> None:
        what = f"other bytes (sha256 {digest})" if digest else "bytes that cannot be read"
        try:
            removed = await asyncio.to_thread(_unlink_if_same, blob.path, blob.identity)
        finally:
            blob.close()
        if removed:
            log.warning("cached %s held %s: removed, to be fetched again", blob.sha256, what)
            self._forget(blob.sha256)
        elif removed is None:
            log.warning(
                "cached %s holds %s, and the cache disk refuses its removal: passed over",
                blob.sha256,
                what,
            )
            self._damaged[blob.sha256] = blob.identity
        # else another file is there now (put back by another process): left to be checked

    def _unpin(self, sha256: str) -> None:
        left = self._pins.get(sha256, 1) - 1
        if left:
            self._pins[sha256] = left
        else:
            self._pins.pop(sha256, None)

    def writer(
        self,
        expected_sha256: str | None,
        expected_size: int | None = None,
        reservation: Reservation | None = None,
        temp_name: str | None = None,
    ) -> BlobWriter:
        """A writer that checks the digest, or with None files the bytes under their own.
        ``temp_name``: where in `tmp` it writes (see `temp_name`), for others to follow."""
        return BlobWriter(self, expected_sha256, expected_size, reservation, temp_name)

    async def put_bytes(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        if not self.has(digest):
            async with self.writer(digest, len(data)) as writer:
                await writer.write(data)
            await self.enforce()
        return digest

    # --- the budget ----------------------------------------------------------------

    def takes(self, size: int) -> bool:
        """Whether a file of this size fits the budget at all (it may evict others)."""
        return self.max_size is None or size <= self.max_size

    async def reserve(self, size: int | None) -> Reservation:
        """Room for a file of this size (None: unknown, reserve nothing), evicting to make
        it; raises `CacheFull`, naming the cause, when the file cannot be cached."""
        need = size or 0
        async with self._lock:
            if self.max_size is not None:
                if not self.takes(need):
                    raise CacheFull(
                        f"{need} bytes is more than the cache budget ({self.max_size} bytes)"
                    )
                if self._used + self._reserved + need > self.max_size:
                    await self._evict(self.max_size - self._reserved - need)
                if self._used + self._reserved + need > self.max_size:
                    raise CacheFull("the cache budget is taken by files being served or written")
            free = await asyncio.to_thread(_free_bytes, self.tmp)
            if need and free - self._reserved < need:
                if self.max_size is not None:  # a budget consents to eviction
                    await self._evict(self._used - (need + self._reserved - free))
                    free = await asyncio.to_thread(_free_bytes, self.tmp)
                if free - self._reserved < need:
                    raise CacheFull(
                        f"the cache disk has {max(free - self._reserved, 0)} bytes free, "
                        f"{need} needed"
                    )
            self._reserved += need
            return Reservation(self, need)

    async def enforce(self) -> None:
        """Evict least recently used blobs until the budget holds again (counting what
        other processes added since the last look)."""
        if self.max_size is None:
            return
        stale = time.monotonic() - self._scanned > RESCAN_SECONDS
        if not stale and self._used + self._reserved <= self.max_size:
            return
        async with self._lock:
            await self._evict(self.max_size - self._reserved)

    async def _evict(self, target: int) -> None:
        """Down to ``target`` bytes, and a little below so the next file fits too."""
        if time.monotonic() - self._scanned > RESCAN_SECONDS:
            await self._rescan()
        if self._used <= target:
            return
        assert self.max_size is not None
        goal = target - int(self.max_size * SLACK)
        victims: list[tuple[str, int]] = []
        for sha256, size in self._index.items():
            if self._used <= goal:
                break
            if sha256 in self._pins:
                continue  # being served here: evicting it would free nothing yet
            victims.append((sha256, size))
            self._used -= size
        for sha256, _ in victims:
            del self._index[sha256]
            self._seen.pop(sha256, None)
            self._vouched.pop(sha256, None)
        freed = sum(size for _, size in victims)
        await asyncio.to_thread(_unlink_all, [self.path(sha256) for sha256, _ in victims])
        self.evicted += len(victims)
        self.evicted_bytes += freed
        if victims:
            for tell in self.on_evicted:
                tell(len(victims), freed)
            log.info(
                "evicted %d blob(s), %d bytes, least recently used first; cache holds %d bytes",
                len(victims),
                freed,
                self._used,
            )
        if self._used > target:
            log.warning(
                "cache over its budget: %d bytes held, %d wanted; the rest is being served",
                self._used,
                target,
            )

    async def _rescan(self) -> None:
        self._added_during_scan = {}
        try:
            found = await asyncio.to_thread(_scan, self.blobs)
        finally:
            added, self._added_during_scan = self._added_during_scan, None
        self._install(found, added)

    def _install(self, found: list[tuple[float, str, int]], added: dict[str, int]) -> None:
        """The index from a scan: ordered by mtime, or by this process's own later use."""
        now = time.time()
        merged = {
            name: (max(mtime, self._seen.get(name, 0.0)), size) for mtime, name, size in found
        }
        merged.update({name: (now, size) for name, size in added.items()})
        ordered = sorted(merged.items(), key=lambda item: item[1][0])
        self._index = OrderedDict((name, size) for name, (_, size) in ordered)
        self._seen = {name: self._seen[name] for name in self._index if name in self._seen}
        # Of files gone (evicted by another process): a name written again is hashed again.
        self._vouched = {k: v for k, v in self._vouched.items() if k in self._index}
        self._used = sum(self._index.values())
        self._scanned = time.monotonic()

    def _note(self, sha256: str, size: int) -> None:
        """A blob used now: committed here, or opened for reading."""
        self._used += size - self._index.get(sha256, 0)
        self._index[sha256] = size
        self._index.move_to_end(sha256)
        self._seen[sha256] = time.time()
        if self._added_during_scan is not None:
            self._added_during_scan[sha256] = size

    def _forget(self, sha256: str) -> None:
        self._used -= self._index.pop(sha256, 0)
        self._seen.pop(sha256, None)
        self._vouched.pop(sha256, None)
        self._damaged.pop(sha256, None)


def _written_here(name: str) -> bool:
    parts = name.split(".")
    return len(parts) == 4 and parts[1] == HOST and name.endswith(TEMP_SUFFIX)


def _scan(directory: Path) -> list[tuple[float, str, int]]:
    """Every blob's (mtime, name, size)."""
    found: list[tuple[float, str, int]] = []
    with os.scandir(directory) as shards:
        for shard in shards:
            if not shard.is_dir(follow_symlinks=False):
                continue
            with os.scandir(shard.path) as entries:
                for entry in entries:
                    if not is_sha256(entry.name):
                        continue
                    try:
                        stat = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # evicted by another process meanwhile
                    found.append((stat.st_mtime, entry.name, stat.st_size))
    return found


def _sha256_closing(fd: int, size: int) -> str | None:
    """The sha256 of ``size`` bytes from ``fd``, which it closes; None when they cannot be
    read (a bad sector: the file is as good as damaged)."""
    try:
        digest = hashlib.sha256()
        offset = 0
        while offset < size:
            chunk = os.pread(fd, min(1 << 20, size - offset), offset)
            if not chunk:
                return None  # shorter than when it was opened
            digest.update(chunk)
            offset += len(chunk)
        return digest.hexdigest()
    except OSError:
        return None
    finally:
        os.close(fd)


def _read_and_hash(fd: int, size: int) -> tuple[bytes, str | None]:
    try:
        data = os.pread(fd, size, 0)
    except OSError:
        return b"", None
    return data, hashlib.sha256(data).hexdigest()


def _unlink_if_same(path: Path, identity: Identity) -> bool | None:
    """Unlink ``path`` if it is still the file ``identity`` names: True when it went,
    False when another file (or none) is there now, None when the disk refused."""
    try:
        if _identity(os.stat(path)) != identity:
            return False
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError:
        return None
    return True


def _unlink_all(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _free_bytes(directory: Path) -> int:
    return shutil.disk_usage(directory).free


class BlobWriter:
    """Writes one blob; `commit` verifies size and digest before the atomic rename.

    `detach` gives the file up (removed at once) while the bytes still flow through the
    writer: it goes on hashing them, so `verify` can still check a file that is streamed
    to clients without being cached. The disk's refusals are raised as `CacheFull`.
    """

    def __init__(
        self,
        store: BlobStore,
        sha256: str | None,
        size: int | None,
        reservation: Reservation | None = None,
        temp_name: str | None = None,
    ) -> None:
        self.store = store
        self.sha256 = sha256
        self.expected_size = size
        self.reservation = reservation
        self.temp_path = store.tmp / (temp_name or store.temp_name(sha256))
        self.written = 0
        self.attached = True  # bytes go to the temp file
        self._hash = hashlib.sha256()
        self._file: aiofiles.threadpool.binary.AsyncFileIO | None = None
        self._committed = False

    async def open(self) -> None:
        # Unbuffered: `written` must never count bytes that readers following the
        # download cannot see yet in the file.
        try:
            self._file = await aiofiles.open(self.temp_path, "wb", buffering=0)
        except OSError as exc:
            raise CacheFull(disk_reason(exc)) from None
        with contextlib.suppress(OSError):  # held until closed: in use (`clean_temp`)
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)

    async def __aenter__(self) -> BlobWriter:
        await self.open()
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is None and not self._committed and self.attached:
                await self.commit()
        finally:
            # A commit that failed verification leaves nothing: no temp file, no descriptor.
            if not self._committed:
                await self.discard()

    async def write(self, chunk: bytes) -> None:
        if self.attached:
            assert self._file is not None
            view = memoryview(chunk)
            try:
                while view:
                    done = await self._file.write(view)
                    if not done:
                        raise OSError(errno.EIO, f"could not write to {self.temp_path.name}")
                    view = view[done:]
            except OSError as exc:
                raise CacheFull(disk_reason(exc)) from None
        self._hash.update(chunk)
        self.written += len(chunk)

    def verify(self) -> None:
        if self.expected_size is not None and self.written != self.expected_size:
            raise IntegrityError(
                f"size mismatch: expected {self.expected_size} bytes, got {self.written}"
            )
        actual = self._hash.hexdigest()
        if self.sha256 is None:
            self.sha256 = actual
        elif actual != self.sha256:
            raise IntegrityError(f"sha256 mismatch: index says {self.sha256}, got {actual}")

    async def commit(self) -> Path:
        assert self._file is not None and self.attached
        self.verify()
        assert self.sha256 is not None
        final = self.store.path(self.sha256)
        try:
            await self._file.flush()
            await aiofiles.os.wrap(os.fsync)(self._file.fileno())
            await self._file.close()
            final.parent.mkdir(exist_ok=True)
            await aiofiles.os.replace(self.temp_path, final)
        except OSError as exc:
            await self.discard()
            raise CacheFull(disk_reason(exc)) from None
        self._committed = True
        self._release()
        self.store._note(self.sha256, self.written)
        with contextlib.suppress(OSError):  # hashed as it was written: vouched for here
            self.store._vouched[self.sha256] = _identity(await aiofiles.os.stat(final))
        self.store._damaged.pop(self.sha256, None)
        return final

    async def detach(self) -> None:
        """Stop writing: the temp file is removed; bytes are still counted and hashed."""
        self.attached = False
        await self.discard()

    async def discard(self) -> None:
        self._release()
        if self._file is not None:
            file, self._file = self._file, None
            with contextlib.suppress(OSError):  # closing may report the same full disk
                await file.close()
        await aiofiles.os.wrap(self.temp_path.unlink)(missing_ok=True)

    def _release(self) -> None:
        if self.reservation is not None:
            self.reservation.release()
            self.reservation = None
