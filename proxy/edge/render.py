"""Rendered pages, kept as bytes per page revision, view and format.

The hot path of a cached page is a dictionary lookup: pages are parsed when
fetched and rendered once per (revision, host class, format), never per request.

A cold page renders only the format asked for, and compresses only when a client
accepts gzip, once, with ISA-L's deflate (`isal`) at its level 1: on a 5 MB page it
takes about 6 ms where zlib took 27 at level 1 and 73 at level 6, and its bytes are
within 4% of zlib level 6's. So the first client gets the same bytes as every later
one, under one ETag, and nothing is recompressed behind the answer (hostfit did both
before: a fast zlib level first, level 6 later on a background thread). Where `isal`
has no wheel (it is not installed there: ppc64le, s390x), zlib does the same job,
slower: level 6 for small pages, level 1 from `offload.BIG` up.
"""

from __future__ import annotations

import gzip
import hashlib
import threading
from collections.abc import Callable, Hashable, Mapping
from types import ModuleType

from proxy.core.links import link_page, render_linked_json
from proxy.core.lru import LRU
from proxy.core.models import Page
from proxy.core.negotiate import JSON_V1
from proxy.core.pages import render_html_page
from proxy.edge.offload import BIG, by_size

igzip: ModuleType | None
try:
    from isal import igzip
except ImportError:  # no wheel for this machine: pyproject installs it where there is one
    igzip = None

MAX_BYTES = 256 * 1024 * 1024
# ISA-L's levels go from 0 to 3; 1 is nearly as small as 2 and 3 and the fastest.
GZIP_LEVEL = 1


def gzipped(body: bytes) -> bytes:
    """One gzip member, the same bytes for the same body (no time in the header)."""
    if igzip is not None:
        compressed: bytes = igzip.compress(body, GZIP_LEVEL, mtime=0)
        return compressed
    return gzip.compress(body, compresslevel=6 if len(body) < BIG else 1, mtime=0)


class Rendered:
    """A page's bytes and their ETag; the gzip encoding is made on first demand."""

    __slots__ = ("_gzip", "_lock", "_resized", "body", "etag")

    def __init__(self, body: bytes, resized: Callable[[], None] | None = None) -> None:
        """``resized()``: called when ``size`` changes (the encoding is made)."""
        self.body = body
        self.etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
        self._gzip: tuple[bytes, str] | None = None  # (bytes, their ETag)
        self._resized = resized
        self._lock = threading.Lock()

    @classmethod
    def of(cls, body: bytes) -> Rendered:
        return cls(body)

    def gzip(self) -> tuple[bytes, str]:
        """The gzip bytes and their ETag, made once: requests that ask together wait for
        the one that makes them."""
        made = self._gzip
        if made is not None:
            return made
        with self._lock:
            if self._gzip is None:
                self._gzip = (gzipped(self.body), self.etag[:-1] + '-gz"')
                if self._resized is not None:
                    self._resized()
            made = self._gzip
        return made

    async def gzip_off_loop(self) -> tuple[bytes, str]:
        """`gzip`, made on a thread when it is not made yet and the page is big
        (`proxy.edge.offload`)."""
        made = self._gzip
        return made if made is not None else await by_size(len(self.body), self.gzip)

    @property
    def gzipped(self) -> bytes:
        return self.gzip()[0]

    @property
    def gzip_etag(self) -> str:
        return self.gzip()[1]

    @property
    def size(self) -> int:
        made = self._gzip
        return len(self.body) + (len(made[0]) if made is not None else 0)


def render_page(page: Page, media: str, metadata_hashes: Mapping[str, str]) -> bytes:
    """The page linked to the proxy (`proxy.core.links`) in the format asked for."""
    if media == JSON_V1:
        return render_linked_json(page, metadata_hashes)
    return render_html_page(link_page(page, metadata_hashes))


class RenderCache:
    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        # key -> (rendering, the bytes counted for it)
        self._entries: LRU[Hashable, tuple[Rendered, int]] = LRU(max_bytes, weigh=_counted)
        # A rendering's gzip, made on a request's thread, resizes its entry, which may evict.
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Rendered | None:
        with self._lock:
            entry = self._entries.get(key)
        return entry[0] if entry is not None else None

    def put(self, key: Hashable, make: Callable[[], bytes]) -> Rendered:
        body = make()
        rendered = Rendered(body, resized=lambda: self._resize(key, rendered))
        with self._lock:
            self._entries.put(key, (rendered, rendered.size))
        return rendered

    def _resize(self, key: Hashable, rendered: Rendered) -> None:
        with self._lock:
            entry = self._entries.peek(key)
            if entry is None or entry[0] is not rendered:
                return  # evicted or replaced: no longer counted here
            self._entries.put(key, (rendered, rendered.size))


def _counted(entry: tuple[Rendered, int]) -> int:
    return entry[1]
