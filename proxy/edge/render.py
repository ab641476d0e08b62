"""Rendered pages, kept as bytes (plain and gzip) per page revision, view and format.

The hot path of a cached page is a dictionary lookup: pages are parsed when
fetched and rendered once per (revision, host class, format), never per request.
"""

from __future__ import annotations

import gzip
import hashlib
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from proxy.core.models import Page
from proxy.core.negotiate import JSON_V1
from proxy.core.pages import render_html_page, render_json_page

MAX_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Rendered:
    body: bytes
    gzipped: bytes
    etag: str  # of the identity encoding; the gzip representation appends "-gz"

    @classmethod
    def of(cls, body: bytes) -> Rendered:
        digest = hashlib.sha256(body).hexdigest()[:32]
        return cls(body, gzip.compress(body, compresslevel=6, mtime=0), f'"{digest}"')

    @property
    def gzip_etag(self) -> str:
        return self.etag[:-1] + '-gz"'

    @property
    def size(self) -> int:
        return len(self.body) + len(self.gzipped)


def render_page(page: Page, media: str) -> bytes:
    return render_json_page(page) if media == JSON_V1 else render_html_page(page)


class RenderCache:
    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, Rendered] = OrderedDict()
        self._bytes = 0

    def get(self, key: Hashable) -> Rendered | None:
        rendered = self._entries.get(key)
        if rendered is not None:
            self._entries.move_to_end(key)
        return rendered

    def put(self, key: Hashable, make: Callable[[], bytes]) -> Rendered:
        rendered = Rendered.of(make())
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old.size
        self._entries[key] = rendered
        self._bytes += rendered.size
        while self._bytes > self.max_bytes and len(self._entries) > 1:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= evicted.size
        return rendered
