"""Rendered pages, kept as bytes per page revision, view and format.

The hot path of a cached page is a dictionary lookup: pages are parsed when
fetched and rendered once per (revision, host class, format), never per request.

A cold page renders only the format asked for, and compresses only when a client
accepts gzip, once (`proxy.edge.compression`: about 6 ms for 5 MB). So the first client
gets the bytes every later one gets, under one ETag, and nothing is recompressed behind
the answer (hostfit did both before: a fast zlib level first, level 6 later on a
background thread).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Hashable, Mapping

from proxy.core.links import link_page, render_linked_json
from proxy.core.lru import LRU
from proxy.core.models import Page
from proxy.core.negotiate import JSON_V1
from proxy.core.pages import render_html_page
from proxy.edge import compression
from proxy.edge.offload import by_size

MAX_BYTES = 256 * 1024 * 1024


def gzip_suffix(encoder: str) -> str:
    """What a gzip encoding's ETag adds to the page's: which encoder made the bytes, so
    that replicas or versions with another one never send other bytes under the same tag."""
    return f'-gz-{hashlib.sha256(encoder.encode()).hexdigest()[:8]}"'


_GZIP_SUFFIX = gzip_suffix(compression.ENCODER)


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
                self._gzip = (compression.gzipped(self.body), self.etag[:-1] + _GZIP_SUFFIX)
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
