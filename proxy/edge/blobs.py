"""Content-addressed file cache: one file per sha256, written via temp file, fsync, rename.

A blob is only ever reachable under its final name after its digest was checked,
so a crash mid-write leaves at most a temp file, which start-up removes.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from pathlib import Path

import aiofiles
import aiofiles.os

from proxy.errors import IntegrityError

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.blobs = root / "sha256"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.blobs.mkdir(parents=True, exist_ok=True)

    def clean_temp(self) -> int:
        """Remove temp files left by a previous process; returns how many."""
        removed = 0
        for leftover in self.tmp.iterdir():
            leftover.unlink(missing_ok=True)
            removed += 1
        return removed

    def path(self, sha256: str) -> Path:
        if not _SHA256.match(sha256):
            raise ValueError(f"not a sha256 digest: {sha256!r}")
        return self.blobs / sha256[:2] / sha256

    def has(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def writer(self, expected_sha256: str | None, expected_size: int | None = None) -> BlobWriter:
        """A writer that checks the digest, or with None files the bytes under their own."""
        return BlobWriter(self, expected_sha256, expected_size)

    async def put_bytes(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        if not self.has(digest):
            async with self.writer(digest, len(data)) as writer:
                await writer.write(data)
        return digest


class BlobWriter:
    """Writes one blob; `commit` verifies size and digest before the atomic rename."""

    def __init__(self, store: BlobStore, sha256: str | None, size: int | None) -> None:
        self.store = store
        self.sha256 = sha256
        self.expected_size = size
        self.temp_path = store.tmp / f"{(sha256 or 'unknown')[:16]}.{secrets.token_hex(6)}.part"
        self.written = 0
        self._hash = hashlib.sha256()
        self._file: aiofiles.threadpool.binary.AsyncFileIO | None = None
        self._committed = False

    async def __aenter__(self) -> BlobWriter:
        # Unbuffered: `written` must never count bytes that readers following the
        # download cannot see yet in the file.
        self._file = await aiofiles.open(self.temp_path, "wb", buffering=0)
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None and not self._committed:
            await self.commit()
        if not self._committed:
            await self.discard()

    async def write(self, chunk: bytes) -> None:
        assert self._file is not None
        view = memoryview(chunk)
        while view:
            done = await self._file.write(view)
            if not done:
                raise OSError(f"could not write to {self.temp_path}")
            view = view[done:]
        self._hash.update(chunk)
        self.written += len(chunk)

    async def commit(self) -> Path:
        assert self._file is not None
        if self.expected_size is not None and self.written != self.expected_size:
            raise IntegrityError(
                f"size mismatch: expected {self.expected_size} bytes, got {self.written}"
            )
        actual = self._hash.hexdigest()
        if self.sha256 is None:
            self.sha256 = actual
        elif actual != self.sha256:
            raise IntegrityError(f"sha256 mismatch: index says {self.sha256}, got {actual}")
        await self._file.flush()
        await aiofiles.os.wrap(os.fsync)(self._file.fileno())
        await self._file.close()
        final = self.store.path(self.sha256)
        final.parent.mkdir(exist_ok=True)
        await aiofiles.os.replace(self.temp_path, final)
        self._committed = True
        return final

    async def discard(self) -> None:
        if self._file is not None:
            await self._file.close()
        await aiofiles.os.wrap(self.temp_path.unlink)(missing_ok=True)
