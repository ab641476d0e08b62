"""A download in progress, as the clients of one process follow it.

The bytes come from a source (`attach` or `follow`): the temp file this process writes,
or the one another process writes (`proxy.edge.follow`). Each reader reads what has
been written so far and waits for more; the last byte (or the chunk that ends a range
before the file's end) is held back until the download is verified, so a client can
never complete a transfer of bytes that do not match the index.

- **Nobody left, nothing fetched.** A download that no client has followed for
  ``linger`` seconds stops (its producer is cancelled). Each request handed a
  download holds a place in it for ``linger`` seconds until it starts reading, so a
  client that comes back at once (pip retries, range readers) finds it still going.
  Clients of other processes following this one's download count as followers too
  (`followed_elsewhere`).
- **Bytes the cache could not take** (`stop_caching`) reach the followers through a
  bounded window in memory, paced by the slowest; bytes already on disk stay readable
  through the download's open descriptor.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import AsyncGenerator
from pathlib import Path

from proxy.core.models import File
from proxy.errors import HostfitError, IntegrityError

CHUNK = 256 * 1024
LINGER = 10.0  # seconds a download goes on with nobody following it
WINDOW = 4 * 1024 * 1024  # bytes an uncached download holds for its slowest follower
GRACE = 1.0  # seconds a request not reading yet keeps an uncached download's first bytes


class Download:
    """One upstream download in progress, followed by any number of readers."""

    def __init__(self, file: File, linger: float = LINGER) -> None:
        self.file = file
        self.size: int | None = None
        self.written = 0
        self.final_path: Path | None = None
        self.error: HostfitError | None = None
        self.done = False
        self.uncached: str | None = None  # why the bytes go to no cache file
        self.abandoned = False
        self.linger = linger
        self.task: asyncio.Task[None] | None = None
        self._fd: int | None = None  # on the source: bytes [0, _disk_end), for readers
        self._source = 0  # counts the sources: a reader on an older one opens the new one
        self._disk_end = 0
        self._memory: deque[tuple[int, bytes]] = deque()  # (offset, bytes) past _disk_end
        self._memory_bytes = 0
        self._trimmed = False  # bytes were dropped from memory: a new reader cannot follow
        self._readers: dict[int, int] = {}  # reader -> position
        self._next_reader = 0
        self._waiters = 0
        self._places: list[float] = []  # when each request not reading yet was handed this
        self._peers_until = 0.0  # clients of other processes follow this one's download
        self._last_seen = 0.0
        self._pulse = asyncio.Event()  # set when bytes arrive or the download ends
        self._room = asyncio.Event()  # set when followers move on: the producer may go on

    # --- followers -------------------------------------------------------------------

    @property
    def joinable(self) -> bool:
        """A new request may follow this download from its first byte."""
        return not (self.done or self._trimmed or self.abandoned)

    def promise(self) -> None:
        """Hold a place for a request that will follow soon (see the module's doc)."""
        loop = asyncio.get_running_loop()
        self._last_seen = loop.time()
        self._places.append(self._last_seen)
        loop.call_later(GRACE + 0.05, self._room.set)
        loop.call_later(self.linger + 0.05, self._check)

    def _claim(self) -> None:
        if self._places:
            self._places.pop(0)

    def _held_places(self, within: float | None = None) -> bool:
        """Whether a request handed this download in the last ``within`` seconds (default:
        `linger`) has not started reading yet."""
        now = asyncio.get_running_loop().time()
        self._places = [since for since in self._places if since > now - self.linger]
        since = now - (self.linger if within is None else within)
        return any(place > since for place in self._places)

    def _anyone(self) -> bool:
        return bool(self._readers or self._waiters or self._held_places()) or self._peers()

    def _peers(self) -> bool:
        return self._peers_until > asyncio.get_running_loop().time()

    @property
    def wanted(self) -> bool:
        """Clients of this process follow it, or will soon."""
        return bool(self._readers or self._waiters or self._held_places())

    def followed_elsewhere(self, seconds: float) -> None:
        """Clients of another process follow this download: it goes on for ``seconds``
        more even if nobody here does."""
        loop = asyncio.get_running_loop()
        self._last_seen = loop.time()
        self._peers_until = self._last_seen + seconds
        loop.call_later(seconds + 0.05, self._check)

    def _left(self) -> None:
        loop = asyncio.get_running_loop()
        self._last_seen = loop.time()
        self._room.set()
        if self.done:
            self._release()
        elif not self._anyone():
            loop.call_later(self.linger + 0.05, self._check)

    def _check(self) -> None:
        """Timer: stop a download nobody has followed for `linger` seconds."""
        self._room.set()  # places expired: the producer may drop what they held
        if self.done:
            self._release()
            return
        if self._anyone() or self.abandoned:
            return
        loop = asyncio.get_running_loop()
        quiet = loop.time() - self._last_seen
        if quiet < self.linger:
            loop.call_later(self.linger - quiet + 0.05, self._check)
            return
        self.abandoned = True
        if self.task is not None:
            self.task.cancel()

    # --- the producer's side ---------------------------------------------------------

    def attach(self, temp_path: Path) -> None:
        """Readers read from this file from now on: its bytes so far are the same as
        those of the previous source."""
        self.follow(os.open(temp_path, os.O_RDONLY | os.O_CLOEXEC))

    def follow(self, fd: int) -> None:
        """Like `attach`, with a descriptor this download now owns."""
        if self._fd is not None:
            os.close(self._fd)  # readers read through descriptors of their own
        self._fd = fd
        self._source += 1

    def stop_caching(self, reason: str, disk_end: int) -> None:
        """From now on the bytes past ``disk_end`` are kept in memory only."""
        self.uncached = reason
        self._disk_end = disk_end

    def add(self, chunk: bytes) -> None:
        if self.uncached is None:
            self.written += len(chunk)
            self._disk_end = self.written
        else:
            self._memory.append((self.written, chunk))
            self._memory_bytes += len(chunk)
            self.written += len(chunk)
        self._wake()

    async def pace(self) -> None:
        """Wait until the slowest follower leaves room in the memory window."""
        while True:
            self._trim()
            if self._memory_bytes <= WINDOW:
                return
            self._room.clear()
            await self._room.wait()

    def finish(self) -> None:
        self.done = True
        self._wake()
        self._release()

    def _trim(self) -> None:
        """Drop the bytes every follower has read. A request about to read holds them for
        `GRACE` seconds; one slower than that finds them gone and fails (rare: it is the
        time from the request to its first read)."""
        if not self._memory or self._held_places(GRACE):
            return
        floor = min(self._readers.values(), default=self.written)
        while self._memory and self._memory[0][0] + len(self._memory[0][1]) <= floor:
            self._memory_bytes -= len(self._memory.popleft()[1])
            self._trimmed = True

    def _release(self) -> None:
        """Once done, and nobody reads or may still come: close the descriptor."""
        if self._readers or self._held_places():
            return
        self._memory.clear()
        self._memory_bytes = 0
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _wake(self) -> None:
        self._pulse.set()
        self._pulse = asyncio.Event()

    async def _wait(self) -> None:
        await self._pulse.wait()

    # --- the readers' side -----------------------------------------------------------

    async def wait_started(self) -> None:
        """Until the first byte is here (headers known) or the download ended."""
        self._waiters += 1
        try:
            while not (self.written > 0 or self.done):
                await self._wait()
        finally:
            self._waiters -= 1
            self._left()
        if self.error is not None and self.written == 0:
            raise self.error

    async def wait_done(self) -> None:
        """Until the download ended, for a request that reads none of it: its place is
        taken here."""
        self._claim()
        await self.until_done()

    async def until_done(self) -> None:
        """Until the download ended, for a request that also reads it (`chunks` takes its
        place), or reads none of it but has no place of its own."""
        self._waiters += 1
        try:
            while not self.done:
                await self._wait()
        finally:
            self._waiters -= 1
            self._left()

    async def chunks(self, start: int = 0, stop: int | None = None) -> AsyncGenerator[bytes, None]:
        """Follow the download from ``start`` to ``stop`` (default: the end); raises if it
        fails before then. Bytes are yielded as soon as they are written, except the
        last ones: the file's last byte, or the chunk that ends a range before the file's
        end, waits for the digest."""
        self._claim()
        reader = self._next_reader
        self._next_reader += 1
        self._readers[reader] = start
        position = start
        fd: int | None = None
        source = self._source
        try:
            while True:
                if stop is not None and position >= stop:
                    return
                while not self._readable(position):
                    await self._wait()
                if self.error is not None:
                    raise self.error
                limit = self.written if self.done else self.written - 1
                if stop is not None:
                    limit = min(limit, stop)
                if position >= limit and self.done:
                    return
                while position < limit:
                    if position < self._disk_end:
                        if fd is not None and source != self._source:
                            os.close(fd)
                            fd = None
                        if fd is None:
                            source = self._source
                            fd = self._reader_fd()
                        size = min(CHUNK, min(limit, self._disk_end) - position)
                        data = await asyncio.to_thread(os.pread, fd, size, position)
                        if not data:
                            raise IntegrityError(f"{self.file.filename}: cache file shrank")
                    else:
                        data = self._from_memory(position, limit)
                    position += len(data)
                    self._readers[reader] = position
                    if stop is not None and position >= stop:
                        # Asked even when the download ended during this read: it may
                        # have ended with the digest wrong.
                        await self._verified(reader)
                    yield data
                    if self._memory:
                        self._room.set()
        finally:
            # A plain descriptor, closed without awaiting: a reader cancelled or dropped
            # at any point (a client gone, a shutdown) never leaves an open file behind.
            if fd is not None:
                os.close(fd)
            self._readers.pop(reader, None)
            self._left()

    async def _verified(self, reader: int) -> None:
        """Until the download is done; raises if it failed. A range's reader holding its
        last chunk needs no more bytes kept for it meanwhile."""
        del self._readers[reader]
        self._room.set()
        self._waiters += 1
        try:
            while not self.done:
                await self._wait()
        finally:
            self._waiters -= 1
        if self.error is not None:
            raise self.error

    def _readable(self, position: int) -> bool:
        # The final byte is held back until the digest is verified.
        return self.done or self.written - 1 > position

    def _reader_fd(self) -> int:
        if self._fd is not None:
            return os.dup(self._fd)
        if self.final_path is not None:
            try:
                return os.open(self.final_path, os.O_RDONLY)
            except FileNotFoundError:
                pass
        raise HostfitError(f"{self.file.filename}: the download's bytes are gone; retry")

    def _from_memory(self, position: int, limit: int) -> bytes:
        for offset, data in self._memory:
            end = offset + len(data)
            if offset <= position < end:
                return data[position - offset : min(limit, end) - offset]
        raise HostfitError(f"{self.file.filename}: byte {position} is no longer held; retry")
