"""A read-only, seekable raw stream over anything that can read a span by offset."""

from __future__ import annotations

import io


class RandomAccessReader(io.RawIOBase):
    """Subclasses set ``size`` and implement `read_span`; the file interface is here."""

    size: int
    _pos: int = 0

    def read_span(self, start: int, end: int) -> bytes:
        """The bytes from ``start`` to ``end`` (exclusive), both within the stream."""
        raise NotImplementedError

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence not in (io.SEEK_SET, io.SEEK_CUR, io.SEEK_END):
            raise ValueError(f"invalid whence {whence}")
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def read(self, size: int | None = -1) -> bytes:
        end = self.size if size is None or size < 0 else min(self.size, self._pos + size)
        if self._pos >= end:
            return b""
        data = self.read_span(self._pos, end)
        self._pos += len(data)
        return data
