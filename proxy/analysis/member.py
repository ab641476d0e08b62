"""A zip member as a seekable, read-only file that reads only what is asked of it.

Stored members are plain windows on the source. Deflated members are inflated
forward on demand; deflate cannot be entered in the middle, so the reader keeps
inflater snapshots every few MiB (the zran technique) and a backward seek resumes
from the nearest snapshot instead of from byte 0. Reading an ELF's section headers
at the end and then its string table at the start costs one pass, not two.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import IO

from proxy.analysis.bounds import Budget, MiB, Unanalysable
from proxy.analysis.random_access import RandomAccessReader

STORED = 0
DEFLATED = 8

CHUNK = 64 * 1024  # unit of inflated output kept in the cache
CACHED_CHUNKS = 32
SNAPSHOT_EVERY = 8 * MiB
SKIP_STEP = 1 * MiB  # inflated and dropped at a time when seeking forward
FIRST_INPUT = 4 * 1024  # small first read: often only the ELF magic is wanted
MAX_INPUT = 256 * 1024


@dataclass(frozen=True, slots=True)
class _Snapshot:
    out_pos: int
    in_pos: int
    state: zlib._Decompress | None  # None: a fresh inflater at the start


class MemberReader(RandomAccessReader):
    def __init__(
        self,
        source: IO[bytes],
        *,
        name: str,
        data_offset: int,
        compressed_size: int,
        size: int,
        method: int,
        budget: Budget,
    ) -> None:
        if method not in (STORED, DEFLATED):
            raise Unanalysable(f"{name}: compression method {method} (wheels use stored/deflate)")
        if method == STORED and compressed_size != size:
            raise Unanalysable(f"{name}: stored member with different sizes")
        self.name = name
        self.size = size
        self._source = source
        self._data_offset = data_offset
        self._compressed_size = compressed_size
        self._method = method
        self._budget = budget
        self._pos = 0
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._snapshots: dict[int, _Snapshot] = {0: _Snapshot(0, 0, None)}
        self._restore(self._snapshots[0])

    def read_span(self, start: int, end: int) -> bytes:
        return self.read_at(start, end - start)

    # ------------------------------------------------------------------------

    def read_at(self, offset: int, length: int) -> bytes:
        """Exactly ``length`` bytes at ``offset`` (fewer only at the end of the member)."""
        length = max(0, min(length, self.size - offset))
        if length == 0:
            return b""
        if self._method == STORED:
            self._source.seek(self._data_offset + offset)
            data = self._source.read(length)
            if len(data) != length:
                raise Unanalysable(f"{self.name}: member data is truncated")
            return data
        parts = []
        pos = offset
        end = offset + length
        while pos < end:
            index = pos // CHUNK
            chunk = self._chunk(index)
            start = pos - index * CHUNK
            piece = chunk[start : start + (end - pos)]
            parts.append(piece)
            pos += len(piece)
        return b"".join(parts)

    def _chunk(self, index: int) -> bytes:
        cached = self._cache.get(index)
        if cached is not None:
            self._cache.move_to_end(index)
            return cached
        start = index * CHUNK
        best = max(s for s in self._snapshots if s <= start)
        if self._out_pos > start or best > self._out_pos:
            self._restore(self._snapshots[best])
        while self._out_pos < start:
            step = min(start, self._next_snapshot(), self._out_pos + SKIP_STEP)
            self._inflate(step - self._out_pos, keep=False)
        chunk = self._inflate(min(CHUNK, self.size - start), keep=True)
        self._cache[index] = chunk
        if len(self._cache) > CACHED_CHUNKS:
            self._cache.popitem(last=False)
        return chunk

    def _next_snapshot(self) -> int:
        return (self._out_pos // SNAPSHOT_EVERY + 1) * SNAPSHOT_EVERY

    def _restore(self, snapshot: _Snapshot) -> None:
        state = snapshot.state
        self._inflater = zlib.decompressobj(-15) if state is None else state.copy()
        self._out_pos = snapshot.out_pos
        self._in_pos = snapshot.in_pos
        self._pending = b""
        self._input_size = FIRST_INPUT

    def _inflate(self, count: int, *, keep: bool) -> bytes:
        """The next ``count`` inflated bytes (or b"" when not kept); snapshots on the way."""
        self._budget.spend(count)
        parts = []
        produced = 0
        while produced < count:
            if self._inflater.eof:
                raise Unanalysable(f"{self.name}: deflate data ends before the declared size")
            if not self._pending:
                self._pending = self._next_input()
            before = len(self._pending)
            try:
                piece = self._inflater.decompress(self._pending, count - produced)
            except zlib.error as exc:
                raise Unanalysable(f"{self.name}: corrupt deflate data ({exc})") from None
            self._pending = self._inflater.unconsumed_tail
            if not piece and len(self._pending) == before:
                raise Unanalysable(f"{self.name}: deflate data makes no progress")
            if keep:
                parts.append(piece)
            produced += len(piece)
        self._out_pos += produced
        if self._out_pos % SNAPSHOT_EVERY == 0 and self._out_pos not in self._snapshots:
            in_pos = self._in_pos - len(self._pending)
            self._snapshots[self._out_pos] = _Snapshot(self._out_pos, in_pos, self._inflater.copy())
        return b"".join(parts)

    def _next_input(self) -> bytes:
        want = min(self._input_size, self._compressed_size - self._in_pos)
        if want <= 0:
            raise Unanalysable(f"{self.name}: compressed data ends before the declared size")
        self._source.seek(self._data_offset + self._in_pos)
        data = self._source.read(want)
        if len(data) != want:
            raise Unanalysable(f"{self.name}: member data is truncated")
        self._in_pos += want
        self._input_size = min(self._input_size * 2, MAX_INPUT)
        return data
