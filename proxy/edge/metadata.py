"""PEP 658 metadata for every wheel: upstream's file when offered, else extracted.

What was extracted is remembered by the wheel's sha256 (`metadata:<sha256>` in
the state store, bytes in the blob cache), so the page can advertise its hash.
Requests asking at once share one fetch or extraction (`proxy.edge.flight`), which
looks again for what a flight that ended meanwhile, or another replica, stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, cast

import httpx

from proxy.analysis.metadata import MAX_METADATA_BYTES, read_metadata
from proxy.analysis.remote import RemoteFile
from proxy.core.lru import LRU, Generations
from proxy.core.models import File, Page, stored_digest
from proxy.core.origins import Outbound
from proxy.edge.compression import decoded
from proxy.edge.files import FileService
from proxy.edge.flight import Flights
from proxy.edge.stores import keys
from proxy.edge.stores.blobs import BlobStore
from proxy.edge.stores.state import StateStore
from proxy.errors import IntegrityError, NotFound, UpstreamError, UpstreamTimeout
from proxy.outbound import GZIP_OR_NOTHING, received, upstream_errors

log = logging.getLogger("hostfit.metadata")

HASHES_KEPT = 100_000  # metadata digests by wheel sha256; the store has them all
# METADATA files held in memory by wheel sha256 (a wheel's never changes): uv asks for
# every pin's at once, and a read from the blob cache is a thread hop each.
MEMORY_BYTES = 32 * 1024 * 1024
PROJECTS_KEPT = 65_536


class MetadataService:
    def __init__(
        self,
        blobs: BlobStore,
        files: FileService,
        client: httpx.AsyncClient,
        store: StateStore,
        outbound: Outbound,  # for range reads
    ) -> None:
        self.outbound = outbound
        self.blobs = blobs
        self.files = files
        self.client = client
        self.store = store
        self._hashes: LRU[str, str] = LRU(HASHES_KEPT)
        self._data: LRU[str, bytes] = LRU(MEMORY_BYTES, weigh=len)
        self._making: Flights[str, bytes] = Flights()
        self._generations: Generations[str] = Generations(PROJECTS_KEPT)
        self._looking: Flights[tuple[str, str], None] = Flights()
        self._looked: LRU[tuple[str, str], bool] = LRU(PROJECTS_KEPT)

    def generation(self, project: str) -> int:
        """Changes whenever a new metadata digest of one of the project's wheels is learnt."""
        return self._generations[project]

    def advertised(self, page: Page) -> dict[str, str]:
        """Metadata digests to advertise on ``page`` (by wheel sha256): those in memory.

        A cold page's client is not kept waiting for the state store (a 10,000-wheel page
        is a 10,000-key read); the store is asked for the rest behind the answer, once per
        page revision, and what it knows moves the project's generation, so the next
        rendering advertises it. Until then such a wheel's metadata is advertised without
        its hash (PEP 714 allows it), and served all the same."""
        known = {}
        remembered = self._hashes.peek
        for f in page.files:
            sha256 = f.hashes.get("sha256")
            if sha256 is not None:
                digest = remembered(sha256)
                if digest is not None:
                    known[sha256] = digest
        looked = (page.name, page.revision)
        if self._looked.peek(looked) is None:
            self._looked.put(looked, True)
            self._looking.start(looked, lambda: self._look_up(page, known))
        return known

    async def _look_up(self, page: Page, known: Mapping[str, str]) -> None:
        try:
            if await self.store.get(keys.metadata_project(page.name)) is None:
                return  # no digest was ever recorded for this project's wheels
            wheels = [
                f
                for f in page.files
                if f.is_wheel and not f.lists_metadata and (f.sha256 or "") not in known
            ]
            found = await self.known_hashes(wheels)
        except Exception as exc:  # the page was answered; advertised without hashes
            log.warning("metadata digests of %s not looked up: %s", page.name, exc)
            self._looked.pop((page.name, page.revision))  # the next rendering asks again
            return
        if found:
            self._generations.move(page.name)

    async def known_hashes(self, wheels: Sequence[File]) -> Mapping[str, str]:
        """Metadata digests already known for these wheels (by wheel sha256)."""
        known = {}
        wanted = []
        for f in wheels:
            digest = self._hashes.get(f.sha256 or "")
            if digest is not None:
                known[f.sha256 or ""] = digest
            elif f.sha256:
                wanted.append(f.sha256)
        if wanted:
            values = await self.store.get_many([keys.metadata(sha) for sha in wanted])
            for sha, value in zip(wanted, values, strict=True):
                digest = stored_digest(value)
                if digest is not None:
                    known[sha] = digest
                    self._hashes.put(sha, digest)
        return known

    async def stored(self, wheels: Sequence[File]) -> dict[str, bytes]:
        """Metadata already held for these wheels, by wheel sha256; nothing is fetched."""
        hashes = await self.known_hashes(wheels)
        found = {}
        for f in wheels:
            digest = hashes.get(f.sha256 or "")
            data = await self.blobs.read(digest) if digest is not None else None
            if data is not None:  # else not held (evicted, or damaged and removed)
                found[f.sha256 or ""] = data
        return found

    async def get(self, file: File, project: str) -> bytes:
        if not file.is_wheel or file.sha256 is None:
            raise NotFound(f"no metadata for {file.filename}")
        held = await self._held(file.sha256, project)
        if held is not None:
            return held
        return await self._making.run(file.sha256, lambda: self._make(file, project))

    async def close(self) -> None:
        await self._making.close()
        await self._looking.close()

    async def settled(self) -> None:
        """Waits for the lookups running behind answers (`advertised`)."""
        running = [task for key in self._looking if (task := self._looking.running(key))]
        await asyncio.gather(*running, return_exceptions=True)

    async def _held(self, sha256: str, project: str) -> bytes | None:
        data = self._data.get(sha256)
        if data is not None:
            return data
        known = self._hashes.get(sha256)
        if known is None:
            known = await self._stored_hash(sha256)
            if known is not None:
                # Not a new digest: advertised from the next rendering that happens anyway,
                # not by making the project's pages and decisions again for each one read.
                await self._learnt(sha256, known, project, new=False)
        if known:
            data = await self.blobs.read(known)
            if data is None:
                return None  # evicted (or damaged and removed): made again
            self._data.put(sha256, data)
        return data

    async def _make(self, file: File, project: str) -> bytes:
        sha256 = file.sha256 or ""
        # Looked at again: a flight that ended after this caller's look stored it.
        held = await self._held(sha256, project)
        if held is not None:
            return held
        data = await self._obtain(file)
        digest = await self.blobs.put_bytes(data)
        await self.store.set(keys.metadata(sha256), digest.encode())
        self._data.put(sha256, data)
        await self._learnt(sha256, digest, project, new=True)
        return data

    async def _learnt(self, sha256: str, digest: str, project: str, *, new: bool) -> None:
        """A digest now known here; ``new``: just made, so the project's pages are rendered
        again to advertise it. The project's marker is set again, so a record made before
        markers existed (or by a replica that stopped between its two writes) is found."""
        await self.store.set(keys.metadata_project(project), b"1")
        self._hashes.put(sha256, digest)
        if new:
            self._generations.move(project)

    async def _stored_hash(self, sha256: str) -> str | None:
        return stored_digest(await self.store.get(keys.metadata(sha256)))

    async def _obtain(self, file: File) -> bytes:
        offered = file.core_metadata
        if offered:
            data = await self._from_upstream(file)
            expected = offered.get("sha256") if isinstance(offered, Mapping) else None
            actual = hashlib.sha256(data).hexdigest()
            if expected is not None and actual != expected:
                raise IntegrityError(
                    f"{file.filename}.metadata: sha256 mismatch: "
                    f"index says {expected}, got {actual}"
                )
            return data
        if await self.blobs.check(file.sha256 or ""):
            path = self.blobs.path(file.sha256 or "")
            try:
                return await asyncio.to_thread(_local_metadata, path, file.filename)
            except FileNotFoundError:
                pass  # evicted since the look: read it from upstream instead
        # Only the zip directory and the METADATA member, with range requests.
        return await asyncio.to_thread(_remote_metadata, file.url, file.filename, self.outbound)

    async def _from_upstream(self, file: File) -> bytes:
        """Within the file deadline, retries and a dripping body included; bounded like
        a METADATA member, and decoded by `content_decoded` (a gzip body cut short is
        refused, not taken for shorter metadata)."""
        url = file.url + ".metadata"
        deadline = self.files.deadline
        doing = f"fetching {file.filename}.metadata"
        try:
            async with asyncio.timeout(deadline):
                with upstream_errors(url, doing):
                    async with self.client.stream("GET", url, headers=GZIP_OR_NOTHING) as response:
                        if response.status_code != 200:
                            raise UpstreamError(
                                url, f"HTTP {response.status_code} for {file.filename}.metadata"
                            )
                        body = await received(response, MAX_METADATA_BYTES, url, doing)
                        coding = response.headers.get("content-encoding")
        except TimeoutError:
            raise UpstreamTimeout(
                url,
                f"{file.filename}.metadata not downloaded within the file deadline "
                f"({deadline:g} s)",
            ) from None
        try:
            return (await decoded(body, coding, MAX_METADATA_BYTES)).body
        except ValueError as exc:
            raise UpstreamError(url, f"{doing}: {exc}") from None


def _local_metadata(path: Path, filename: str) -> bytes:
    with path.open("rb") as source:
        return read_metadata(source, filename)


def _remote_metadata(url: str, filename: str, outbound: Outbound) -> bytes:
    doing = f"reading METADATA of {filename}"
    try:
        with upstream_errors(url, doing), RemoteFile(url, outbound=outbound) as source:
            return read_metadata(cast(IO[bytes], source), filename)
    except OSError as exc:
        raise UpstreamError(url, f"{doing}: {exc}") from None
