"""Files: served from the blob cache, or streamed to clients while being cached.

One upstream download per file, however many clients ask at once: the download
writes a temp file and every client follows it, reading what has been written.
The last byte is held back until the digest is verified, so a client can never
complete a transfer of bytes that do not match the index; on a mismatch or a
truncated upstream body every client's transfer is aborted and nothing is cached.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx

from proxy.core.models import File
from proxy.edge.blobs import BlobStore
from proxy.edge.state import StateStore
from proxy.errors import HostfitError, IntegrityError, UpstreamError, UpstreamTimeout

log = logging.getLogger("hostfit.files")

CHUNK = 256 * 1024


class Download:
    """One upstream download in progress, followed by any number of readers."""

    def __init__(self, file: File) -> None:
        self.file = file
        self.size: int | None = None
        self.written = 0
        self.temp_path: Path | None = None
        self.final_path: Path | None = None
        self.error: HostfitError | None = None
        self.done = False
        self._changed = asyncio.Condition()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_started(self) -> None:
        """Until the first byte is on disk (headers known) or the download ended."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.written > 0 or self.done)
        if self.error is not None and self.written == 0:
            raise self.error

    async def chunks(self, start: int = 0, stop: int | None = None) -> AsyncGenerator[bytes, None]:
        """Follow the download from ``start`` to ``stop`` (default: the end); raises if it
        fails before then. Bytes are yielded as soon as they are written, except the
        file's last byte, which waits for the digest."""
        position = start
        fd: int | None = None
        try:
            while True:
                if stop is not None and position >= stop:
                    return
                async with self._changed:
                    await self._changed.wait_for(partial(self._readable, position))
                    limit = self.written if self.done else self.written - 1
                    if self.error is not None:
                        raise self.error
                if stop is not None:
                    limit = min(limit, stop)
                if position >= limit and self.done:
                    return
                if fd is None:
                    fd = await self._open()
                while position < limit:
                    size = min(CHUNK, limit - position)
                    data = await asyncio.to_thread(os.pread, fd, size, position)
                    if not data:
                        raise IntegrityError(f"{self.file.filename}: cache file shrank")
                    position += len(data)
                    yield data
        finally:
            # A plain descriptor, closed without awaiting: a reader cancelled or dropped
            # at any point (a client gone, a shutdown) never leaves an open file behind.
            if fd is not None:
                os.close(fd)

    async def _open(self) -> int:
        assert self.temp_path is not None  # set before the first byte is written
        try:
            return os.open(self.temp_path, os.O_RDONLY)
        except FileNotFoundError:
            # Verified and renamed into place between our check and the open.
            await self.wait_done()
            if self.error is not None:
                raise self.error from None
            assert self.final_path is not None
            return os.open(self.final_path, os.O_RDONLY)

    def _readable(self, position: int) -> bool:
        # The final byte is held back until the digest is verified.
        return self.done or self.written - 1 > position

    async def wait_done(self) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.done)


@dataclass(frozen=True, slots=True)
class Cached:
    path: Path


class FileService:
    def __init__(self, blobs: BlobStore, client: httpx.AsyncClient, store: StateStore) -> None:
        self.blobs = blobs
        self.client = client
        self.store = store
        self._downloads: dict[str, Download] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.on_cached: list[Callable[[File], None]] = []  # told of every file committed

    async def open(self, file: File) -> Cached | Download:
        sha256 = file.sha256
        if sha256 is None:
            raise IntegrityError(f"{file.filename}: the index gives no sha256 to verify it")
        if self.blobs.has(sha256):
            return Cached(self.blobs.path(sha256))
        download = self._downloads.get(sha256)
        if download is None:
            download = Download(file)
            self._downloads[sha256] = download
            task = asyncio.create_task(self._download(download, sha256))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return download

    async def digest_of(self, file: File) -> str:
        """Download a file the index gives no sha256 for, cache it, and return its digest.

        Trust on first use: the first bytes seen become the file's identity, and every
        later download is verified against them.
        """
        try:
            async with self.client.stream("GET", file.url) as response:
                if response.status_code != 200:
                    raise UpstreamError(
                        file.url, f"HTTP {response.status_code} for {file.filename}"
                    )
                async with self.blobs.writer(None) as writer:
                    async for chunk in response.aiter_bytes(CHUNK):
                        await writer.write(chunk)
                    await writer.commit()
        except httpx.TimeoutException:
            raise UpstreamTimeout(file.url, f"timed out downloading {file.filename}") from None
        except httpx.HTTPError as exc:
            raise UpstreamError(file.url, f"download of {file.filename} failed: {exc}") from None
        assert writer.sha256 is not None
        return writer.sha256

    async def fetch(self, file: File) -> Path:
        """The cached path of a file, downloading it first if needed."""
        opened = await self.open(file)
        if isinstance(opened, Cached):
            return opened.path
        await opened.wait_done()
        if opened.error is not None:
            raise opened.error
        assert opened.final_path is not None
        return opened.final_path

    async def _download(self, download: Download, sha256: str) -> None:
        file = download.file
        try:
            async with self.client.stream("GET", file.url) as response:
                if response.status_code != 200:
                    raise UpstreamError(
                        file.url, f"HTTP {response.status_code} for {file.filename}"
                    )
                length = response.headers.get("content-length")
                download.size = int(length) if length and length.isdigit() else file.size
                async with self.blobs.writer(sha256, download.size) as writer:
                    download.temp_path = writer.temp_path
                    async for chunk in response.aiter_bytes(CHUNK):
                        await writer.write(chunk)
                        download.written = writer.written
                        await download._notify()
                    download.final_path = await writer.commit()
            for listener in self.on_cached:
                listener(file)
            await self.store.set(
                f"file:{sha256}",
                json.dumps({"filename": file.filename, "size": download.written}).encode(),
            )
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
            if download.error is not None:
                log.warning("not cached: %s", download.error)
            download.done = True
            del self._downloads[sha256]
            await download._notify()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
