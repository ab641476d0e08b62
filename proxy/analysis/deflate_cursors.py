"""Inflating a deflated zip member from any point of it, knowing which bytes are exact.

A point is a place to resume inflating: a bit offset into the compressed data, and
the offset of what it inflates to. A cursor inflates on from a point, fetching the
compressed bytes it needs a few KiB at a time. From the member's start, or from a
snapshot taken on the way (the zran technique), every byte a cursor yields is exact.

A cursor may also start at a block boundary found far into the member
(`proxy.analysis.far_entries`). The 32 KiB window before such an entry is unknown,
so two inflaters run side by side on placeholders that differ in every byte
(`proxy.analysis.deflate_blocks`): bytes on which they agree are exact, and once they
agree over a whole window the second one is dropped, since all that follows can only
copy known bytes. The invariant: a byte is counted known only where both inflaters
yield it alike, so callers can tell exact bytes from guesses.

Such a cursor is ``far``: whatever goes wrong on it (corrupt data, an early end,
inflaters that fall out of step) raises `FarFailed`, since the fault may be the entry
(a boundary that was noise), not the member; the reader then inflates from a known
point. On any other cursor the same faults are the member's: `Unanalysable`.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import IO, NoReturn

from proxy.analysis.bounds import Budget, MiB, Unanalysable
from proxy.analysis.deflate_blocks import PLACEHOLDER_A, PLACEHOLDER_B, WINDOW, entry

RAW_DEFLATE = -15  # zlib's wbits for a bare deflate stream, as a zip member holds
SNAPSHOT_EVERY = 8 * MiB  # inflated bytes between a cursor's snapshots
FIRST_INPUT = 4 * 1024  # compressed bytes a cursor fetches first; doubled each fetch
MAX_INPUT = 256 * 1024  # compressed bytes a cursor fetches at a time, at most
# The same for a reader going through a long stretch in order (a fat binary walk): by URL
# each fetch is a request, and 256 KiB at a time took 2,827 requests through cudnn's.
SEQUENTIAL_INPUT = 4 * MiB


class FarFailed(Exception):
    """The far path cannot serve this read; inflate from a known point instead."""


@dataclass(frozen=True, slots=True)
class Point:
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
class Cursor:
    out_pos: int
    in_bit: int  # the next compressed bit to fetch (what ``pending`` holds comes before it)
    main: zlib._Decompress
    shadow: zlib._Decompress | None  # runs while the window may hold unknown bytes
    agree: int = 0  # trailing output bytes on which main and shadow agree
    pending: bytes = b""
    input_size: int = FIRST_INPUT
    far: bool = False  # started at a found boundary: its failures are FarFailed

    @property
    def exact(self) -> bool:
        return self.shadow is None

    @property
    def at_snapshot(self) -> bool:
        """Whether this is a place to keep a snapshot: exact, on a SNAPSHOT_EVERY mark."""
        return self.exact and self.out_pos % SNAPSHOT_EVERY == 0

    def next_snapshot(self) -> int:
        return (self.out_pos // SNAPSHOT_EVERY + 1) * SNAPSHOT_EVERY

    def point(self) -> Point:
        consumed = self.in_bit - 8 * len(self.pending)
        shadow = self.shadow.copy() if self.shadow is not None else None
        main = self.main.copy()
        return Point(self.out_pos, consumed, self.exact, main, shadow, self.agree, self.far)


class MemberData:
    """The compressed bytes of one member in ``source``, and cursors that inflate them.

    Every inflated byte is charged to ``budget`` (twice while a shadow runs).
    """

    def __init__(
        self,
        source: IO[bytes],
        *,
        name: str,
        data_offset: int,
        compressed_size: int,
        budget: Budget,
        max_input: int = MAX_INPUT,
    ) -> None:
        self.name = name
        self.compressed_size = compressed_size
        self.end_bit = 8 * compressed_size
        self._source = source
        self._data_offset = data_offset
        self._budget = budget
        self._max_input = max_input

    def compressed(self, start: int, end: int) -> bytes:
        self._source.seek(self._data_offset + start)
        data = self._source.read(end - start)
        if len(data) != end - start:
            raise Unanalysable(f"{self.name}: member data is truncated")
        return data

    def cursor(self, point: Point) -> Cursor:
        """A cursor at ``point``: a copy of its inflaters, or fresh ones."""
        if point.main is not None:
            shadow = point.shadow.copy() if point.shadow is not None else None
            return Cursor(
                point.out_pos, point.in_bit, point.main.copy(), shadow, point.agree, far=point.far
            )
        if point.exact:
            return Cursor(point.out_pos, point.in_bit, zlib.decompressobj(RAW_DEFLATE), None)
        main = zlib.decompressobj(RAW_DEFLATE, zdict=PLACEHOLDER_A)
        shadow = zlib.decompressobj(RAW_DEFLATE, zdict=PLACEHOLDER_B)
        cursor = Cursor(point.out_pos, point.in_bit, main, shadow, far=True)
        if point.in_bit % 8:
            first = point.in_bit // 8
            prefix, dropped = entry(point.in_bit, self.compressed(first, first + 1)[0])
            try:
                yields = (len(main.decompress(prefix)), len(shadow.decompress(prefix)))
            except zlib.error:
                raise FarFailed from None
            if yields != (dropped, dropped):
                raise FarFailed
            cursor.in_bit = 8 * (first + 1)
        return cursor

    def inflate(
        self, cursor: Cursor, count: int, *, end_bit: int | None = None
    ) -> tuple[bytes, bool]:
        """The next ``count`` inflated bytes and whether all of them are known.

        Stops early only at the end of the deflate data, or when ``end_bit`` is given
        and the input up to it is used up (a far cursor measuring its distance).
        """
        parts = []
        known = True
        produced = 0
        limit_bit = self.end_bit if end_bit is None else end_bit
        while produced < count:
            if cursor.main.eof:
                if end_bit is not None or cursor.far:
                    break
                raise Unanalysable(f"{self.name}: deflate data ends before the declared size")
            if not cursor.pending:
                cursor.pending = self.next_input(cursor, limit_bit, in_order=end_bit is not None)
                if not cursor.pending:
                    if end_bit is not None:
                        break
                    self.fail(cursor, "compressed data ends before the declared size")
            piece, other = self.step(cursor, count - produced)
            parts.append(piece)
            produced += len(piece)
            known = known and (other is None or other == piece)
        return b"".join(parts), known

    def step(self, cursor: Cursor, most: int) -> tuple[bytes, bytes | None]:
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
                    raise FarFailed
        except zlib.error as exc:
            self.fail(cursor, f"corrupt deflate data ({exc})")
        cursor.pending = cursor.main.unconsumed_tail
        if not piece and len(cursor.pending) == before and not cursor.main.eof:
            self.fail(cursor, "deflate data makes no progress")
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

    def next_input(self, cursor: Cursor, limit_bit: int, *, in_order: bool = False) -> bytes:
        """The cursor's next compressed bytes, none past ``limit_bit``.

        ``in_order``: the cursor goes all the way to ``limit_bit`` (measuring its distance
        to a landmark), so it fetches as a sequential reader does.
        """
        start = cursor.in_bit // 8  # cursors always stand on a byte of the stream
        want = min(cursor.input_size, limit_bit // 8 - start)
        if want <= 0:
            return b""
        cursor.in_bit += 8 * want
        most = max(self._max_input, SEQUENTIAL_INPUT) if in_order else self._max_input
        cursor.input_size = min(cursor.input_size * 2, most)
        return self.compressed(start, start + want)

    def fail(self, cursor: Cursor, reason: str) -> NoReturn:
        if cursor.far:
            raise FarFailed
        raise Unanalysable(f"{self.name}: {reason}")
