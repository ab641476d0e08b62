"""gzip, hostfit's one compression: index pages for clients (`proxy.edge.render`) and
upstream page sources for the state store (`proxy.edge.layers.page_cache`).

ISA-L's deflate (`isal`) at its level 1: on a 5 MB page about 6 ms, where zlib takes 27
at level 1 and 73 at level 6, for bytes within 4% of zlib level 6's on index pages.
Where `isal` has no wheel (it is not installed there: ppc64le, s390x), zlib does the
same job, slower: level 6 for small bodies, level 1 from `offload.BIG` up. With one
encoder the same body gives the same bytes (no time in the header); `ENCODER` names the
encoder and its version, for an ETag that must name bytes, not just a body, across
replicas and upgrades.
"""

from __future__ import annotations

import gzip
import zlib
from types import ModuleType

from proxy.edge.offload import BIG

# ISA-L's levels go from 0 to 3; 1 is nearly as small as 2 and 3 and the fastest.
LEVEL = 1

igzip: ModuleType | None
try:
    import isal
    from isal import igzip

    ENCODER = f"isal {isal.__version__} level {LEVEL}"
except ImportError:  # no wheel for this machine: pyproject installs it where there is one
    igzip = None
    ENCODER = f"zlib {zlib.ZLIB_RUNTIME_VERSION}"


def gzipped(body: bytes) -> bytes:
    """One gzip member of ``body``."""
    if igzip is not None:
        compressed: bytes = igzip.compress(body, LEVEL, mtime=0)
        return compressed
    return gzip.compress(body, compresslevel=6 if len(body) < BIG else 1, mtime=0)


def gunzipped(data: bytes, limit: int) -> bytes:
    """What one gzip member inflates to; a ValueError when ``data`` is not exactly one
    whole member, or inflates to more than ``limit`` bytes (found before they are made)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        body = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise ValueError(f"not gzip: {exc}") from None
    if len(body) > limit:
        raise ValueError(f"inflates to more than {limit} bytes")
    if not inflater.eof or inflater.unused_data:
        raise ValueError("not one whole gzip member")
    return body
