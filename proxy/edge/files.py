"""Files: served from the blob cache, or streamed to clients while being cached.

One upstream download per file, however many clients ask at once: the download
writes a temp file and every client follows it, reading what has been written.
The last byte is held back until the digest is verified, so a client can never
complete a transfer of bytes that do not match the index; on a mismatch or a
truncated upstream body every client's transfer is aborted and nothing is cached.

Bounds on a download:

- **A total deadline** (``deadline`` seconds, from the first request to the verified
  last byte): an upstream that drips bytes cannot hold clients for ever. Past it the
  download fails as a timeout: 504 for a client that has no byte yet, a cut-off
  transfer for the others; nothing is cached.
- **Nobody left, nothing fetched.** A download that no client has followed for
  ``linger`` seconds stops, and its temp file is removed. Each request handed a
  download holds a place in it for ``linger`` seconds until it starts reading, so a
  client that comes back at once (pip retries, range readers) finds it still going.
  The price: a file whose clients all left is not cached, and the analysis that a
  completed download would have fed is made from the upstream's ranges instead.
- **A body cut short** (a reset, a close before Content-Length) is asked for again
  where no client can notice: from the start while no byte has arrived, else from the
  byte reached with a ``Range`` request when the upstream serves ranges (the sha256
  still covers the whole file). Otherwise a transfer that began fails visibly.
  Failures before the answer's headers (connection errors, 502/503/504) are the
  client transport's to retry, not this module's.
- **A cache that cannot take the file** (over the budget, or a disk that refuses a
  write) does not stop the transfer: the temp file is removed, and the rest of the
  bytes reach the download's followers through a bounded window in memory, paced by
  the slowest. Bytes already on disk stay readable through the download's open
  descriptor. Nothing is cached; a later request downloads the file again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
from collections import deque
from collections.abc import AsyncGenerator, Callable
from pathlib import Path

import httpx

from proxy.core.models import File
from proxy.edge.stores.blobs import BlobStore, BlobWriter, CacheFull, OpenBlob
from proxy.edge.stores.state import StateStore
from proxy.errors import HostfitError, IntegrityError, UpstreamError, UpstreamTimeout

log = logging.getLogger("hostfit.files")

CHUNK = 256 * 1024
DEADLINE = 1800.0  # seconds a download may take in all
LINGER = 10.0  # seconds a download goes on with nobody following it
WINDOW = 4 * 1024 * 1024  # bytes an uncached download holds for its slowest follower
GRACE = 1.0  # seconds a request not reading yet keeps an uncached download's first bytes
ATTEMPTS = 3  # requests per download: the first, then restarts or resumptions
BACKOFF = 0.25  # seconds before asking again, doubled each time, jittered
# A body cut short. Timeouts are not asked again: the upstream had its chance, and the
# deadline bounds the whole download.
_CUT_SHORT = (httpx.ReadError, httpx.RemoteProtocolError)


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
        self._fd: int | None = None  # on the temp file: bytes [0, _disk_end), for readers
        self._disk_end = 0
        self._memory: deque[tuple[int, bytes]] = deque()  # (offset, bytes) past _disk_end
        self._memory_bytes = 0
        self._trimmed = False  # bytes were dropped from memory: a new reader cannot follow
        self._readers: dict[int, int] = {}  # reader -> position
        self._next_reader = 0
        self._waiters = 0
        self._places: list[float] = []  # when each request not reading yet was handed this
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
        return bool(self._readers or self._waiters or self._held_places())

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
        self._fd = os.open(temp_path, os.O_RDONLY)

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
        self._claim()
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
                        if fd is None:
                            fd = self._reader_fd()
                        size = min(CHUNK, min(limit, self._disk_end) - position)
                        data = await asyncio.to_thread(os.pread, fd, size, position)
                        if not data:
                            raise IntegrityError(f"{self.file.filename}: cache file shrank")
                    else:
                        data = self._from_memory(position, limit)
                    position += len(data)
                    self._readers[reader] = position
                    if stop is not None and position >= stop and not self.done:
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


class FileService:
    def __init__(
        self,
        blobs: BlobStore,
        client: httpx.AsyncClient,
        store: StateStore,
        deadline: float = DEADLINE,
        linger: float = LINGER,
    ) -> None:
        self.blobs = blobs
        self.client = client
        self.store = store
        self.deadline = deadline
        self.linger = linger
        self._downloads: dict[str, Download] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.on_cached: list[Callable[[File], None]] = []  # told of every file committed
        # How downloads ended, for metrics: cached, uncached, failed, timed_out, abandoned.
        self.outcomes: dict[str, int] = dict.fromkeys(
            ("cached", "uncached", "failed", "timed_out", "abandoned"), 0
        )

    @property
    def active(self) -> int:
        return len(self._downloads)

    async def open(self, file: File) -> OpenBlob | Download:
        """The cached blob, opened (the caller closes it), or the download to follow."""
        sha256 = file.sha256
        if sha256 is None:
            raise IntegrityError(f"{file.filename}: the index gives no sha256 to verify it")
        blob = self.blobs.open(sha256)
        if blob is not None:
            return blob
        download = self._downloads.get(sha256)
        if download is None or not download.joinable:
            download = Download(file, self.linger)
            self._downloads[sha256] = download
            task = asyncio.create_task(self._download(download, sha256))
            download.task = task
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        download.promise()
        return download

    async def digest_of(self, file: File) -> str:
        """Download a file the index gives no sha256 for, cache it, and return its digest.

        Trust on first use: the first bytes seen become the file's identity, and every
        later download is verified against them.
        """
        try:
            async with asyncio.timeout(self.deadline):
                async with self.client.stream("GET", file.url) as response:
                    if response.status_code != 200:
                        raise UpstreamError(
                            file.url, f"HTTP {response.status_code} for {file.filename}"
                        )
                    async with self.blobs.writer(None) as writer:
                        async for chunk in response.aiter_bytes(CHUNK):
                            await writer.write(chunk)
                        await writer.commit()
        except (TimeoutError, httpx.TimeoutException):
            raise UpstreamTimeout(file.url, f"timed out downloading {file.filename}") from None
        except httpx.HTTPError as exc:
            raise UpstreamError(file.url, f"download of {file.filename} failed: {exc}") from None
        await self.blobs.enforce()
        assert writer.sha256 is not None
        return writer.sha256

    async def fetch(self, file: File) -> Path:
        """The cached path of a file, downloading it first if needed; `CacheFull` (503)
        when the cache could not take it."""
        blob = await self.fetch_blob(file)
        blob.close()
        return blob.path

    async def fetch_blob(self, file: File) -> OpenBlob:
        """Like `fetch`, the blob opened (the caller closes it)."""
        opened = await self.open(file)
        if isinstance(opened, OpenBlob):
            return opened
        await opened.wait_done()
        if opened.error is not None:
            raise opened.error
        blob = self.blobs.open(file.sha256 or "")
        if blob is None:
            reason = opened.uncached or "evicted as soon as it arrived"
            raise CacheFull(f"{file.filename} is not in the cache: {reason}")
        return blob

    async def _download(self, download: Download, sha256: str) -> None:
        file = download.file
        outcome = "failed"
        try:
            async with asyncio.timeout(self.deadline):
                await self._fetch(download, sha256)
            if download.final_path is not None:
                outcome = "cached"
                for listener in self.on_cached:
                    listener(file)
                await self.store.set(
                    f"file:{sha256}",
                    json.dumps({"filename": file.filename, "size": download.written}).encode(),
                )
            else:
                outcome = "uncached"
        except TimeoutError:
            outcome = "timed_out"
            download.error = UpstreamTimeout(
                file.url,
                f"{file.filename} not downloaded within the file deadline "
                f"({self.deadline:g} s; {download.written} bytes arrived)",
            )
        except asyncio.CancelledError:
            if not download.abandoned:
                download.error = HostfitError(f"{file.filename}: download cancelled")
                raise
            outcome = "abandoned"
            download.error = HostfitError(f"{file.filename}: download stopped, no client left")
        except IntegrityError as exc:
            download.error = IntegrityError(f"{file.filename}: {exc}")
        except httpx.TimeoutException:
            download.error = UpstreamTimeout(file.url, f"timed out downloading {file.filename}")
        except httpx.HTTPError as exc:
            download.error = UpstreamError(
                file.url, f"download of {file.filename} failed: {type(exc).__name__}: {exc}"
            )
        except HostfitError as exc:
            download.error = exc
        except Exception as exc:  # never leave followers waiting on a dead task
            log.exception("download of %s failed", file.filename)
            download.error = HostfitError(f"{file.filename}: {exc}")
        finally:
            self.outcomes[outcome] += 1
            if outcome == "abandoned":
                log.info("stopped downloading %s: no client left", file.filename)
            elif download.error is not None:
                log.warning("not cached: %s", download.error)
            download.finish()
            if self._downloads.get(sha256) is download:
                del self._downloads[sha256]
        if outcome == "cached":
            try:
                await self.blobs.enforce()
            except OSError as exc:
                log.warning("cache eviction failed: %s", exc)

    async def _fetch(self, download: Download, sha256: str) -> None:
        """Requests until every byte is here and verified; retries and resumptions as the
        module's doc says."""
        file = download.file
        writer: BlobWriter | None = None
        etag: str | None = None
        resumable = False
        try:
            for attempt in range(ATTEMPTS):
                headers = {}
                if download.written:
                    headers["Range"] = f"bytes={download.written}-"
                    if etag:
                        headers["If-Range"] = etag
                answered = False
                try:
                    async with self.client.stream("GET", file.url, headers=headers) as response:
                        _check_status(download, response)
                        answered = True
                        if writer is None:
                            length = response.headers.get("content-length")
                            download.size = (
                                int(length) if length and length.isdigit() else file.size
                            )
                            tag = response.headers.get("etag")
                            etag = tag if tag and not tag.startswith("W/") else None
                            resumable = response.headers.get("accept-ranges") == "bytes"
                            writer = await self._writer(download, sha256)
                        # As the bytes come: a drip reaches clients as it drips.
                        async for chunk in response.aiter_bytes():
                            await self._take(download, writer, chunk)
                    break
                except _CUT_SHORT as exc:
                    more = download.written == 0 or (resumable and download.size is not None)
                    if not answered or attempt + 1 >= ATTEMPTS or not more:
                        raise
                    again = f"resuming at byte {download.written}" if download.written else "again"
                    log.info("%s cut short, asking %s: %s", file.filename, again, exc)
                    await asyncio.sleep(BACKOFF * 2**attempt * random.uniform(0.5, 1.5))
            assert writer is not None
            if writer.attached:
                try:
                    download.final_path = await writer.commit()
                except CacheFull as exc:  # the bytes are all here, on the open descriptor
                    self._not_caching(download, str(exc), download.written)
            else:
                writer.verify()
        finally:
            if writer is not None and download.final_path is None:
                await writer.discard()

    async def _writer(self, download: Download, sha256: str) -> BlobWriter:
        reservation = None
        reason: str | None = None
        try:
            reservation = await self.blobs.reserve(download.size)
        except CacheFull as exc:
            reason = str(exc)
        writer = self.blobs.writer(sha256, download.size, reservation)
        if reason is None:
            try:
                await writer.open()
                download.attach(writer.temp_path)
            except (CacheFull, OSError) as exc:
                reason = str(exc)
        if reason is not None:
            await writer.detach()
            self._not_caching(download, reason, 0)
        return writer

    async def _take(self, download: Download, writer: BlobWriter, chunk: bytes) -> None:
        limit = self.blobs.max_size
        if writer.attached and limit is not None and writer.written + len(chunk) > limit:
            await self._detach(download, writer, f"more than the cache budget ({limit} bytes)")
        if writer.attached:
            try:
                await writer.write(chunk)
            except CacheFull as exc:
                await self._detach(download, writer, str(exc))
        if not writer.attached:
            await writer.write(chunk)  # hashed only
        download.add(chunk)
        await download.pace()

    async def _detach(self, download: Download, writer: BlobWriter, reason: str) -> None:
        disk_end = writer.written
        await writer.detach()
        self._not_caching(download, reason, disk_end)

    @staticmethod
    def _not_caching(download: Download, reason: str, disk_end: int) -> None:
        log.warning(
            "not caching %s: %s; streaming it to its clients only", download.file.filename, reason
        )
        download.stop_caching(reason, disk_end)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _check_status(download: Download, response: httpx.Response) -> None:
    file = download.file
    status = response.status_code
    expected = 206 if download.written else 200
    if status == expected:
        if expected == 206:
            start = response.headers.get("content-range", "").removeprefix("bytes ")
            if not start.startswith(f"{download.written}-"):
                raise UpstreamError(file.url, f"{file.filename}: resumed at the wrong byte")
        return
    if download.written:
        raise UpstreamError(
            file.url,
            f"{file.filename}: cut short at byte {download.written}, and resuming it "
            f"was answered HTTP {status}",
        )
    raise UpstreamError(file.url, f"HTTP {status} for {file.filename}")
