"""A zip member as a seekable, read-only file that reads only what is asked of it.

Stored members are plain windows on the source. Deflated members are inflated on
demand, from the nearest point whose position is known:

- from the member's start, forward, keeping inflater snapshots every few MiB (the
  zran technique), so a backward seek resumes from a snapshot, not from byte 0;
- for a read far past everything inflated so far, from a block boundary found just
  before it (`proxy.analysis.deflate_blocks`). The 32 KiB window before such an
  entry is unknown, so two inflaters run side by side on placeholders that differ
  in every byte: bytes on which they agree are exact, and once they agree over a
  whole window the second one is dropped. Where an entry lies in the inflated bytes
  is learnt by inflating from it to a point whose position is known: the member's
  end, or an entry found earlier.

ELF files keep what the loader reads at both ends (headers, dynamic strings and
version needs near the start; the dynamic section and section headers near the
end), so a large library costs its head and its tail, not its middle. Whatever does
not add up on the far path (a boundary that was noise, bytes that stay unknown) falls
back to inflating from a known point, so the bytes returned are always exact.
"""

from __future__ import annotations

import itertools
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import IO

from proxy.analysis.bounds import Budget, MiB, Unanalysable
from proxy.analysis.deflate_blocks import (
    HEADER_BITS,
    PLACEHOLDER_A,
    PLACEHOLDER_B,
    WINDOW,
    block_starts,
    entry,
)
from proxy.analysis.random_access import RandomAccessReader

STORED = 0
DEFLATED = 8

CHUNK = 64 * 1024  # unit of inflated output kept in the cache
CACHED_CHUNKS = 32
SNAPSHOT_EVERY = 8 * MiB
SKIP_STEP = 1 * MiB  # inflated and dropped at a time when seeking forward
FIRST_INPUT = 4 * 1024
PEEK_INPUT = 256  # a deflate stream's first bytes need its block header, often under 256
MAX_INPUT = 256 * 1024
LIVE_CURSORS = 3  # an ELF reader alternates between a file's head and its tail

# The far path.
FAR_MEMBER = 256 * 1024  # compressed size from which a member is read by its ends
FAR_MIN = 64 * 1024  # compressed bytes worth skipping; nearer reads just inflate forward
LEAD = 32 * 1024  # an entry is wanted this far ahead of the bytes read, to fill the window
FIRST_PROBE = 64 * 1024  # compressed bytes of a first round: how the data there compresses
SLACK = 16 * 1024  # compressed bytes searched beyond an estimate (about half a block)
ROUNDS = 16  # entries found, each nearer a target, before inflating forward instead
CANDIDATES = 16  # boundaries that fail confirmation before a spot is given up
SCAN = 64 * 1024  # compressed bytes searched for boundaries at a time
SCAN_BUDGET = 4 * MiB  # searched per member before inflating forward instead
MEASURE_BUDGET = 8 * MiB  # inflated to confirm boundaries (or the member's size, if more)
LOOKAHEAD = 4 * 1024  # read past a scanned stretch: headers and trials run on
CHECK = 64 * 1024  # inflated bytes compared where a new entry's chain meets an older one
MIN_COMMON = 256  # bytes both chains must know, and agree on, to confirm an entry
AIM = 0.8  # share of the estimated compressed distance to an entry gone back in one round
REACH = 4  # growth of a round's distance over the last one
RETRIES = 6  # earlier entries tried when bytes stay unknown, before a known point is used


class _FarFailed(Exception):
    """The far path cannot serve this read; inflate from a known point instead."""


class _Contradiction(Exception):
    """Two chains measured to the same place disagree on bytes both know."""


@dataclass(frozen=True, slots=True)
class _Point:
    """A place to resume inflating: ``in_bit`` into the compressed data, ``out_pos`` out.

    ``main`` None means a fresh inflater: at the member's start when ``exact``, at a
    block boundary with an unknown window otherwise. ``far``: on a chain from a found
    boundary, whose position was measured, not known; dropped if the far path fails.
    """

    out_pos: int
    in_bit: int
    exact: bool
    main: zlib._Decompress | None = None
    shadow: zlib._Decompress | None = None
    agree: int = 0
    far: bool = False


@dataclass(eq=False, slots=True)
class _Cursor:
    out_pos: int
    in_bit: int  # the next compressed bit to fetch (what ``pending`` holds comes before it)
    main: zlib._Decompress
    shadow: zlib._Decompress | None  # runs while the window may hold unknown bytes
    agree: int = 0  # trailing output bytes on which main and shadow agree
    pending: bytes = b""
    input_size: int = FIRST_INPUT
    far: bool = False  # started at a found boundary: its failures are _FarFailed

    @property
    def exact(self) -> bool:
        return self.shadow is None

    def point(self) -> _Point:
        consumed = self.in_bit - 8 * len(self.pending)
        shadow = self.shadow.copy() if self.shadow is not None else None
        main = self.main.copy()
        return _Point(self.out_pos, consumed, self.exact, main, shadow, self.agree, self.far)


@dataclass(frozen=True, slots=True)
class _Entry:
    """A confirmed block boundary: compressed bit offset, inflated offset."""

    bit: int
    out_pos: int


@dataclass(slots=True)
class _Far:
    entries: list[_Entry] = field(default_factory=list)  # sorted by position
    barren: dict[int, int] = field(default_factory=dict)  # landmark bit -> searched from byte
    scanned: int = 0  # compressed bytes searched for boundaries
    measured: int = 0  # compressed bytes inflated to confirm boundaries
    enabled: bool = True


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
    ) -> None:
        """``far=False`` inflates only forward from known points (a reference for tests)."""
        if method not in (STORED, DEFLATED):
            raise Unanalysable(f"{name}: compression method {method} (wheels use stored/deflate)")
        if method == STORED and compressed_size != size:
            raise Unanalysable(f"{name}: stored member with different sizes")
        self.name = name
        self.size = size
        self._source = source
        self._data_offset = data_offset
        self._compressed_size = compressed_size
        self._end_bit = 8 * compressed_size
        self._method = method
        self._budget = budget
        self._pos = 0
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._points: list[_Point] = [_Point(0, 0, exact=True)]
        self._live: list[_Cursor] = []
        # A small member is read whole: its middle is short, and the zero-heavy data
        # before its dynamic section keeps bytes unknown for longer than the member is.
        self._far = _Far(enabled=far and compressed_size >= FAR_MEMBER)

    def read_span(self, start: int, end: int) -> bytes:
        return self.read_at(start, end - start)

    @property
    def went_far(self) -> bool:
        """Whether any bytes may have come from an entry found by searching."""
        return bool(self._far.entries)

    def peek(self, count: int) -> bytes:
        """The first ``count`` bytes, inflating no more input than that takes.

        Telling an ELF member from a data file needs 4 bytes, not a chunk.
        """
        if self._method == STORED or 0 in self._cache:
            return self.read_at(0, count)
        inflater = zlib.decompressobj(-15)
        data = b""
        start, step = 0, PEEK_INPUT
        while len(data) < count and start < self._compressed_size and not inflater.eof:
            piece = self._compressed(start, min(start + step, self._compressed_size))
            start += len(piece)
            step *= 4
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
            return self._compressed(offset, offset + length)
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
        length = min(CHUNK, self.size - start)
        chunk = self._read_known(start, length)
        self._cache[index] = chunk
        if len(self._cache) > CACHED_CHUNKS:
            self._cache.popitem(last=False)
        return chunk

    def _read_known(self, start: int, length: int) -> bytes:
        """Inflate ``length`` bytes at ``start``, from points that can know them."""
        before = start  # inexact origins must lie at or before this
        attempt = 0
        while True:
            exact_only = attempt >= RETRIES or not self._far.enabled
            try:
                cursor = self._origin(start, before, exact_only=exact_only)
                origin = cursor.out_pos
                data = self._produce(cursor, start, length)
            except _FarFailed:  # never from a point the far path did not make
                self._abandon_far()
                continue
            if data is not None:
                self._keep_live(cursor)
                return data
            # Bytes copied from before the entry stay unknown: start further back. (An
            # exact origin never gets here: its bytes are all known.)
            attempt += 1
            before = origin - LEAD * 4**attempt

    def _abandon_far(self) -> None:
        """Forget everything the far path found: inflate only from known points."""
        self._far.enabled = False
        self._points = [p for p in self._points if not p.far]
        self._live = [c for c in self._live if not c.far]
        self._cache.clear()

    # -- choosing where to start -----------------------------------------------

    def _origin(self, start: int, before: int, *, exact_only: bool) -> _Cursor:
        """The live cursor or snapshot to inflate from; a new entry when that is far."""
        best: _Cursor | _Point | None = None
        candidates: list[_Cursor | _Point] = [*self._live, *self._points]
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
                    entry = self._entry_before(min(before, start - LEAD), best)
            except _FarFailed:
                self._abandon_far()
                return self._origin(start, before, exact_only=True)
            if entry is not None:
                return self._cursor(_Point(entry.out_pos, entry.bit, exact=False, far=True))
        if isinstance(best, _Cursor):
            self._live.remove(best)
            return best
        return self._cursor(best)

    def _worth_going_far(self, origin: int, start: int) -> bool:
        """Whether a new entry costs less input than inflating on from ``origin``."""
        if not self._far.enabled or (start - origin) * self._ratio_at(start) < FAR_MIN:
            return False
        if not self._far.entries:
            # How the tail compresses decides; the probe is not wasted: an ELF reader
            # reads the section headers at the end anyway.
            self._entry_before(self.size - 1, None)
        # Both spans are priced at the ratio of the stretch they lie in: the tail of a
        # CUDA library compresses ten times better than the fat binaries before it.
        target = start - LEAD
        landmark = self._landmark_after(target)
        far = (landmark.out_pos - target) * self._ratio_at(target) + SLACK
        return far < (start - origin) * self._ratio_at(start)

    def _landmark_after(self, target: int) -> _Entry:
        for known in self._far.entries:
            if known.out_pos > target:
                return known
        return _Entry(self._end_bit, self.size)

    def _cursor(self, point: _Point) -> _Cursor:
        if point.main is not None:
            shadow = point.shadow.copy() if point.shadow is not None else None
            return _Cursor(
                point.out_pos, point.in_bit, point.main.copy(), shadow, point.agree, far=point.far
            )
        if point.exact:
            return _Cursor(point.out_pos, point.in_bit, zlib.decompressobj(-15), None)
        main = zlib.decompressobj(-15, zdict=PLACEHOLDER_A)
        shadow = zlib.decompressobj(-15, zdict=PLACEHOLDER_B)
        cursor = _Cursor(point.out_pos, point.in_bit, main, shadow, far=True)
        if point.in_bit % 8:
            first = point.in_bit // 8
            prefix, dropped = entry(point.in_bit, self._compressed(first, first + 1)[0])
            try:
                yields = (len(main.decompress(prefix)), len(shadow.decompress(prefix)))
            except zlib.error:
                raise _FarFailed from None
            if yields != (dropped, dropped):
                raise _FarFailed
            cursor.in_bit = 8 * (first + 1)
        return cursor

    # -- inflating -------------------------------------------------------------

    def _produce(self, cursor: _Cursor, start: int, length: int) -> bytes | None:
        """The bytes at ``start``, or None where the cursor's chain cannot know them."""
        while cursor.out_pos < start:
            step = min(start, self._next_snapshot(cursor), cursor.out_pos + SKIP_STEP)
            self._inflate(cursor, step - cursor.out_pos)
            if cursor.out_pos < step:
                self._fail(cursor, "deflate data ends before the declared size")
            self._snapshot(cursor)
        data, known = self._inflate(cursor, length)
        if len(data) < length:
            self._fail(cursor, "deflate data ends before the declared size")
        return data if known else None

    def _next_snapshot(self, cursor: _Cursor) -> int:
        return (cursor.out_pos // SNAPSHOT_EVERY + 1) * SNAPSHOT_EVERY

    def _snapshot(self, cursor: _Cursor) -> None:
        on_boundary = cursor.exact and cursor.out_pos % SNAPSHOT_EVERY == 0
        if on_boundary and all(p.out_pos != cursor.out_pos for p in self._points if p.exact):
            self._points.append(cursor.point())

    def _keep_live(self, cursor: _Cursor) -> None:
        self._live.insert(0, cursor)
        del self._live[LIVE_CURSORS:]

    def _inflate(
        self, cursor: _Cursor, count: int, *, end_bit: int | None = None
    ) -> tuple[bytes, bool]:
        """The next ``count`` inflated bytes and whether all of them are known.

        Stops early only at the end of the deflate data, or when ``end_bit`` is given
        and the input up to it is used up (a far cursor measuring its distance).
        """
        parts = []
        known = True
        produced = 0
        limit_bit = self._end_bit if end_bit is None else end_bit
        while produced < count:
            if cursor.main.eof:
                if end_bit is not None or cursor.far:
                    break
                raise Unanalysable(f"{self.name}: deflate data ends before the declared size")
            if not cursor.pending:
                cursor.pending = self._next_input(cursor, limit_bit)
                if not cursor.pending:
                    if end_bit is not None:
                        break
                    self._fail(cursor, "compressed data ends before the declared size")
            piece, other = self._step(cursor, count - produced)
            parts.append(piece)
            produced += len(piece)
            known = known and (other is None or other == piece)
        return b"".join(parts), known

    def _step(self, cursor: _Cursor, most: int) -> tuple[bytes, bytes | None]:
        """Inflate what ``pending`` yields, up to ``most`` bytes; the shadow's output too."""
        before = len(cursor.pending)
        other = None
        try:
            piece = cursor.main.decompress(cursor.pending, most)
            if cursor.shadow is not None:
                other = cursor.shadow.decompress(cursor.pending, most)
                if len(other) != len(piece) or cursor.shadow.unconsumed_tail != (
                    cursor.main.unconsumed_tail
                ):
                    raise _FarFailed
        except zlib.error as exc:
            self._fail(cursor, f"corrupt deflate data ({exc})")
        cursor.pending = cursor.main.unconsumed_tail
        if not piece and len(cursor.pending) == before and not cursor.main.eof:
            self._fail(cursor, "deflate data makes no progress")
        self._budget.spend(len(piece) * (1 if other is None else 2))
        cursor.out_pos += len(piece)
        if other is None or other == piece:
            cursor.agree += len(piece)
        else:
            difference = int.from_bytes(piece, "little") ^ int.from_bytes(other, "little")
            cursor.agree = len(piece) - 1 - (difference.bit_length() - 1) // 8
        if cursor.shadow is not None and cursor.agree >= WINDOW:
            cursor.shadow = None  # the window holds only known bytes: so will all that follows
        return piece, other

    def _fail(self, cursor: _Cursor, reason: str) -> None:
        if cursor.far:
            raise _FarFailed
        raise Unanalysable(f"{self.name}: {reason}")

    def _next_input(self, cursor: _Cursor, limit_bit: int) -> bytes:
        start = cursor.in_bit // 8  # cursors always stand on a byte of the stream
        want = min(cursor.input_size, limit_bit // 8 - start)
        if want <= 0:
            return b""
        cursor.in_bit += 8 * want
        cursor.input_size = min(cursor.input_size * 2, MAX_INPUT)
        return self._compressed(start, start + want)

    def _compressed(self, start: int, end: int) -> bytes:
        self._source.seek(self._data_offset + start)
        data = self._source.read(end - start)
        if len(data) != end - start:
            raise Unanalysable(f"{self.name}: member data is truncated")
        return data

    # -- the far path ----------------------------------------------------------

    def _entry_before(self, target: int, floor: _Cursor | _Point | None) -> _Entry | None:
        """A confirmed entry at or before ``target`` and past ``floor``, or None.

        Goes back in rounds, each from the last entry found, aiming short by the ratio
        measured just after it and at most REACH times as far as the round before:
        data compresses unevenly, and an overshoot costs fetched bytes.
        """
        landmark = self._landmark_after(target)
        widen = 1
        reach = FIRST_PROBE
        for _ in range(ROUNDS):
            ratio = self._ratio_at(landmark.out_pos)  # how what follows compressed
            step = min(int((landmark.out_pos - target) * ratio * AIM), reach)
            low = max(0, landmark.bit // 8 - (step + SLACK) * widen)
            if floor is not None and low * 8 <= floor.in_bit:
                return None
            found = self._find_entry(low, landmark)
            if found is None:
                if low == 0:
                    return None
                widen *= 2  # no block starts there: look further back
                continue
            if floor is not None and found.out_pos <= floor.out_pos:
                return None
            if found.out_pos <= target:
                return found
            reach = REACH * (landmark.bit - found.bit) // 8
            landmark = found
            widen = 1
        return None

    def _ratio_at(self, out_pos: int) -> float:
        """Compressed bytes per inflated byte around ``out_pos``, as far as known."""
        known = [_Entry(0, 0), *self._far.entries, _Entry(self._end_bit, self.size)]
        for before, after in itertools.pairwise(known):
            if before.out_pos <= out_pos < after.out_pos:
                return (after.bit - before.bit) / 8 / (after.out_pos - before.out_pos)
        return self._compressed_size / max(self.size, 1)

    def _find_entry(self, low: int, landmark: _Entry) -> _Entry | None:
        """The first confirmed block boundary from byte ``low`` on, before ``landmark``."""
        searched = self._far.barren.get(landmark.bit)
        if searched is not None and searched <= low:
            return None
        # What was searched before for this landmark is searched again only for the
        # headers that straddle its start.
        limit = landmark.bit // 8
        if searched is not None:
            limit = min(limit, searched + HEADER_BITS // 8 + 1)
        tried = 0
        for start in range(low, limit, SCAN):
            end = min(start + SCAN, limit)
            self._far.scanned += end - start
            if self._far.scanned > SCAN_BUDGET:
                raise _FarFailed  # no boundaries worth the search: a stored or odd member
            window = self._compressed(start, min(end + LOOKAHEAD, self._compressed_size))
            for bit in block_starts(window, 0, (end - start) * 8):
                known = next((e for e in self._far.entries if e.bit == start * 8 + bit), None)
                if known is not None:
                    return known  # found before, by another search
                tried += 1
                if tried > CANDIDATES:
                    break
                out_pos = self._measure(start * 8 + bit, landmark)
                if out_pos is not None:
                    return self._remember(_Entry(start * 8 + bit, out_pos))
            if tried > CANDIDATES:
                break
        self._far.barren[landmark.bit] = low
        return None

    def _remember(self, found: _Entry) -> _Entry:
        if found not in self._far.entries:
            self._far.entries.append(found)
            self._far.entries.sort(key=lambda e: e.out_pos)
            self._points.append(_Point(found.out_pos, found.bit, exact=False, far=True))
        return found

    def _measure(self, bit: int, landmark: _Entry) -> int | None:
        """Where the block at ``bit`` lies in the inflated bytes, if it is a real boundary."""
        self._far.measured += (landmark.bit - bit) // 8
        if self._far.measured > max(MEASURE_BUDGET, self._compressed_size):
            raise _FarFailed  # confirming costs more than reading forward would
        cursor = self._cursor(_Point(0, bit, exact=False))
        snapshots: list[_Point] = []
        try:
            to_end = landmark.bit == self._end_bit
            # Up to the landmark's byte: its header's first bits cannot yield output.
            end_bit = 8 * -(-landmark.bit // 8)
            while True:
                step = self._next_snapshot(cursor) - cursor.out_pos
                self._inflate(cursor, step, end_bit=end_bit)
                if cursor.out_pos > landmark.out_pos:
                    return None  # more than fits: noise, not a boundary
                if cursor.exact and cursor.out_pos % SNAPSHOT_EVERY == 0:
                    snapshots.append(cursor.point())
                if cursor.main.eof or (not cursor.pending and cursor.in_bit >= end_bit):
                    break
            if to_end:
                unfetched = (end_bit - cursor.in_bit) // 8
                leftover = len(cursor.main.unused_data) + len(cursor.pending) + unfetched
                if not cursor.main.eof or leftover > 1:
                    return None
            elif cursor.main.eof:
                return None
            out_pos = landmark.out_pos - cursor.out_pos
            if out_pos < 0 or (not to_end and not self._agrees(cursor, landmark)):
                return None
        except _Contradiction:
            raise _FarFailed from None
        except _FarFailed:
            return None
        for point in snapshots:
            self._points.append(
                _Point(
                    point.out_pos + out_pos, point.in_bit, True, point.main, None, point.agree, True
                )
            )
        return out_pos

    def _agrees(self, cursor: _Cursor, landmark: _Entry) -> bool:
        """Whether the new chain, continued past ``landmark``, yields what its chain does.

        No byte known to both: not confirmed. Bytes known to both that differ: one of
        the two chains is misplaced, and nothing says which (a deflate stream stored
        inside the member can fall in step with it): raises _Contradiction.
        """
        ours = self._cursor(cursor.point())
        theirs = self._cursor(_Point(landmark.out_pos, landmark.bit, exact=False, far=True))
        # Zero-heavy data can leave the landmark's chain without a known byte for a
        # while: compare further until some byte is known to both.
        remaining = self.size - landmark.out_pos
        common = 0  # bytes known to both chains, all equal so far
        for count in (CHECK, 3 * CHECK, 12 * CHECK):  # 64 KiB, then up to 1 MiB in all
            count = min(count, remaining)
            mine, my_mask = self._masked(ours, count)
            other, other_mask = self._masked(theirs, count)  # the same stretch: in step
            both = my_mask & other_mask
            if (mine ^ other) & both:
                raise _Contradiction
            remaining -= count
            common += both.bit_count() // 8
            if common >= MIN_COMMON or remaining <= 0:
                return common >= min(MIN_COMMON, self.size - landmark.out_pos)
        return False

    def _masked(self, cursor: _Cursor, count: int) -> tuple[int, int]:
        """``count`` bytes as an integer, and a mask of 0xFF over the bytes that are known."""
        parts: list[bytes] = []
        masks: list[bytes] = []
        produced = 0
        while produced < count:
            if not cursor.pending:
                cursor.pending = self._next_input(cursor, self._end_bit)
                if not cursor.pending:
                    break
            piece, other = self._step(cursor, count - produced)
            produced += len(piece)
            masks.append(b"\xff" * len(piece) if other is None else _known(piece, other))
            parts.append(piece)
            if cursor.main.eof:
                break
        data = b"".join(parts)
        return int.from_bytes(data, "little"), int.from_bytes(b"".join(masks), "little")


# Equal bytes XOR to zero: those are the known ones.
_ZERO_TO_FF = bytes([255] + [0] * 255)


def _known(piece: bytes, other: bytes) -> bytes:
    """0xFF where the two inflaters agree (a known byte), 0x00 where they differ."""
    difference = int.from_bytes(piece, "little") ^ int.from_bytes(other, "little")
    return difference.to_bytes(len(piece), "little").translate(_ZERO_TO_FF)
