"""Rendered pages, kept as bytes per page revision, view and format.

The hot path of a cached page is a dictionary lookup: pages are parsed when
fetched and rendered once per (revision, host class, format), never per request.

A cold page renders only the format asked for, and compresses only when a client
accepts gzip: first at a fast level, because the client is waiting (zlib's level 6
costs 70 ms on a 5 MB page, level 1 a third of that), then once more at level 6 on a
background thread, whose smaller bytes the next clients get. Each level has its own
ETag, so a client never holds one set of bytes under a tag that now names another.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import struct
import threading
import zlib
from collections.abc import Callable, Hashable, Mapping
from concurrent.futures import ThreadPoolExecutor

from proxy.core.links import link_page, render_linked_json
from proxy.core.lru import LRU
from proxy.core.models import Page
from proxy.core.negotiate import JSON_V1
from proxy.core.pages import render_html_page
from proxy.edge.offload import by_size

MAX_BYTES = 256 * 1024 * 1024
FAST_LEVEL = 1
BEST_LEVEL = 6
# Below this, the best level is cheap enough for the first answer.
FAST_FROM = 256 * 1024


def _yield_to_requests() -> None:
    """The recompressing thread runs at a lower CPU priority than the server's own
    (Linux lets a thread have its own nice value): zlib releases the GIL, so without
    this a level-6 pass over a big page competes for a core with the next cold page."""
    with contextlib.suppress(OSError, AttributeError):
        thread = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, thread, lowered(os.getpriority(os.PRIO_PROCESS, thread)))


def lowered(nice: int) -> int:
    return min(nice + NICER, 19)


NICER = 10
# One thread: recompressing is background work, never more than one core's worth.
_recompress = ThreadPoolExecutor(
    max_workers=1, thread_name_prefix="hostfit-gzip", initializer=_yield_to_requests
)


# A second thread for the other half of a first, fast gzip (`gzip_in_halves`); when both
# are busy with other pages, a page's halves are deflated one after the other on its own
# thread instead of waiting for one: the same bytes either way, as an ETag requires.
_HALVES = 2
_halves = ThreadPoolExecutor(max_workers=_HALVES, thread_name_prefix="hostfit-gzip-half")
_halves_free = threading.BoundedSemaphore(_HALVES)
# gzip's header for level 1 (XFL 4: the fastest), no name, no time, unknown OS.
_FAST_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x04\xff"


def gzip_in_halves(body: bytes) -> bytes:
    """A level-1 gzip of ``body`` in about half the time on two cores: each half of the
    body is deflated on its own thread (zlib lets go of the GIL), and the two raw streams
    are joined as pigz joins its blocks: the first ends with a sync flush (byte-aligned,
    no final block), the second holds the final block. One gzip member, so every gzip
    reader reads it; the second half only loses the first as a dictionary. The bytes
    depend on the body alone, not on which threads made them."""
    view = memoryview(body)
    half = len(body) // 2
    if _halves_free.acquire(blocking=False):
        try:
            second = _halves.submit(_deflate, view[half:], True)
            first = _deflate(view[:half], False)
            tail = second.result()
        finally:
            _halves_free.release()
    else:
        first, tail = _deflate(view[:half], False), _deflate(view[half:], True)
    trailer = struct.pack("<II", zlib.crc32(view), len(body) & 0xFFFFFFFF)
    return b"".join((_FAST_HEADER, first, tail, trailer))


def _deflate(data: memoryview, last: bool) -> bytes:
    compressor = zlib.compressobj(FAST_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush(
        zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH
    )


class Rendered:
    """A page's bytes and their ETag; the gzip encoding is made on first demand."""

    __slots__ = ("_gzip", "_lock", "_resized", "body", "etag")

    def __init__(self, body: bytes, resized: Callable[[], None] | None = None) -> None:
        """``resized()``: called whenever ``size`` changes (an encoding is made)."""
        self.body = body
        self.etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
        self._gzip: tuple[bytes, str] | None = None  # (bytes, their ETag)
        self._resized = resized
        self._lock = threading.Lock()

    @classmethod
    def of(cls, body: bytes) -> Rendered:
        return cls(body)

    def gzip(self) -> tuple[bytes, str]:
        """The gzip bytes and their ETag, read together: a better encoding may land at
        any time from the background thread."""
        made = self._gzip
        if made is not None:
            return made
        with self._lock:
            if self._gzip is None:
                level = FAST_LEVEL if len(self.body) >= FAST_FROM else BEST_LEVEL
                if level == FAST_LEVEL:
                    self._set(gzip_in_halves(self.body), level)
                else:
                    self._set(gzip.compress(self.body, compresslevel=level, mtime=0), level)
                if level != BEST_LEVEL:
                    _recompress.submit(self._improve)
            made = self._gzip
        assert made is not None
        return made

    async def gzip_off_loop(self) -> tuple[bytes, str]:
        """`gzip`, made on a thread when it is not made yet and the page is big
        (`proxy.edge.offload`): level 1 over a 5 MB page is about 20 ms."""
        made = self._gzip
        return made if made is not None else await by_size(len(self.body), self.gzip)

    def _improve(self) -> None:
        better = gzip.compress(self.body, compresslevel=BEST_LEVEL, mtime=0)
        with self._lock:
            self._set(better, BEST_LEVEL)

    def _set(self, data: bytes, level: int) -> None:
        suffix = "-gz" if level == BEST_LEVEL else f"-gz{level}"
        self._gzip = (data, self.etag[:-1] + suffix + '"')
        if self._resized is not None:
            self._resized()

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
        # The recompression thread resizes entries too, which may evict.
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
