"""Where deflate blocks begin, found without inflating what comes before them.

Deflate can only be entered at a block boundary, and boundaries sit at bit offsets
that nothing records. A dynamic-Huffman block announces itself with a header whose
fields have narrow legal ranges and whose code-length code must be complete (RFC
1951 3.2.7; zlib refuses an incomplete one), so every bit offset of a window can be
tested cheaply: big-integer masks over the whole window for the fixed fields, a
table lookup for completeness, then zlib itself on the few survivors, inflating a
little with a placeholder for the unknown 32 KiB that came before. A survivor is a
candidate only: callers confirm it by inflating onward to a known point.

Stored and fixed-Huffman blocks are not looked for: their headers say too little to
tell them from noise. zlib writes dynamic blocks for any compressible data, which is
what ELF files are.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

WINDOW = 32 * 1024  # deflate's largest back-reference distance
# Two placeholders for the window before an entry point that differ in every byte:
# a byte that comes out the same from both is a literal or a copy of one, not of the
# placeholder, so comparing the two outputs tells known bytes from unknown ones.
PLACEHOLDER_A = bytes(WINDOW)
PLACEHOLDER_B = b"\xff" * WINDOW

_PIECE = 64  # bytes tested per big-integer pass; small keeps each integer operation cheap
HEADER_BITS = 17 + 19 * 3  # BFINAL, BTYPE, HLIT, HDIST, HCLEN and 19 code lengths at most
_TRIAL_INPUT = 2048
_TRIAL_OUTPUT = 4096


def _kraft_sums() -> tuple[int, ...]:
    """For 12 bits holding four 3-bit code lengths: their share of a complete code, in 1/128."""
    sums = []
    for bits in range(4096):
        lengths = ((bits >> shift) & 7 for shift in (0, 3, 6, 9))
        sums.append(sum(128 >> length for length in lengths if length))
    return tuple(sums)


_KRAFT = _kraft_sums()


def _reversed_bits(code: int, length: int) -> int:
    """A Huffman code as deflate packs it: most significant bit first into an LSB-first stream."""
    return int(f"{code:0{length}b}"[::-1], 2)


def _prefix(shift: int) -> tuple[int, int, int]:
    """Fixed-Huffman blocks as bits (value, length) with length = ``shift`` modulo 8.

    An empty block (header 3 bits, end-of-block code 7) is 10 bits long. An odd length
    needs a block of odd length: one copy of 115 bytes at distance 1 (length code 280,
    8 bits, 4 extra bits; distance code 0, 5 bits) makes 27. Returns the output length.
    """
    value = length = 0

    def put(bits: int, count: int) -> None:
        nonlocal value, length
        value |= bits << length
        length += count

    empty = shift // 2 if shift % 2 == 0 else (shift - 3) // 2 % 4
    produced = 0
    if shift % 2:
        put(0b010, 3)  # BFINAL 0, BTYPE 01 (fixed)
        put(_reversed_bits(0b11000000, 8), 8)  # length code 280: 115 + 4 extra bits
        put(0, 4)
        put(_reversed_bits(0, 5), 5)  # distance code 0: distance 1
        put(_reversed_bits(0, 7), 7)  # end of block
        produced = 115
    for _ in range(empty):
        put(0b010, 3)
        put(_reversed_bits(0, 7), 7)
    assert length % 8 == shift
    return value, length, produced


_PREFIXES = tuple(_prefix(shift) for shift in range(8))


def entry(bit: int, first_byte: int) -> tuple[bytes, int]:
    """What to feed an inflater so that it goes on at bit ``bit`` of a deflate stream.

    Python's zlib cannot start mid-byte (no inflatePrime), and shifting the stream
    would misalign its stored blocks, which sit on the stream's own byte boundaries.
    So synthetic fixed-Huffman blocks, exactly as many bits long modulo 8 as ``bit``,
    end where the real bits begin; their last byte is completed by the real byte
    ``first_byte`` (the one holding ``bit``), after which the stream's bytes follow as
    they are, from the next byte. Returns those bytes and how many inflated bytes they
    yield, which the caller drops: they are copies of the window, not of the stream.
    """
    shift = bit % 8
    if shift == 0:
        return b"", 0
    value, length, produced = _PREFIXES[shift]
    whole = length // 8
    head = (value & ((1 << (8 * whole)) - 1)).to_bytes(whole, "little")
    low = value >> (8 * whole)
    return head + bytes([low | (first_byte & (0xFF << shift) & 0xFF)]), produced


def block_starts(data: bytes, start_bit: int = 0, end_bit: int | None = None) -> Iterator[int]:
    """Bit offsets in [start_bit, end_bit) where a dynamic-Huffman block plausibly begins.

    Each offset yielded passed zlib's own checks of the block's code tables and
    inflated a little; none is proven until inflated to a point whose position is known.
    """
    stop = len(data) * 8 if end_bit is None else min(end_bit, len(data) * 8)
    kraft = _KRAFT
    for base in range(start_bit // 8, -(-stop // 8), _PIECE):
        piece = data[base : base + _PIECE + HEADER_BITS // 8 + 2]
        width = len(piece) * 8
        usable = min(_PIECE * 8, width - HEADER_BITS, stop - base * 8)
        if usable <= 0:
            return
        value = int.from_bytes(piece, "little")
        ones = (1 << width) - 1
        # BTYPE = 2: bit 1 clear, bit 2 set (BFINAL, bit 0, may be either).
        mask = (ones ^ (value >> 1)) & (value >> 2)
        # HLIT (bits 3-7) and HDIST (bits 8-12) at most 29: 30 and 31 have their top 4 bits set.
        mask &= ones ^ ((value >> 4) & (value >> 5) & (value >> 6) & (value >> 7))
        mask &= ones ^ ((value >> 9) & (value >> 10) & (value >> 11) & (value >> 12))
        # HCLEN (bits 13-16) at least 8: blocks of binary data send 12 or more code
        # lengths. A block that sends fewer is only missed; the scan finds the next one.
        mask &= value >> 16
        mask &= (1 << usable) - 1
        skip = max(0, start_bit - base * 8)
        mask = (mask >> skip) << skip
        while mask:
            lowest = mask & -mask
            offset = lowest.bit_length() - 1
            mask ^= lowest
            # The code-length code must be complete: its lengths' shares sum to 128/128.
            header = value >> offset
            count = ((header >> 13) & 15) + 4
            lengths = (header >> 17) & ((1 << (3 * count)) - 1)
            total = (
                kraft[lengths & 4095]
                + kraft[(lengths >> 12) & 4095]
                + kraft[(lengths >> 24) & 4095]
                + kraft[(lengths >> 36) & 4095]
                + kraft[(lengths >> 48) & 4095]
            )
            if total == 128 and _inflates(data, base * 8 + offset):
                yield base * 8 + offset


def _inflates(data: bytes, bit: int) -> bool:
    inflater = zlib.decompressobj(-15, zdict=PLACEHOLDER_A)
    start = bit // 8
    prefix, skip = entry(bit, data[start])
    body = data[start + (1 if prefix else 0) : start + _TRIAL_INPUT]
    try:
        return len(inflater.decompress(prefix + body, skip + _TRIAL_OUTPUT)) > skip
    except zlib.error:
        return False
