"""Entries far into a deflated member: block boundaries found, confirmed and placed.

Deflate can only be entered at a block boundary, and nothing records where they lie
(`proxy.analysis.deflate_blocks` finds candidates). To read far past everything
inflated so far, `FarEntries.entry_before` goes back from the nearest point whose
position is known (the member's end, or an entry found earlier) in rounds, each
aiming short of the target by the compression ratio measured just after it: data
compresses unevenly, and an overshoot costs fetched bytes.

A candidate is noise until confirmed. Where an entry lies in the inflated bytes is
learnt by inflating from it, on placeholder windows (`proxy.analysis.deflate_cursors`),
to that known point: the chain must end exactly there, and where it meets an older
entry's chain the two must agree on enough bytes both know. Two chains that disagree
on a byte both know mean one of them is misplaced, and nothing says which (a deflate
stream stored inside the member can fall in step with it): the far path is given up
for the member, as it is when searching or confirming would cost more than inflating
forward. Giving up raises `FarFailed`; the reader then inflates from a known point,
so the bytes it returns are always exact.

Every threshold is a field of `FarReadTuning`, with the reason for its value.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace

from proxy.analysis.bounds import MiB
from proxy.analysis.deflate_blocks import HEADER_BITS, WINDOW, block_starts
from proxy.analysis.deflate_cursors import Cursor, FarFailed, MemberData, Point


@dataclass(frozen=True, slots=True)
class FarReadTuning:
    """How far reads decide, search and confirm. Sizes in bytes."""

    far_member: int = 256 * 1024
    """Compressed size from which a member is read by its ends: below it, its middle is
    short, and the zero-heavy data before its dynamic section keeps bytes unknown for
    longer than the member is. 256 KiB fetched less than 512 KiB on torch and
    opencv-python by URL (23.1% and 13.4% of their bytes, against 24.4% and 14.0%)."""

    far_min: int = 64 * 1024
    """Compressed bytes worth skipping; a nearer read inflates forward: a search fetches
    and then inflates about as much as it skips, plus its `slack`, so saves little."""

    lead: int = WINDOW
    """How far before the bytes read an entry is wanted: its unknown window must fill
    with known bytes, one deflate window of them, before those bytes are exact."""

    retries: int = 6
    """Entries tried further back when bytes stay unknown, before a known point is
    used: zero-heavy data keeps bytes unknown for long stretches, and with
    `retry_growth` the last one aims `lead` x 4**6 = 128 MiB back."""

    retry_growth: int = 4
    """How much further back each retry aims than the last (`lead` times this to the
    power of the attempt): few retries cover short and long stretches alike."""

    first_probe: int = 64 * 1024
    """Compressed bytes a first round goes back at most, before anything says how the
    data there compresses: one `scan`."""

    slack: int = 16 * 1024
    """Compressed bytes searched beyond an estimate: about half a block, so the stretch
    searched likely holds a boundary even where the estimate falls inside a block."""

    rounds: int = 16
    """Entries found, each nearer a target, before inflating forward instead: with
    rounds that may grow four-fold (`reach`), enough to cross gigabytes."""

    aim: float = 0.8
    """Share of the estimated compressed distance to the target gone back in a round:
    an undershoot costs another round, an overshoot fetched bytes past the target."""

    reach: int = 4
    """Growth of a round's distance over the last one, at most: stops a ratio measured
    near the end from overshooting by megabytes."""

    candidates: int = 16
    """Boundaries that fail confirmation before a spot is given up: each costs an
    inflation to the landmark, and many in a row mean noise that passes the block test."""

    scan: int = 64 * 1024
    """Compressed bytes fetched and searched for boundaries at a time: the search stops
    at the first one confirmed, so little is fetched past it."""

    lookahead: int = 4 * 1024
    """Read past a scanned stretch: a block header that begins near its end (74 bits at
    most) and the trial inflation that tests it (2 KiB of input) run on into it."""

    scan_budget: int = 4 * MiB
    """Compressed bytes searched per member before inflating forward instead: a member of
    stored or fixed blocks has no boundaries to find, and was scanned to its start."""

    measure_budget: int = 8 * MiB
    """Compressed bytes inflated to confirm boundaries per member (or its compressed
    size, if more): past it, confirming costs more than a forward read (libgdal in
    pyogrio, its candidates unconfirmable, was inflated from each: 10.7 s)."""

    checks: tuple[int, ...] = (64 * 1024, 192 * 1024, 768 * 1024)
    """Inflated bytes compared where a new chain meets an older one, stretch after
    stretch until `min_common` are known to both: up to 1 MiB in all, since a zero-heavy
    tail (libgdal's) leaves a landmark's chain knowing nothing for its first 64 KiB."""

    min_common: int = 256
    """Bytes both chains must know, and agree on, to confirm an entry: a chain of noise
    made mostly of window copies could pass on a single one."""


FAR_READS = FarReadTuning()


class _Contradiction(Exception):
    """Two chains measured to the same place disagree on bytes both know."""


@dataclass(frozen=True, slots=True)
class Entry:
    """A confirmed block boundary: compressed bit offset, inflated offset."""

    bit: int
    out_pos: int


class FarEntries:
    """The entries found in one member of ``size`` inflated bytes, and their search.

    ``keep`` is given every point the search learns the position of (each entry, and
    the snapshots of chains measured from them), so the reader can start there. A
    search that gives up for the member raises `FarFailed`.
    """

    def __init__(
        self, data: MemberData, *, size: int, keep: Callable[[Point], None], tuning: FarReadTuning
    ) -> None:
        self._data = data
        self._size = size
        self._keep = keep
        self._tuning = tuning
        self._entries: list[Entry] = []  # sorted by position
        self._barren: dict[int, int] = {}  # landmark bit -> searched from byte
        self._scanned = 0  # compressed bytes searched for boundaries
        self._measured = 0  # compressed bytes inflated to confirm boundaries

    @property
    def found_any(self) -> bool:
        return bool(self._entries)

    def ratio_at(self, out_pos: int) -> float:
        """Compressed bytes per inflated byte around ``out_pos``, as far as known."""
        known = [Entry(0, 0), *self._entries, Entry(self._data.end_bit, self._size)]
        for before, after in itertools.pairwise(known):
            if before.out_pos <= out_pos < after.out_pos:
                return (after.bit - before.bit) / 8 / (after.out_pos - before.out_pos)
        return self._data.compressed_size / max(self._size, 1)

    def search_cost(self, target: int) -> float:
        """Compressed bytes estimated to lie between ``target`` and the known point
        after it, with the slack searched beyond them: what an entry there costs."""
        landmark = self._landmark_after(target)
        return (landmark.out_pos - target) * self.ratio_at(target) + self._tuning.slack

    def entry_before(self, target: int, floor: Cursor | Point | None) -> Entry | None:
        """A confirmed entry at or before ``target`` and past ``floor``, or None.

        Goes back in rounds, each from the last entry found, aiming short by the ratio
        measured just after it and at most `reach` times as far as the round before:
        data compresses unevenly, and an overshoot costs fetched bytes.
        """
        tuning = self._tuning
        landmark = self._landmark_after(target)
        widen = 1
        reach = tuning.first_probe
        for _ in range(tuning.rounds):
            ratio = self.ratio_at(landmark.out_pos)  # how what follows compressed
            step = min(int((landmark.out_pos - target) * ratio * tuning.aim), reach)
            low = max(0, landmark.bit // 8 - (step + tuning.slack) * widen)
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
            reach = tuning.reach * (landmark.bit - found.bit) // 8
            landmark = found
            widen = 1
        return None

    def _landmark_after(self, target: int) -> Entry:
        for known in self._entries:
            if known.out_pos > target:
                return known
        return Entry(self._data.end_bit, self._size)

    def _find_entry(self, low: int, landmark: Entry) -> Entry | None:
        """The first confirmed block boundary from byte ``low`` on, before ``landmark``."""
        tuning = self._tuning
        searched = self._barren.get(landmark.bit)
        if searched is not None and searched <= low:
            return None
        # What was searched before for this landmark is searched again only for the
        # headers that straddle its start.
        limit = landmark.bit // 8
        if searched is not None:
            limit = min(limit, searched + HEADER_BITS // 8 + 1)
        tried = 0
        for start in range(low, limit, tuning.scan):
            end = min(start + tuning.scan, limit)
            self._scanned += end - start
            if self._scanned > tuning.scan_budget:
                raise FarFailed  # no boundaries worth the search: a stored or odd member
            window = self._data.compressed(
                start, min(end + tuning.lookahead, self._data.compressed_size)
            )
            for bit in block_starts(window, 0, (end - start) * 8):
                known = next((e for e in self._entries if e.bit == start * 8 + bit), None)
                if known is not None:
                    return known  # found before, by another search
                tried += 1
                if tried > tuning.candidates:
                    break
                out_pos = self._measure(start * 8 + bit, landmark)
                if out_pos is not None:
                    return self._remember(Entry(start * 8 + bit, out_pos))
            if tried > tuning.candidates:
                break
        self._barren[landmark.bit] = low
        return None

    def _remember(self, found: Entry) -> Entry:
        if found not in self._entries:
            self._entries.append(found)
            self._entries.sort(key=lambda e: e.out_pos)
            self._keep(Point(found.out_pos, found.bit, exact=False, far=True))
        return found

    def _measure(self, bit: int, landmark: Entry) -> int | None:
        """Where the block at ``bit`` lies in the inflated bytes, if it is a real boundary."""
        data = self._data
        self._measured += (landmark.bit - bit) // 8
        if self._measured > max(self._tuning.measure_budget, data.compressed_size):
            raise FarFailed  # confirming costs more than reading forward would
        cursor = data.cursor(Point(0, bit, exact=False))
        snapshots: list[Point] = []
        try:
            to_end = landmark.bit == data.end_bit
            # Up to the landmark's byte: its header's first bits cannot yield output.
            end_bit = 8 * -(-landmark.bit // 8)
            while True:
                step = cursor.next_snapshot() - cursor.out_pos
                data.inflate(cursor, step, end_bit=end_bit)
                if cursor.out_pos > landmark.out_pos:
                    return None  # more than fits: noise, not a boundary
                if cursor.at_snapshot:
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
            raise FarFailed from None
        except FarFailed:
            return None
        for point in snapshots:  # exact from here on: only their position was unknown
            self._keep(replace(point, out_pos=point.out_pos + out_pos, far=True))
        return out_pos

    def _agrees(self, cursor: Cursor, landmark: Entry) -> bool:
        """Whether the new chain, continued past ``landmark``, yields what its chain does.

        No byte known to both: not confirmed. Bytes known to both that differ: one of
        the two chains is misplaced, and nothing says which (a deflate stream stored
        inside the member can fall in step with it): raises _Contradiction.
        """
        min_common = self._tuning.min_common
        ours = self._data.cursor(cursor.point())
        theirs = self._data.cursor(Point(landmark.out_pos, landmark.bit, exact=False, far=True))
        # Zero-heavy data can leave the landmark's chain without a known byte for a
        # while: compare further until some byte is known to both.
        remaining = self._size - landmark.out_pos
        common = 0  # bytes known to both chains, all equal so far
        for count in self._tuning.checks:
            count = min(count, remaining)
            mine, my_mask = self._masked(ours, count)
            other, other_mask = self._masked(theirs, count)  # the same stretch: in step
            both = my_mask & other_mask
            if (mine ^ other) & both:
                raise _Contradiction
            remaining -= count
            common += both.bit_count() // 8
            if common >= min_common or remaining <= 0:
                return common >= min(min_common, self._size - landmark.out_pos)
        return False

    def _masked(self, cursor: Cursor, count: int) -> tuple[int, int]:
        """``count`` bytes as an integer, and a mask of 0xFF over the bytes that are known."""
        data = self._data
        parts: list[bytes] = []
        masks: list[bytes] = []
        produced = 0
        while produced < count:
            if not cursor.pending:
                cursor.pending = data.next_input(cursor, data.end_bit)
                if not cursor.pending:
                    break
            piece, other = data.step(cursor, count - produced)
            produced += len(piece)
            masks.append(b"\xff" * len(piece) if other is None else _known(piece, other))
            parts.append(piece)
            if cursor.main.eof:
                break
        joined = b"".join(parts)
        return int.from_bytes(joined, "little"), int.from_bytes(b"".join(masks), "little")


# Equal bytes XOR to zero: those are the known ones.
_ZERO_TO_FF = bytes([255] + [0] * 255)


def _known(piece: bytes, other: bytes) -> bytes:
    """0xFF where the two inflaters agree (a known byte), 0x00 where they differ."""
    difference = int.from_bytes(piece, "little") ^ int.from_bytes(other, "little")
    return difference.to_bytes(len(piece), "little").translate(_ZERO_TO_FF)
