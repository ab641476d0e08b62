"""Which bytes of a member were inflated from its start, and which from an entry found by
searching: a doubt about bytes of the first kind is settled, they are the file's own."""

from __future__ import annotations

from proxy.analysis.bounds import MiB
from tests.analysis.test_member import elf_like, reader


def test_bytes_from_a_found_entry_are_told_from_bytes_from_the_start() -> None:
    data = elf_like(6 * MiB)
    member = reader(data)
    tail = len(data) - 100
    assert member.read_at(tail, 100) == data[tail:]
    assert member.went_far
    assert not member.from_start(tail, 100)
    assert member.read_at(100, 100) == data[100:200]
    assert member.from_start(0, 200)
    assert not member.from_start(0, len(data))  # a span is the file's own only whole


def test_a_forward_reader_reads_everything_from_the_start() -> None:
    data = elf_like(2 * MiB, seed=5)
    member = reader(data, far=False)
    assert member.read_at(len(data) - 100, 100) == data[-100:]
    assert not member.went_far
    assert member.from_start(0, len(data))
