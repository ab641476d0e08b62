"""Killed mid-download and restarted, the proxy never serves a partial file."""

from __future__ import annotations

import hashlib
import random
import threading
import time
from pathlib import Path

import httpx

from tests.support.proxy import ProxyProcess
from tests.support.upstream import Upstream
from tests.support.wheels import WheelSpec, build_wheel


def test_kill_mid_download_then_restart(upstream: Upstream, tmp_path: Path) -> None:
    wheel = build_wheel(
        WheelSpec("big", "1.0", files={"big/blob.bin": random.Random(7).randbytes(3_000_000)}),
        tmp_path,
    )
    upstream.add("big", wheel)
    upstream.slow_files[wheel.name] = 0.05
    cache = tmp_path / "cache"
    tmp_dir = cache / "files" / "tmp"
    url_path = f"files/big/{wheel.name}"

    proxy = ProxyProcess("--upstream", upstream.url, cache_dir=cache).start()
    received: list[int] = []

    def client() -> None:
        try:
            with httpx.stream("GET", proxy.url + url_path, timeout=60) as response:
                for chunk in response.iter_bytes():
                    received.append(len(chunk))
        except httpx.HTTPError:
            pass  # the server is about to be killed under us

    thread = threading.Thread(target=client)
    thread.start()
    deadline = time.monotonic() + 30
    while not (received and any(tmp_dir.glob("*.part"))):
        assert time.monotonic() < deadline, "download never started"
        time.sleep(0.02)
    proxy.kill()
    thread.join(30)
    assert sum(received) < wheel.stat().st_size
    assert list(tmp_dir.glob("*.part")), "the partial file should still be on disk"
    assert not list((cache / "files" / "sha256").rglob("*"))

    upstream.slow_files.clear()
    with ProxyProcess("--upstream", upstream.url, cache_dir=cache) as restarted:
        assert not list(tmp_dir.iterdir()), "start-up must remove partial downloads"
        assert "partial download" in restarted.output()
        body = httpx.get(restarted.url + url_path, timeout=60).content
        assert hashlib.sha256(body).digest() == hashlib.sha256(wheel.read_bytes()).digest()
        again = httpx.get(restarted.url + url_path, timeout=60).content
        assert again == body
    assert upstream.count("GET", wheel.name) == 2  # the killed attempt and one real download
