"""Following another process's download: its growing temp file, then the blob it commits.

The process that holds a file's download lease (`proxy.edge.stores.leases`) publishes a
`Holding`: the name of its temp file in the shared ``tmp`` directory, the size the
upstream announced, and whether it still writes the file at all. A `Follower` hands the
bytes of that file to this process's `Download` as they appear, hashing each one, and
completes the download from the committed blob only if its own digest of every byte it
handed on matches the index's. So what a file system shows a reader early (NFS caches
attributes and pages) can cut a transfer short, never complete a wrong one.

When the leader changes (the first one died and another took over), the new leader's
file must begin with the bytes already handed on: the follower checks that before it
reads on from it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass

from proxy.edge.download import CHUNK, Download
from proxy.edge.stores.blobs import BlobStore
from proxy.errors import IntegrityError

POLL = 0.05  # seconds between looks at a followed file
LOOK = 0.25  # seconds between looks at what its leader publishes


@dataclass(frozen=True)
class Holding:
    """What a download's leader publishes for the processes following it."""

    temp: str  # its temp file, in the blob store's tmp directory
    started: bool = False  # the upstream answered: the file exists, `size` is known
    size: int | None = None  # the upstream's Content-Length
    caching: bool = True  # False: the bytes go to no file; there is nothing to follow

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, value: bytes | None) -> Holding | None:
        """None for no value, or one half written (a lock file being rewritten)."""
        if not value:
            return None
        try:
            data = json.loads(value)
            return cls(
                temp=os.path.basename(str(data["temp"])),
                started=bool(data["started"]),
                size=None if data["size"] is None else int(data["size"]),
                caching=bool(data["caching"]),
            )
        except (ValueError, TypeError, KeyError):
            return None


class Follower:
    def __init__(self, download: Download, blobs: BlobStore, sha256: str) -> None:
        self.download = download
        self.blobs = blobs
        self.sha256 = sha256
        self.position = 0  # bytes hashed and handed to the download
        self._hash = hashlib.sha256()
        self._fd: int | None = None  # the file followed now

    def committed(self) -> bool:
        return self.blobs.has(self.sha256)

    async def follow(
        self, holding: Holding, current: Callable[[], Awaitable[Holding | None]]
    ) -> None:
        """Hand on the leader's bytes until the file is committed, or the leader
        changes, goes or stops writing the file (the caller looks which). ``current``
        reads what the leader publishes now."""
        while not holding.started:
            await asyncio.sleep(LOOK)
            found = None if self.committed() else await current()
            if found is None or found.temp != holding.temp:
                return
            holding = found
        try:
            fd = os.open(self.blobs.tmp / holding.temp, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            await asyncio.sleep(POLL)
            return  # committed meanwhile, or given up
        await self._switch(fd)
        if self.download.size is None:
            size = holding.size if holding.size is not None else self.download.file.size
            self.download.size = size
        loop = asyncio.get_running_loop()
        looked = loop.time()
        while True:
            await self._read_on()
            if self.committed():
                return
            if loop.time() - looked >= LOOK:
                looked = loop.time()
                if await current() != holding:
                    return
            await asyncio.sleep(POLL)

    async def finish(self) -> None:
        """Complete the download from the committed blob: the rest of its bytes, and the
        digest of them all checked."""
        path = self.blobs.path(self.sha256)
        await self._switch(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
        await self._read_on()
        if self.download.size is None:
            self.download.size = self.position
        digest = self._hash.hexdigest()
        if digest != self.sha256:
            raise IntegrityError(f"sha256 mismatch: index says {self.sha256}, got {digest}")
        self.download.final_path = path

    def prefix(self) -> tuple[int, int] | None:
        """(descriptor, length) of the bytes on disk a new leader may carry on from:
        those of the file followed last, whatever became of it."""
        if self._fd is None:
            return None
        length = os.fstat(self._fd).st_size
        return (self._fd, length) if length > 0 else None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    async def _switch(self, fd: int) -> None:
        """Follow ``fd`` from now on; the bytes handed on so far must be its first ones."""
        if self._fd is not None and _same_file(self._fd, fd):
            os.close(fd)  # the same file (a temp file renamed to its blob)
            return
        try:
            if self.position:
                await self._check_prefix(fd)
        except BaseException:
            os.close(fd)
            raise
        self.close()
        self._fd = fd
        self.download.follow(os.dup(fd))

    async def _check_prefix(self, fd: int) -> None:
        copy = hashlib.sha256()
        offset = 0
        while offset < self.position:
            data = await asyncio.to_thread(os.pread, fd, min(CHUNK, self.position - offset), offset)
            if not data:
                await asyncio.sleep(POLL)  # the new leader has not copied that far yet
                continue
            copy.update(data)
            offset += len(data)
        if copy.digest() != self._hash.digest():
            raise IntegrityError(
                f"the bytes already sent differ from those of the download taken over "
                f"(first {self.position} bytes)"
            )

    async def _read_on(self) -> None:
        assert self._fd is not None
        while True:
            data = await asyncio.to_thread(os.pread, self._fd, CHUNK, self.position)
            if not data:
                return
            self._hash.update(data)
            self.position += len(data)
            self.download.add(data)


def _same_file(one: int, other: int) -> bool:
    first, second = os.fstat(one), os.fstat(other)
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)
