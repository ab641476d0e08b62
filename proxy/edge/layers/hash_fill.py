"""Every file on a served page carries a sha256, even when upstream gives none.

Some indexes (plain directory listings, old mirrors) publish no hashes or only md5.
Their files are downloaded once, hashed and cached; the digest is remembered by URL
(`urlsha:<url>`), so later pages carry it and later downloads are verified against it.
A file that cannot be fetched to be hashed is left off the page, with a log line.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

from packaging.utils import NormalizedName

from proxy.core.lru import LRU
from proxy.core.models import File, Page, stored_digest
from proxy.core.revision import revised
from proxy.edge.files import FileService
from proxy.edge.index import Context, Index, IndexLayer
from proxy.edge.stores import keys
from proxy.edge.stores.state import StateStore
from proxy.errors import HostfitError

log = logging.getLogger("hostfit.hashes")

CONCURRENCY = 4
DIGESTS_KEPT = 100_000  # by URL; the store has them all
PAGES_KEPT = 1024


class HashFillIndex(IndexLayer):
    def __init__(self, inner: Index, files: FileService, store: StateStore) -> None:
        super().__init__(inner)
        self.files = files
        self.store = store
        self._limit = asyncio.Semaphore(CONCURRENCY)
        self._known: LRU[str, str] = LRU(DIGESTS_KEPT)
        # (upstream, project) -> (revision, page as served): the hot path is one lookup.
        self._served: LRU[tuple[str, str], tuple[str, Page]] = LRU(PAGES_KEPT)

    async def page(self, name: NormalizedName, ctx: Context) -> Page:
        page = await self.inner.page(name, ctx)
        served = self._served.get((page.upstream, name))
        if served is not None and served[0] == page.revision:
            return served[1] if page.warning is None else replace(served[1], warning=page.warning)
        filled = await self._fill(page)
        if len(filled.files) == len(page.files):  # complete: never needs filling again
            self._served.put((page.upstream, name), (page.revision, filled))
        return filled

    async def _fill(self, page: Page) -> Page:
        missing = [f for f in page.files if f.sha256 is None]
        if not missing:
            return page
        remembered = {f.url: self._known.get(f.url) for f in missing}
        digests = {url: d for url, d in remembered.items() if d is not None}
        lookup = [f for f in missing if f.url not in digests]
        if lookup:
            stored = await self.store.get_many([keys.url_sha(f.url) for f in lookup])
            for f, value in zip(lookup, stored, strict=True):
                digest = stored_digest(value)
                if digest is not None:
                    digests[f.url] = digest
        unknown = [f for f in missing if f.url not in digests]
        results = await asyncio.gather(*(self._digest(f) for f in unknown))
        digests.update({f.url: d for f, d in zip(unknown, results, strict=True) if d})
        for url, digest in digests.items():
            self._known.put(url, digest)
        files = tuple(
            f if f.sha256 else replace(f, hashes={**f.hashes, "sha256": digests[f.url]})
            for f in page.files
            if f.sha256 or f.url in digests
        )
        filled = (f"{f.url} {digests[f.url]}" for f in missing if f.url in digests)
        return replace(page, files=files, revision=revised(page.revision, "fill", filled))

    async def _digest(self, file: File) -> str | None:
        async with self._limit:
            try:
                digest = await self.files.digest_of(file)
            except HostfitError as exc:
                log.warning("left %s off the page: no sha256 and %s", file.filename, exc)
                return None
        await self.store.set(keys.url_sha(file.url), digest.encode())
        return digest
