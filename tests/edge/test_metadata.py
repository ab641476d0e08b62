"""The metadata service in-process, against a real local upstream: one fetch or extraction
per wheel however many requests ask at once."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from proxy.core.models import File
from proxy.core.origins import Outbound
from proxy.edge.files import FileService
from proxy.edge.metadata import MetadataService
from proxy.edge.stores.blobs import BlobStore
from proxy.edge.stores.embedded import EmbeddedStore
from tests.support.upstream import Upstream, UpstreamFile

WAITERS = 8

Open = Callable[[Upstream], Awaitable[MetadataService]]


@pytest.fixture
async def open_service(tmp_path: Path) -> AsyncIterator[Open]:
    closing: list[tuple[httpx.AsyncClient, FileService, EmbeddedStore]] = []

    async def open_one(upstream: Upstream) -> MetadataService:
        where = tmp_path / f"cache{len(closing)}"
        store = EmbeddedStore(str(where / "state"))
        blobs = BlobStore(where / "files", 1 << 30)
        client = httpx.AsyncClient()
        files = FileService(blobs, client, store)
        closing.append((client, files, store))
        return MetadataService(blobs, files, client, store, Outbound.only(upstream.url))

    yield open_one
    for client, files, store in closing:
        await files.close()
        await client.aclose()
        await store.close()


def entry(upstream: Upstream, item: UpstreamFile, *, offered: bool) -> File:
    digest = hashlib.sha256(item.metadata or b"").hexdigest()
    extra = {"core-metadata": {"sha256": digest}} if offered else {}
    return File(item.filename, upstream.file_url(item.filename), {"sha256": item.sha256}, extra)


async def test_concurrent_requests_fetch_offered_metadata_once(
    upstream: Upstream, demo_wheel: Path, open_service: Open
) -> None:
    item = upstream.add("demo-pkg", demo_wheel)
    upstream.slow_files[item.filename + ".metadata"] = 0.2  # all ask while it is on its way
    service = await open_service(upstream)
    file = entry(upstream, item, offered=True)
    results = await asyncio.gather(*(service.get(file, "demo-pkg") for _ in range(WAITERS)))
    assert results == [item.metadata] * WAITERS
    assert upstream.count("GET", item.filename + ".metadata") == 1


async def test_concurrent_requests_extract_metadata_once(
    upstream: Upstream, demo_wheel: Path, open_service: Open
) -> None:
    upstream.serve_metadata = False
    item = upstream.add("demo-pkg", demo_wheel)
    file = entry(upstream, item, offered=False)
    alone = await open_service(upstream)
    expected = await alone.get(file, "demo-pkg")
    one_extraction = upstream.count("GET", item.filename)
    assert one_extraction > 0
    upstream.reset_requests()

    service = await open_service(upstream)
    results = await asyncio.gather(*(service.get(file, "demo-pkg") for _ in range(WAITERS)))
    assert results == [expected] * WAITERS
    assert upstream.count("GET", item.filename) == one_extraction
    generation = service.generation("demo-pkg")
    assert await service.get(file, "demo-pkg") == expected  # held now: nothing fetched
    assert upstream.count("GET", item.filename) == one_extraction
    assert service.generation("demo-pkg") == generation
