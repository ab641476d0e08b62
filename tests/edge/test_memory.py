"""A 2 GB file streams through the proxy, first from upstream then from the cache,
with the server's peak memory far below the file's size."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest

from tests.support.proxy import ProxyProcess
from tests.support.upstream import Upstream, UpstreamFile

SIZE = 2 * 1024**3
LIMIT = 200 * 1024**2


@pytest.mark.heavy
def test_two_gigabytes_with_flat_memory(upstream: Upstream, tmp_path: Path) -> None:
    source = tmp_path / "huge-1.0.tar.gz"
    with source.open("wb") as handle:  # sparse: costs no disk on the upstream side
        handle.truncate(SIZE)
    item = upstream.add("huge", UpstreamFile.from_path(source, in_memory=False))
    with ProxyProcess("--upstream", upstream.url, cache_dir=tmp_path / "cache") as proxy:
        baseline = proxy.memory("VmRSS")
        for attempt in ("streamed from upstream", "served from the cache"):
            digest = hashlib.sha256()
            received = 0
            url = proxy.url + f"files/huge/{source.name}"
            with httpx.stream("GET", url, timeout=120) as response:
                assert response.status_code == 200
                for chunk in response.iter_raw(1024 * 1024):
                    digest.update(chunk)
                    received += len(chunk)
            assert received == SIZE, attempt
            assert digest.hexdigest() == item.sha256, attempt
            peak = proxy.memory("VmHWM")
            assert peak < LIMIT, f"{attempt}: peak RSS {peak >> 20} MiB"
        assert proxy.memory("VmRSS") < baseline + 64 * 1024**2
    assert upstream.count("GET", source.name) == 1
