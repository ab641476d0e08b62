"""Entering deflate data at block boundaries found by searching, not by inflating."""

from __future__ import annotations

import random
import zlib

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.analysis.deflate_blocks import PLACEHOLDER_A, PLACEHOLDER_B, block_starts, entry


def library_like(size: int, seed: int) -> bytes:
    """Compressible code-like runs, zero padding and incompressible stretches (stored blocks)."""
    rng = random.Random(seed)
    words = [rng.randbytes(rng.randrange(2, 10)) for _ in range(300)]
    parts: list[bytes] = []
    while sum(map(len, parts)) < size:
        parts.append(b"".join(rng.choice(words) for _ in range(rng.randrange(100, 5000))))
        parts.append(bytes(rng.randrange(0, 3000)))
        if rng.random() < 0.2:
            parts.append(rng.randbytes(rng.randrange(1000, 40000)))
    return b"".join(parts)[:size]


def inflate_from(stream: bytes, bit: int, placeholder: bytes) -> tuple[bytes, bool]:
    prefix, dropped = entry(bit, stream[bit // 8])
    inflater = zlib.decompressobj(-15, zdict=placeholder)
    rest = stream[bit // 8 + (1 if prefix else 0) :]
    out = inflater.decompress(prefix + rest)
    return out[dropped:], inflater.eof


KNOWN = 0xFF
# Byte by byte: 0xFF where the byte is zero, else 0 (C speed: the streams are megabytes).
_ZERO_TABLE = bytes([KNOWN] + [0] * 255)


def _int(data: bytes) -> int:
    return int.from_bytes(data, "big")


def _xor(x: bytes, y: bytes) -> bytes:
    return (_int(x) ^ _int(y)).to_bytes(len(x), "big")


def _zero_bytes(data: bytes) -> bytes:
    return data.translate(_ZERO_TABLE)


def test_every_boundary_found_yields_the_true_bytes_wherever_they_are_known() -> None:
    data = library_like(3 * 1024 * 1024, seed=1)
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    stream = compressor.compress(data) + compressor.flush()
    confirmed = 0
    shifts = set()
    for bit in block_starts(stream):
        try:
            a, finished = inflate_from(stream, bit, PLACEHOLDER_A)
            b, _ = inflate_from(stream, bit, PLACEHOLDER_B)
        except zlib.error:
            continue  # a candidate only: noise that passed the header checks
        if not finished or len(a) != len(b):
            continue
        truth = data[len(data) - len(a) :]
        # Where the two placeholders inflate alike the byte is known, and must be true.
        known = _zero_bytes(_xor(a, b))
        assert _int(known) & _int(_xor(a, truth)) == 0
        assert KNOWN in known  # literals at least; copies of the unknown window stay unknown
        confirmed += 1
        shifts.add(bit % 8)
    assert confirmed >= 20
    assert shifts == set(range(8))  # the synthetic prefix works for every bit position


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=4096), st.integers(0, 64))
def test_arbitrary_bytes_give_candidates_inside_them_and_nothing_else(
    data: bytes, start: int
) -> None:
    for bit in block_starts(data, start):
        assert start <= bit < len(data) * 8
