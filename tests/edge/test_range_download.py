"""A Range request for a file not cached yet is answered 206 from the download as it
grows, without a second upstream request; the file's last byte still waits for its
digest."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from proxy.core.models import File
from proxy.edge.download import Download
from proxy.errors import IntegrityError
from tests.support.proxy import ProxyThread
from tests.support.upstream import Upstream, UpstreamFile

MakeProxy = Callable[..., ProxyThread]
SIZE = 4 * 1024 * 1024


def test_range_on_a_file_not_cached_yet(
    upstream: Upstream, make_proxy: MakeProxy, tmp_path: Path
) -> None:
    source = tmp_path / "blob-1.0.tar.gz"
    data = os.urandom(SIZE)
    source.write_bytes(data)
    upstream.add("blob", UpstreamFile.from_path(source))
    upstream.slow_files[source.name] = 0.02  # a drip: the download takes a while
    proxy = make_proxy(upstream)
    url = proxy.url + f"files/blob/{source.name}"
    with httpx.Client(timeout=60) as client:
        head = client.get(url, headers={"Range": "bytes=0-1023"})
        assert head.status_code == 206
        assert head.headers["content-range"] == f"bytes 0-1023/{SIZE}"
        assert head.content == data[:1024]
        middle = client.get(url, headers={"Range": "bytes=1000000-1999999"})
        assert middle.status_code == 206 and middle.content == data[1_000_000:2_000_000]
        tail = client.get(url, headers={"Range": "bytes=-100"})
        assert tail.status_code == 206 and tail.content == data[-100:]
        past = client.get(url, headers={"Range": f"bytes={SIZE}-"})
        assert past.status_code == 416
        assert past.headers["content-range"] == f"bytes */{SIZE}"
        whole = client.get(url)
        assert whole.status_code == 200 and whole.content == data
    assert upstream.count("GET", source.name) == 1


async def test_a_range_whose_last_read_outlives_a_failed_download_is_not_completed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(1024 * 1024)
    part = tmp_path / "demo-1.0.tar.gz.part"
    part.write_bytes(data)
    download = Download(File(part.name.removesuffix(".part"), "https://files.test/d", {}))
    download.size = len(data)
    download.attach(part)
    download.add(data)  # every byte written, the digest not checked yet
    reading, release = threading.Event(), threading.Event()
    pread = os.pread

    def held(fd: int, size: int, offset: int) -> bytes:
        reading.set()
        release.wait(5)
        return pread(fd, size, offset)

    async def the_range() -> bytes:
        return b"".join([chunk async for chunk in download.chunks(0, 1000)])

    monkeypatch.setattr(os, "pread", held)
    task = asyncio.create_task(the_range())
    assert await asyncio.to_thread(reading.wait, 5)
    # While the range's last chunk is being read, the download ends: the digest is wrong.
    download.error = IntegrityError(f"{part.name}: sha256 mismatch")
    download.finish()
    release.set()
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        await task
