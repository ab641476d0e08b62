"""Zip members as seekable files: exact bytes anywhere, bounded work for backward seeks."""

from __future__ import annotations

import io
import random
import zlib

import pytest

from proxy.analysis.bounds import Budget, Unanalysable
from proxy.analysis.member import CHUNK, DEFLATED, SNAPSHOT_EVERY, STORED, MemberReader

MiB = 1024 * 1024


def payload(size: int, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    parts = []
    while sum(map(len, parts)) < size:  # compressible runs between random stretches
        parts.append(rng.randbytes(rng.randrange(1, 4096)))
        parts.append(bytes([rng.randrange(256)]) * rng.randrange(1, 8192))
    return b"".join(parts)[:size]


def deflated(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def reader(data: bytes, method: int = DEFLATED, budget: Budget | None = None) -> MemberReader:
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
    )


@pytest.mark.parametrize("method", [DEFLATED, STORED])
def test_random_reads_return_the_exact_bytes(method: int) -> None:
    data = payload(20 * MiB)
    member = reader(data, method)
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
    member = reader(data, budget=budget)
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
    member = MemberReader(
        io.BytesIO(stored),
        name="m",
        data_offset=0,
        compressed_size=len(stored),
        size=len(data),
        method=DEFLATED,
        budget=Budget(1 << 40),
    )
    with pytest.raises(Unanalysable, match="compressed data ends before the declared size"):
        member.read_at(MiB - 10, 10)


def test_source_shorter_than_the_directory_says() -> None:
    data = payload(MiB)
    stored = deflated(data)
    member = MemberReader(
        io.BytesIO(stored[:1000]),
        name="m",
        data_offset=0,
        compressed_size=len(stored),
        size=len(data),
        method=DEFLATED,
        budget=Budget(1 << 40),
    )
    with pytest.raises(Unanalysable, match="member data is truncated"):
        member.read_at(MiB // 2, 10)


def test_budget_stops_inflation() -> None:
    data = payload(4 * MiB)
    member = reader(data, budget=Budget(MiB))
    with pytest.raises(Unanalysable, match="inflating more than"):
        member.read_at(3 * MiB, 10)
