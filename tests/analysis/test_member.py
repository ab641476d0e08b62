"""Zip members as seekable files: exact bytes anywhere, little work for far or backward reads."""

from __future__ import annotations

import io
import random
import signal
import struct
import zlib
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.analysis.bounds import Budget, Unanalysable
from proxy.analysis.deflate_cursors import MAX_INPUT, SNAPSHOT_EVERY
from proxy.analysis.far_entries import FAR_READS, FarReadTuning
from proxy.analysis.member import CHUNK, DEFLATED, STORED, MemberReader

MiB = 1024 * 1024


def payload(size: int, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    parts: list[bytes] = []
    while sum(map(len, parts)) < size:  # compressible runs between random stretches
        parts.append(rng.randbytes(rng.randrange(1, 4096)))
        parts.append(bytes([rng.randrange(256)]) * rng.randrange(1, 8192))
    return b"".join(parts)[:size]


def deflated(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def reader(
    data: bytes, method: int = DEFLATED, budget: Budget | None = None, *, far: bool = True
) -> MemberReader:
    stored = deflated(data) if method == DEFLATED else data
    source = io.BytesIO(b"junk before" + stored + b"junk after")
    return MemberReader(
        source,
        name="m",
        data_offset=len(b"junk before"),
        compressed_size=len(stored),
        size=len(data),
        method=method,
        budget=budget or Budget(1 << 40),
        far=far,
    )


def member_over(
    source: io.BytesIO,
    compressed_size: int,
    size: int,
    budget: Budget | None = None,
    *,
    far: bool = True,
    tuning: FarReadTuning = FAR_READS,
    max_input: int = MAX_INPUT,
) -> MemberReader:
    """A deflated member that is all of ``source``."""
    return MemberReader(
        source,
        name="m",
        data_offset=0,
        compressed_size=compressed_size,
        size=size,
        method=DEFLATED,
        budget=budget or Budget(1 << 40),
        far=far,
        tuning=tuning,
        max_input=max_input,
    )


@pytest.mark.parametrize(("method", "far"), [(DEFLATED, True), (DEFLATED, False), (STORED, True)])
def test_random_reads_return_the_exact_bytes(method: int, far: bool) -> None:
    data = payload(20 * MiB)
    member = reader(data, method, far=far)
    rng = random.Random(7)
    for _ in range(300):
        offset = rng.randrange(len(data))
        length = rng.choice([1, 4, 64, CHUNK - 1, CHUNK + 1, 3 * CHUNK])
        assert member.read_at(offset, length) == data[offset : offset + length]
    assert member.read_at(len(data) - 5, 100) == data[-5:]
    assert member.read_at(len(data), 10) == b""


def test_file_interface() -> None:
    data = payload(300_000)
    member = reader(data)
    assert member.seek(0, io.SEEK_END) == len(data)
    assert member.seek(-10, io.SEEK_CUR) == len(data) - 10
    assert member.read() == data[-10:]
    assert member.read(5) == b""
    member.seek(100)
    assert member.read(50) == data[100:150]
    assert member.tell() == 150
    buffer = bytearray(20)
    assert member.readinto(buffer) == 20
    assert bytes(buffer) == data[150:170]
    with pytest.raises(ValueError):
        member.seek(-1)


def test_backward_seeks_resume_from_snapshots() -> None:
    data = payload(40 * MiB)
    budget = Budget(1 << 40)
    member = reader(data, budget=budget, far=False)
    assert member.read_at(len(data) - 64, 64) == data[-64:]  # one pass to the end
    first_pass = budget.used
    assert first_pass >= len(data) - CHUNK
    assert member.read_at(0, 64) == data[:64]
    middle = 3 * SNAPSHOT_EVERY + 12345
    assert member.read_at(middle, 64) == data[middle : middle + 64]
    # Going back cost at most a snapshot interval each, not another pass from byte 0.
    assert budget.used - first_pass <= SNAPSHOT_EVERY + 4 * CHUNK


def test_stored_members_inflate_nothing() -> None:
    budget = Budget(1 << 40)
    member = reader(payload(MiB), STORED, budget)
    member.read_at(MiB // 2, 100)
    assert budget.used == 0


def test_truncated_deflate_data() -> None:
    data = payload(MiB)
    stored = deflated(data)[:5000]
    member = member_over(io.BytesIO(stored), len(stored), len(data))
    with pytest.raises(Unanalysable, match="compressed data ends before the declared size"):
        member.read_at(MiB - 10, 10)


def test_source_shorter_than_the_directory_says() -> None:
    data = payload(MiB)
    stored = deflated(data)
    member = member_over(io.BytesIO(stored[:1000]), len(stored), len(data))
    with pytest.raises(Unanalysable, match="member data is truncated"):
        member.read_at(MiB // 2, 10)


def test_budget_stops_inflation() -> None:
    data = payload(4 * MiB)
    member = reader(data, budget=Budget(MiB))
    with pytest.raises(Unanalysable, match="inflating more than"):
        member.read_at(3 * MiB, 10)


class CountingSource(io.BytesIO):
    """A source that counts the compressed bytes read from it."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.ranges: list[tuple[int, int]] = []

    def read(self, size: int | None = -1) -> bytes:
        start = self.tell()
        data = super().read(size)
        self.ranges.append((start, start + len(data)))
        return data

    def distinct(self) -> int:
        covered: set[int] = set()
        for start, end in self.ranges:
            covered.update(range(start // 4096, -(-end // 4096)))
        return len(covered) * 4096


def elf_like(size: int, seed: int = 3) -> bytes:
    """Code-like bytes, a zero-heavy table, then symbol names: a library's layout, roughly.

    The names are new ones, as a real string table's are: bytes copied from before an
    entry point only stay unknown while they keep being copied.
    """
    rng = random.Random(seed)
    words = [rng.randbytes(rng.randrange(2, 9)) for _ in range(400)]
    code = b"".join(rng.choice(words) for _ in range(size // 5))[: size * 6 // 10]
    table = b"".join(
        rng.randrange(1 << 20).to_bytes(8, "little") + bytes(8) for _ in range(size // 64)
    )[: size * 2 // 10]
    names = b"\0".join(rng.randbytes(8).hex().encode() for _ in range(size // 16))
    return (code + table + names)[:size]


def test_far_reads_inflate_the_tail_not_the_middle() -> None:
    data = elf_like(24 * MiB)
    stored = deflated(data)
    source = CountingSource(stored)
    budget = Budget(1 << 40)
    member = member_over(source, len(stored), len(data), budget)
    assert member.read_at(len(data) - 100, 100) == data[-100:]
    assert member.read_at(100, 100) == data[100:200]
    tail = len(data) * 9 // 10
    assert member.read_at(tail, 5000) == data[tail : tail + 5000]
    # The head, the tail and what block searches look at; not the middle, and no full pass.
    assert source.distinct() < len(stored) // 3
    assert budget.used < len(data)


def test_far_reads_match_forward_reads_everywhere() -> None:
    data = elf_like(6 * MiB, seed=9)
    far, near = reader(data), reader(data, far=False)
    rng = random.Random(11)
    offsets = [len(data) - 1, *(rng.randrange(len(data)) for _ in range(60))]
    for offset in offsets:
        length = rng.choice([1, 16, 700, CHUNK + 3])
        assert far.read_at(offset, length) == near.read_at(offset, length)


@pytest.mark.parametrize(
    ("tuning", "goes_far"), [(FAR_READS, True), (replace(FAR_READS, far_member=1 << 40), False)]
)
def test_far_reads_follow_their_tuning(tuning: FarReadTuning, goes_far: bool) -> None:
    data = elf_like(6 * MiB, seed=9)
    stored = deflated(data)
    member = member_over(io.BytesIO(stored), len(stored), len(data), tuning=tuning)
    assert member.read_at(len(data) - 100, 100) == data[-100:]
    assert member.went_far is goes_far


def test_stored_blocks_inside_deflate_data_are_read_exactly() -> None:
    # Incompressible stretches make zlib write stored blocks, aligned to the stream's
    # bytes: a chain entered at an odd bit must still find them.
    rng = random.Random(5)
    data = b"".join(elf_like(300_000, seed=i) + rng.randbytes(200_000) for i in range(8))
    member = reader(data)
    for offset in range(len(data) - 1, 0, -len(data) // 23):
        assert member.read_at(offset, 3000) == data[offset : offset + 3000]


def test_peek_reads_only_the_start() -> None:
    data = payload(4 * MiB)
    stored = deflated(data)
    source = CountingSource(stored)
    member = member_over(source, len(stored), len(data))
    assert member.peek(4) == data[:4]
    assert sum(end - start for start, end in source.ranges) <= 4096


_HOSTILE = elf_like(4 * MiB, seed=21)
_HOSTILE_DEFLATED = deflated(_HOSTILE)


@pytest.mark.heavy
@settings(max_examples=15, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, len(_HOSTILE_DEFLATED) - 1), st.integers(0, 255)),
        min_size=1,
        max_size=8,
    ),
    st.integers(0, len(_HOSTILE) - 1),
)
def test_mutated_deflate_data_read_far_gives_bytes_or_a_reason(
    edits: list[tuple[int, int]], offset: int
) -> None:
    stream = bytearray(_HOSTILE_DEFLATED)
    for at, value in edits:
        stream[at] = value
    member = member_over(io.BytesIO(bytes(stream)), len(stream), len(_HOSTILE), Budget(64 * MiB))
    for at in (len(_HOSTILE) - 64, offset):
        try:
            data = member.read_at(at, 64)
        except Unanalysable:
            continue
        assert len(data) == min(64, len(_HOSTILE) - at)


def stored_blocks(chunk: bytes, *, final: bool = False) -> bytes:
    """``chunk`` as deflate stored blocks (byte-aligned: header byte, LEN, NLEN, data)."""
    out = b""
    for at in range(0, len(chunk), 65535):
        part = chunk[at : at + 65535]
        last = final and at + 65535 >= len(chunk)
        out += bytes([1 if last else 0]) + struct.pack("<HH", len(part), len(part) ^ 0xFFFF)
        out += part
    return out


def test_a_stream_stored_near_the_end_is_not_taken_for_the_members_end() -> None:
    # A complete deflate stream R kept verbatim in the member, exactly as long as a far
    # cursor's first two fetches: inflating from inside R ends where a fetch does, and
    # only the bytes not yet fetched show that the member goes on.
    head_data, tail_data = elf_like(1_000_000, seed=2), elf_like(6_000, seed=3)
    inner = zlib.compressobj(6, zlib.DEFLATED, -15)
    head = inner.compress(elf_like(20_000, seed=4)) + inner.flush(zlib.Z_SYNC_FLUSH)
    padding = 12288 - len(head) - 5
    assert padding > 0
    embedded = head + stored_blocks(random.Random(6).randbytes(padding), final=True)
    first = zlib.compressobj(6, zlib.DEFLATED, -15)
    stream = first.compress(head_data) + first.flush(zlib.Z_FULL_FLUSH)
    stream += stored_blocks(random.Random(5).randbytes(100_000)) + stored_blocks(embedded)
    last = zlib.compressobj(6, zlib.DEFLATED, -15)
    stream += last.compress(tail_data) + last.flush()
    data = head_data + random.Random(5).randbytes(100_000) + embedded + tail_data
    assert zlib.decompress(stream, -15) == data
    member = member_over(io.BytesIO(stream), len(stream), len(data))
    assert member.read_at(len(data) - 64, 64) == data[-64:]


def test_reading_past_what_the_data_holds_is_refused_every_time() -> None:
    # Read forward, as a local file is: the second read resumes from a snapshot the
    # first one left, and must fail the same way instead of spinning.
    data = payload(10 * MiB)
    stream = deflated(data)
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    damaged = compressor.compress(data[: 9 * MiB]) + compressor.flush(zlib.Z_FULL_FLUSH)
    damaged += b"\x00" + struct.pack("<HH", 16, 16)  # a stored block whose NLEN is wrong
    with pytest.raises(zlib.error):
        zlib.decompress(damaged, -15)
    cases = [
        (stream, len(data) + 100_000, len(data) + 50_000),  # a size that lies
        (damaged, len(data), len(data) - 10),  # data past 8 MiB's snapshot that is bad
    ]
    signal.signal(signal.SIGALRM, _hung)
    try:
        for compressed, size, offset in cases:
            member = member_over(io.BytesIO(compressed), len(compressed), size, far=False)
            for _ in range(2):
                signal.alarm(60)
                with pytest.raises(Unanalysable):
                    member.read_at(offset, 10)
                signal.alarm(0)
    finally:
        signal.alarm(0)


def _hung(signum: int, frame: object) -> None:
    raise TimeoutError("a read did not finish")


def test_a_member_without_dynamic_blocks_is_searched_a_bounded_amount() -> None:
    data = random.Random(8).randbytes(8 * MiB)  # incompressible: stored blocks only
    stream = deflated(data)
    source = CountingSource(stream)
    member = member_over(source, len(stream), len(data))
    assert member.read_at(len(data) - 100, 100) == data[-100:]
    read = sum(end - start for start, end in source.ranges)
    assert read < len(stream) + FAR_READS.scan_budget + 2 * MiB
