"""A Range request for a file not cached yet is answered 206 from the download as it
grows, without a second upstream request; the file's last byte still waits for its
digest."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import httpx

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
