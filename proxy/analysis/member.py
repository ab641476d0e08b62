"""A zip member as a seekable, read-only file that reads only what is asked of it.

Stored members are plain windows on the source. Deflated members are inflated on
demand (`proxy.analysis.deflate_cursors`), from the nearest point whose position is
known:

- from the member's start, forward, keeping inflater snapshots every few MiB (the
  zran technique), so a backward seek resumes from a snapshot, not from byte 0;
- for a read far past everything inflated so far, from a block boundary found just
  before it (`proxy.analysis.far_entries`). The 32 KiB window before such an entry
  is unknown, so two inflaters run side by side on placeholders that differ in every
  byte: bytes on which they agree are exact. Where an entry lies in the inflated
  bytes is learnt by inflating from it to a point whose position is known: the
  member's end, or an entry found earlier.

ELF files keep what the loader reads at both ends (headers, dynamic strings and
version needs near the start; the dynamic section and section headers near the
end), so a large library costs its head and its tail, not its middle. Whatever does
not add up on the far path (a boundary that was noise, bytes that stay unknown) falls
back to inflating from a known point, so the bytes returned are always exact.

This module decides where each read starts and when going far is worth it; the
search for entries, and what it costs, is `proxy.analysis.far_entries`.
"""

from __future__ import annotations

import zlib
from typing import IO

from proxy.analysis.bounds import Budget, MiB, Unanalysable
from proxy.analysis.deflate_cursors import (
    MAX_INPUT,
    RAW_DEFLATE,
    Cursor,
    FarFailed,
    MemberData,
    Point,
)
from proxy.analysis.far_entries import FAR_READS, FarEntries, FarReadTuning
from proxy.analysis.random_access import RandomAccessReader
from proxy.core.lru import LRU

STORED = 0
DEFLATED = 8

CHUNK = 64 * 1024  # unit of inflated output kept in the cache
CACHED_CHUNKS = 32
SKIP_STEP = 1 * MiB  # inflated and dropped at a time when seeking forward
PEEK_INPUT = 256  # a deflate stream's first bytes need its block header, often under 256
PEEK_GROWTH = 4  # each further fetch of a peek, times the one before
LIVE_CURSORS = 3  # an ELF reader alternates between a file's head and its tail


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
        far: bool = True,
        tuning: FarReadTuning = FAR_READS,
        max_input: int = MAX_INPUT,
    ) -> None:
        """``far=False`` inflates only forward from known points (a reference for tests).
        ``max_input``: compressed bytes fetched at a time, at most."""
        if method not in (STORED, DEFLATED):
            raise Unanalysable(f"{name}: compression method {method} (wheels use stored/deflate)")
        if method == STORED and compressed_size != size:
            raise Unanalysable(f"{name}: stored member with different sizes")
        self.name = name
        self.size = size
        self._method = method
        self._tuning = tuning
        self._pos = 0
        self._data = MemberData(
            source,
            name=name,
            data_offset=data_offset,
            compressed_size=compressed_size,
            budget=budget,
            max_input=max_input,
        )
        self._cache: LRU[int, bytes] = LRU(CACHED_CHUNKS)
        self._far_chunks: set[int] = set()  # chunks ever inflated on a chain from an entry
        self._points: list[Point] = [Point(0, 0, exact=True)]
        self._live: list[Cursor] = []
        self._far = FarEntries(self._data, size=size, keep=self._keep_point, tuning=tuning)
        # A small member is read whole: its middle is short, and the zero-heavy data
        # before its dynamic section keeps bytes unknown for longer than the member is.
        self._going_far = far and compressed_size >= tuning.far_member

    def read_span(self, start: int, end: int) -> bytes:
        return self.read_at(start, end - start)

    @property
    def went_far(self) -> bool:
        """Whether any bytes may have come from an entry found by searching."""
        return self._far.found_any

    def from_start(self, offset: int, length: int) -> bool:
        """Whether the bytes at ``offset`` were inflated on a chain from the member's start,
        never from an entry found by searching: they are the file's own, however far
        other reads went."""
        if self._method == STORED or length <= 0:
            return True
        chunks = range(offset // CHUNK, (offset + length - 1) // CHUNK + 1)
        return not any(index in self._far_chunks for index in chunks)

    def peek(self, count: int) -> bytes:
        """The first ``count`` bytes, inflating no more input than that takes.

        Telling an ELF member from a data file needs 4 bytes, not a chunk.
        """
        if self._method == STORED or 0 in self._cache:
            return self.read_at(0, count)
        compressed_size = self._data.compressed_size
        inflater = zlib.decompressobj(RAW_DEFLATE)
        data = b""
        start, step = 0, PEEK_INPUT
        while len(data) < count and start < compressed_size and not inflater.eof:
            piece = self._data.compressed(start, min(start + step, compressed_size))
            start += len(piece)
            step *= PEEK_GROWTH
            try:
                data += inflater.decompress(inflater.unconsumed_tail + piece, count - len(data))
            except zlib.error as exc:
                raise Unanalysable(f"{self.name}: corrupt deflate data ({exc})") from None
        return data[:count]

    # ------------------------------------------------------------------------

    def read_at(self, offset: int, length: int) -> bytes:
        """Exactly ``length`` bytes at ``offset`` (fewer only at the end of the member)."""
        length = max(0, min(length, self.size - offset))
        if length == 0:
            return b""
        if self._method == STORED:
            return self._data.compressed(offset, offset + length)
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
            return cached
        start = index * CHUNK
        length = min(CHUNK, self.size - start)
        chunk = self._read_known(start, length)
        self._cache.put(index, chunk)
        return chunk

    def _read_known(self, start: int, length: int) -> bytes:
        """Inflate ``length`` bytes at ``start``, from points that can know them."""
        tuning = self._tuning
        before = start  # inexact origins must lie at or before this
        attempt = 0
        while True:
            exact_only = attempt >= tuning.retries or not self._going_far
            try:
                cursor = self._origin(start, before, exact_only=exact_only)
                origin = cursor.out_pos
                data = self._produce(cursor, start, length)
            except FarFailed:  # never from a point the far path did not make
                self._abandon_far()
                continue
            if data is not None:
                if cursor.far:
                    self._far_chunks.add(start // CHUNK)
                self._keep_live(cursor)
                return data
            # Bytes copied from before the entry stay unknown: start further back. (An
            # exact origin never gets here: its bytes are all known.)
            attempt += 1
            before = origin - tuning.lead * tuning.retry_growth**attempt

    def _abandon_far(self) -> None:
        """Forget everything the far path found: inflate only from known points."""
        self._going_far = False
        self._points = [p for p in self._points if not p.far]
        self._live = [c for c in self._live if not c.far]
        self._cache.clear()

    def _keep_point(self, point: Point) -> None:
        self._points.append(point)

    # -- choosing where to start -----------------------------------------------

    def _origin(self, start: int, before: int, *, exact_only: bool) -> Cursor:
        """The live cursor or snapshot to inflate from; a new entry when that is far."""
        best: Cursor | Point | None = None
        candidates: list[Cursor | Point] = [*self._live, *self._points]
        for candidate in candidates:
            limit = start if candidate.exact else before
            if exact_only and not candidate.exact:
                continue
            if candidate.out_pos <= limit and (best is None or candidate.out_pos > best.out_pos):
                best = candidate
        assert best is not None  # the member's start is always a point
        if not exact_only:
            try:
                entry = None
                if self._worth_going_far(best.out_pos, start):
                    entry = self._far.entry_before(min(before, start - self._tuning.lead), best)
            except FarFailed:
                self._abandon_far()
                return self._origin(start, before, exact_only=True)
            if entry is not None:
                return self._data.cursor(Point(entry.out_pos, entry.bit, exact=False, far=True))
        if isinstance(best, Cursor):
            self._live.remove(best)
            return best
        return self._data.cursor(best)

    def _worth_going_far(self, origin: int, start: int) -> bool:
        """Whether a new entry costs less input than inflating on from ``origin``."""
        far = self._far
        if not self._going_far or (start - origin) * far.ratio_at(start) < self._tuning.far_min:
            return False
        if not far.found_any:
            # How the tail compresses decides; the probe is not wasted: an ELF reader
            # reads the section headers at the end anyway.
            far.entry_before(self.size - 1, None)
        # Both spans are priced at the ratio of the stretch they lie in: the tail of a
        # CUDA library compresses ten times better than the fat binaries before it.
        return far.search_cost(start - self._tuning.lead) < (start - origin) * far.ratio_at(start)

    # -- inflating -------------------------------------------------------------

    def _produce(self, cursor: Cursor, start: int, length: int) -> bytes | None:
        """The bytes at ``start``, or None where the cursor's chain cannot know them."""
        data = self._data
        while cursor.out_pos < start:
            step = min(start, cursor.next_snapshot(), cursor.out_pos + SKIP_STEP)
            data.inflate(cursor, step - cursor.out_pos)
            if cursor.out_pos < step:
                data.fail(cursor, "deflate data ends before the declared size")
            self._snapshot(cursor)
        inflated, known = data.inflate(cursor, length)
        if len(inflated) < length:
            data.fail(cursor, "deflate data ends before the declared size")
        return inflated if known else None

    def _snapshot(self, cursor: Cursor) -> None:
        if cursor.at_snapshot and all(p.out_pos != cursor.out_pos for p in self._points if p.exact):
            self._points.append(cursor.point())

    def _keep_live(self, cursor: Cursor) -> None:
        self._live.insert(0, cursor)
        del self._live[LIVE_CURSORS:]
