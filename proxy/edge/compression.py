"""gzip, hostfit's one compression: index pages for clients (`proxy.edge.render`) and
upstream page sources for the state store (`proxy.edge.layers.page_cache`); and the one
decoding of what upstreams send gzipped (`content_decoded`).

ISA-L's deflate (`isal`) at its level 1: on a 5 MB page about 6 ms, where zlib takes 27
at level 1 and 73 at level 6, for bytes within 4% of zlib level 6's on index pages.
Where `isal` has no wheel (it is not installed there: ppc64le, s390x), zlib does the
same job, slower: level 6 for small bodies, level 1 from `offload.BIG` up. With one
encoder the same body gives the same bytes (no time in the header); `ENCODER` names the
encoder and its version, for an ETag that must name bytes, not just a body, across
replicas and upgrades. ISA-L inflates too: what upstreams send gzipped, and the stored
sources, in half zlib's time.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from types import ModuleType
from typing import cast

from proxy.edge.offload import BIG, by_size

# ISA-L's levels go from 0 to 3; 1 is nearly as small as 2 and 3 and the fastest.
LEVEL = 1

igzip: ModuleType | None
# What inflates upstream bodies: ISA-L's in half zlib's time (5 ms against 10 for a
# 4.9 MB page), with zlib's interface, ``max_length`` included, on which the limits rest.
inflating: ModuleType = zlib
INFLATE_ERRORS: tuple[type[Exception], ...] = (zlib.error,)
try:
    import isal
    from isal import igzip, isal_zlib

    ENCODER = f"isal {isal.__version__} level {LEVEL}"
    # (its stub calls the class an instance)
    inflating, INFLATE_ERRORS = isal_zlib, (zlib.error, cast("type[Exception]", isal_zlib.error))
except ImportError:  # no wheel for this machine: pyproject installs it where there is one
    igzip = None
    ENCODER = f"zlib {zlib.ZLIB_RUNTIME_VERSION}"


def gzipped(body: bytes) -> bytes:
    """One gzip member of ``body``."""
    if igzip is not None:
        compressed: bytes = igzip.compress(body, LEVEL, mtime=0)
        return compressed
    return gzip.compress(body, compresslevel=6 if len(body) < BIG else 1, mtime=0)


@dataclass(frozen=True, slots=True)
class Decoded:
    body: bytes
    member: bytes | None  # what was received, when it was exactly one gzip member of body


# Content codings named for no coding at all.
_IDENTITY = ("", "identity")
_GZIP = ("gzip", "x-gzip")
# Members one gzip body may hold: a body of empty members (20 bytes each) would otherwise
# cost an inflater per 20 bytes, seconds of CPU for a page's 64 MiB.
MAX_MEMBERS = 64
MAX_RATIO = 1032
_FED = 1024 * 1024


def codings(content_encoding: str | None) -> list[str]:
    """The content codings a ``Content-Encoding`` names, in order, ``identity`` left out."""
    named = (c.strip().lower() for c in (content_encoding or "").split(","))
    return [c for c in named if c not in _IDENTITY]


async def decoded(data: bytes, content_encoding: str | None, limit: int) -> Decoded:
    """`content_decoded`, on a thread when what it may make is big: deflate makes up to
    1032 times its input, which the bytes received would understate."""
    most = len(data) * MAX_RATIO if codings(content_encoding) else len(data)
    return await by_size(most, lambda: content_decoded(data, content_encoding, limit))


def content_decoded(data: bytes, content_encoding: str | None, limit: int) -> Decoded:
    """An upstream's answer body as its ``Content-Encoding`` says it was sent; hostfit asks
    for gzip or nothing (``Accept-Encoding: gzip``). A ValueError, saying what is wrong,
    for another coding, or a gzip body cut short, followed by bytes that are no member,
    or inflating to more than ``limit`` bytes: httpx's own decoder takes a gzip body cut
    short for a shorter page, without a word."""
    coded = codings(content_encoding)
    if not coded:
        if len(data) > limit:
            raise ValueError(f"more than {limit} bytes")
        return Decoded(data, None)
    if len(coded) > 1 or coded[0] not in _GZIP:
        raise ValueError(f"content-encoding {content_encoding!r}: only gzip was asked for")
    parts: list[bytes] = []
    view, at, size, members = memoryview(data), 0, 0, 0
    while at < len(data) or members == 0:  # RFC 1952: members may follow one another
        if members == MAX_MEMBERS:
            raise ValueError(f"more than {MAX_MEMBERS} gzip members")
        members += 1
        inflater = inflating.decompressobj(16 + zlib.MAX_WBITS)
        while not inflater.eof:
            if at == len(data):
                raise ValueError("gzip body cut short")
            # A slice at a time: at a member's end zlib copies what follows it (unused_data),
            # here at most a slice, where the whole rest would make many members quadratic.
            fed = view[at : at + _FED]
            try:
                part = inflater.decompress(fed, limit - size + 1)
            except INFLATE_ERRORS as exc:
                raise ValueError(f"not gzip: {exc}") from None
            size += len(part)
            if size > limit:  # (else zlib took all it was fed, or stopped at the member's end)
                raise ValueError(f"inflates to more than {limit} bytes")
            parts.append(part)
            at += len(fed) - len(inflater.unused_data)
    body = b"".join(parts)  # one part: that part itself, not a copy
    return Decoded(body, data if members == 1 else None)


def gunzipped(data: bytes, limit: int) -> bytes:
    """What one gzip member inflates to; a ValueError when ``data`` is not exactly one
    whole member, or inflates to more than ``limit`` bytes (found before they are made)."""
    decoded = content_decoded(data, "gzip", limit)
    if decoded.member is None:
        raise ValueError("not one whole gzip member")
    return decoded.body
