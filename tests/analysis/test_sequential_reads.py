"""Reads that go through a long stretch in order fetch it in few, long pieces: by URL each
fetch is a request."""

from __future__ import annotations

import os

from proxy.analysis.bounds import MiB
from proxy.analysis.deflate_cursors import MAX_INPUT, SEQUENTIAL_INPUT
from tests.analysis.test_member import CountingSource, deflated, elf_like, member_over


def walked(data: bytes, max_input: int) -> CountingSource:
    """The source after reading ``data``, deflated, from its start to its end in order."""
    stored = deflated(data)
    source = CountingSource(stored)
    member = member_over(source, len(stored), len(data), far=False, max_input=max_input)
    for offset in range(0, len(data), 64 * 1024):
        assert member.read_at(offset, 64) == data[offset : offset + 64]
    return source


def test_a_walk_in_order_fetches_in_long_pieces() -> None:
    data = elf_like(16 * MiB) + os.urandom(4 * MiB)  # compressed: about 10 MiB
    compressed = len(deflated(data))
    usual, sequential = walked(data, MAX_INPUT), walked(data, SEQUENTIAL_INPUT)
    assert len(usual.ranges) >= compressed // MAX_INPUT
    # Doubling from 4 KiB to 4 MiB, then 4 MiB at a time: 12 fetches, not 47.
    assert len(sequential.ranges) <= 10 + compressed // SEQUENTIAL_INPUT
    assert sequential.distinct() == usual.distinct()  # the same bytes, all of them
