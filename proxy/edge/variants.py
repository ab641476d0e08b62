"""Variant metadata documents: each version's ``{name}-{version}-variants.json`` (PEP 825),
upstream's when it publishes one, else the merge of the wheels' ``variant.json``.

A wheel's ``variant.json`` never changes (the wheel's bytes do not), so it is read
once, from the cached wheel or with range requests for the zip directory and the one
member (`proxy.analysis.metadata.read_dist_info_file`), and remembered by the wheel's
sha256 (`proxy.edge.stores.keys.variant` in the state store, bytes in the blob cache).
Upstream's file is fetched through the file service, cached by its sha256 like any file. A
version's document is keyed by what it is made from (upstream's sha256, or the set of
wheel sha256s), so it changes exactly when upstream's page does: a revalidated page
that lists a new wheel or a new file gets a new document.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, cast

import httpx

from proxy.analysis.metadata import MetadataError, read_dist_info_file
from proxy.analysis.remote import RemoteFile
from proxy.core.lru import LRU
from proxy.core.models import File, stored_digest
from proxy.core.origins import Outbound
from proxy.core.variants import (
    MAX_DOCUMENT_BYTES,
    Properties,
    VariantError,
    VariantMetadata,
    merge,
    parse_variant_metadata,
    parse_wheel_variant,
    variant_label,
)
from proxy.edge.files import FileService
from proxy.edge.flight import Flights
from proxy.edge.stores import keys
from proxy.edge.stores.blobs import BlobStore
from proxy.edge.stores.state import StateStore
from proxy.errors import HostfitError, UpstreamError
from proxy.outbound import upstream_error

log = logging.getLogger("hostfit.variants")

CONCURRENCY = 8  # wheels read at once, over every document
DOCUMENTS_KEPT = 4096


@dataclass(frozen=True, slots=True)
class Document:
    """A version's variant metadata: parsed when it validates (``meta``), and upstream's
    own bytes when it came from upstream (served as they are where nothing is pruned)."""

    meta: VariantMetadata | None
    raw: bytes | None = None
    problem: str | None = None  # why ``meta`` is None


class VariantService:
    def __init__(
        self, blobs: BlobStore, files: FileService, store: StateStore, outbound: Outbound | None
    ) -> None:
        self.blobs = blobs
        self.files = files
        self.store = store
        self.outbound = outbound
        self._limit = asyncio.Semaphore(CONCURRENCY)
        self._documents: LRU[tuple[str, ...], Document] = LRU(DOCUMENTS_KEPT)
        self._making: Flights[tuple[str, ...], Document] = Flights()
        self._reading: Flights[str, bytes] = Flights()
        # A variant wheel's properties by its bytes: the gate asks on every download.
        self._properties: LRU[tuple[str, str], tuple[Properties | None]] = LRU(DOCUMENTS_KEPT)

    def known(self, key: tuple[str, ...]) -> Document | None:
        return self._documents.get(key)

    async def document(
        self, key: tuple[str, ...], upstream: File | None, wheels: Sequence[File]
    ) -> Document:
        """Made once per key; `HostfitError` (an upstream that failed) is not remembered."""
        document = self.known(key)
        if document is None:
            document = await self._making.run(key, partial(self._make, key, upstream, wheels))
        return document

    async def close(self) -> None:
        await self._making.close()
        await self._reading.close()

    async def _make(
        self, key: tuple[str, ...], upstream: File | None, wheels: Sequence[File]
    ) -> Document:
        if upstream is not None:
            document = await self._upstream(upstream)
        else:
            document = await self._generated(wheels)
        self._documents.put(key, document)
        return document

    async def _upstream(self, file: File) -> Document:
        path = await self.files.fetch(file)
        try:
            raw = await asyncio.to_thread(_read_bounded, path)
        except VariantError as exc:
            return Document(None, None, str(exc))
        try:
            return Document(parse_variant_metadata(raw, file.filename), raw)
        except VariantError as exc:
            # Passed through as upstream wrote it; only pruning needs to understand it.
            log.warning("upstream variant metadata not used for pruning: %s", exc)
            return Document(None, raw, str(exc))

    async def _generated(self, wheels: Sequence[File]) -> Document:
        """PEP 825's merge of every wheel's variant.json. A wheel whose file is missing or
        invalid is left out of the merge (installers then treat its label as unknown, so
        they never choose it); wheels that contradict each other give no document."""
        results = await asyncio.gather(*(self._wheel(f) for f in wheels), return_exceptions=True)
        found: list[VariantMetadata] = []
        for result in results:
            if isinstance(result, VariantError | MetadataError):
                log.warning("variant wheel left out of variants.json: %s", result)
            elif isinstance(result, BaseException):
                raise result
            else:
                found.append(result)
        if not found:
            return Document(None, problem="no wheel of this version has a usable variant.json")
        try:
            return Document(merge(found))
        except VariantError as exc:
            log.warning("variant wheels of one version disagree (%s): no variants.json", exc)
            return Document(None, problem=str(exc))

    async def _wheel(self, file: File) -> VariantMetadata:
        return parse_wheel_variant(await self.wheel_variant_json(file), file.filename)

    async def properties(self, file: File) -> Properties | None:
        """A variant wheel's properties, from its own variant.json (of the cached file when
        there is one); None for another wheel, or one whose file cannot be read: nothing
        is said of it then, as of a label no provider knows. What was read is remembered;
        a failure is tried again next time."""
        label = variant_label(file.filename)
        if label is None:
            return None
        key = (file.sha256 or file.url, file.filename)
        remembered = self._properties.get(key)
        if remembered is not None:
            return remembered[0]
        try:
            meta = parse_wheel_variant(await self.wheel_variant_json(file), file.filename)
        except HostfitError as exc:
            log.warning("variant properties of %s not read: %s", file.filename, exc)
            return None
        properties = meta.properties(label)
        self._properties.put(key, (properties,))
        return properties

    async def wheel_variant_json(self, file: File) -> bytes:
        return await self._reading.run(file.sha256 or file.url, partial(self._variant_json, file))

    async def _variant_json(self, file: File) -> bytes:
        sha256 = file.sha256 or ""
        stored = await self.store.get(keys.variant(sha256))
        digest = stored_digest(stored)
        kept = await self.blobs.read(digest) if digest is not None else None
        if kept is not None:  # else not held (evicted, or damaged and removed): read again
            return kept
        async with self._limit:
            data = await self._read(file)
        digest = await self.blobs.put_bytes(data)
        await self.store.set(keys.variant(sha256), digest.encode())
        return data

    async def _read(self, file: File) -> bytes:
        if file.sha256 and await self.blobs.check(file.sha256):
            try:
                return await asyncio.to_thread(_local, self.blobs.path(file.sha256), file.filename)
            except FileNotFoundError:
                pass  # evicted since the look: read from upstream instead
        outbound = self.outbound or Outbound.only(file.url)
        return await asyncio.to_thread(_remote, file.url, file.filename, outbound)


def _read_bounded(path: Path) -> bytes:
    with path.open("rb") as source:
        data = source.read(MAX_DOCUMENT_BYTES + 1)
    if len(data) > MAX_DOCUMENT_BYTES:
        raise VariantError(f"{path.name}: larger than {MAX_DOCUMENT_BYTES} bytes")
    return data


def _local(path: Path, filename: str) -> bytes:
    with path.open("rb") as source:
        return read_dist_info_file(source, filename, "variant.json", MAX_DOCUMENT_BYTES)


def _remote(url: str, filename: str, outbound: Outbound) -> bytes:
    try:
        with RemoteFile(url, outbound=outbound) as source:
            return read_dist_info_file(
                cast(IO[bytes], source), filename, "variant.json", MAX_DOCUMENT_BYTES
            )
    except httpx.HTTPError as exc:
        raise upstream_error(url, f"reading variant.json of {filename}", exc) from None
    except OSError as exc:
        raise UpstreamError(url, f"reading variant.json of {filename}: {exc}") from None
