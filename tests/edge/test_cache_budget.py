"""The cache budget (`--cache-max-size`), least-recently-used eviction, full disks (issue 10,
item 4; row 22 of the fault matrix), and the embedded state store's compaction.

Row 22 runs `hostfit serve` on a real filesystem limit, twice: a cache directory on a
small tmpfs (when this machine lets the tests mount one: root), and a file-size limit
(RLIMIT_FSIZE) on the server process, which makes the kernel refuse a write past it
(EFBIG) on any filesystem. Neither injects a fault in hostfit's code.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

import proxy.edge.stores.blobs as blobs_module
from proxy.edge.config import load_settings
from proxy.edge.stores.blobs import BlobStore, CacheFull
from proxy.edge.stores.embedded import EmbeddedStore
from proxy.errors import ConfigError
from tests.edge.fault_checks import LogWatch, assert_cache_sound, assert_no_traceback, watch_logs
from tests.support.proxy import ProxyProcess, ProxyThread
from tests.support.upstream import Upstream, UpstreamFile

MakeProxy = Callable[..., ProxyThread]
MiB = 1024 * 1024


@pytest.fixture
def logs() -> Iterator[LogWatch]:
    with watch_logs() as watch:
        yield watch
    assert not watch.tracebacks(), watch.tracebacks()


def random_file(directory: Path, name: str, size: int) -> tuple[Path, bytes]:
    data = os.urandom(size)
    path = directory / name
    path.write_bytes(data)
    return path, data


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- the blob store -------------------------------------------------------------------


async def test_least_recently_used_blobs_go_first(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "files", max_size=1000)
    a = await store.put_bytes(b"a" * 400)
    b = await store.put_bytes(b"b" * 400)
    used = store.open(a)  # a is used again: b is now the least recently used
    assert used is not None
    used.close()
    c = await store.put_bytes(b"c" * 400)
    assert store.has(a) and store.has(c) and not store.has(b)
    assert store.used == 800 and store.count == 2
    assert store.evicted == 1 and store.evicted_bytes == 400


async def test_a_blob_open_for_reading_is_never_evicted(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "files", max_size=1000)
    a = await store.put_bytes(b"a" * 400)
    b = await store.put_bytes(b"b" * 400)
    reading = store.open(a)
    assert reading is not None
    await store.put_bytes(b"c" * 400)
    assert store.has(a) and not store.has(b)  # b went, though a is older
    reading.close()
    await store.put_bytes(b"d" * 400)
    assert not store.has(a)


async def test_recency_survives_a_restart(tmp_path: Path) -> None:
    first = BlobStore(tmp_path / "files")
    old = await first.put_bytes(b"o" * 400)
    new = await first.put_bytes(b"n" * 400)
    now = time.time()
    os.utime(first.path(old), (now - 3600, now - 3600))
    os.utime(first.path(new), (now - 7200, now - 7200))
    opened = first.open(new)  # read an hour ago and more: touched now
    assert opened is not None
    opened.close()
    restarted = BlobStore(tmp_path / "files", max_size=1000)
    assert restarted.used == 800 and restarted.count == 2
    await restarted.put_bytes(b"x" * 400)
    assert restarted.has(new) and not restarted.has(old)


async def test_blobs_written_by_others_are_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(blobs_module, "RESCAN_SECONDS", 0.0)
    earlier = BlobStore(tmp_path / "files")  # a previous run
    old = await earlier.put_bytes(b"o" * 400)
    os.utime(earlier.path(old), (time.time() - 60, time.time() - 60))
    store = BlobStore(tmp_path / "files", max_size=1000)
    other = BlobStore(tmp_path / "files")  # another process on the same directory
    theirs = await other.put_bytes(b"t" * 400)
    assert store.used == 400  # not seen yet
    mine = await store.put_bytes(b"m" * 400)  # over the budget once theirs is counted
    assert not store.has(old) and store.has(theirs) and store.has(mine)
    assert store.used == 800 and store.count == 2


async def test_reservations_name_why_a_file_cannot_be_cached(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "files", max_size=1000)
    with pytest.raises(CacheFull, match=r"2000 bytes is more than the cache budget \(1000"):
        await store.reserve(2000)
    first = await store.reserve(600)
    with pytest.raises(CacheFull, match="taken by files being served or written"):
        await store.reserve(600)
    first.release()
    (await store.reserve(600)).release()
    unlimited = BlobStore(tmp_path / "other")
    with pytest.raises(CacheFull, match=r"the cache disk has \d+ bytes free"):
        await unlimited.reserve(1 << 62)


# --- over HTTP ----------------------------------------------------------------------


def test_the_budget_holds_over_http_and_shows_in_readyz_and_metrics(
    upstream: Upstream, make_proxy: MakeProxy, tmp_path: Path, logs: LogWatch
) -> None:
    files = {n: random_file(tmp_path, f"{n}-1.0.tar.gz", MiB) for n in ("aa", "bb", "cc")}
    for name, (path, _) in files.items():
        upstream.add(name, UpstreamFile.from_path(path))
    proxy = make_proxy(upstream, cache_max_size=int(2.5 * MiB))

    def get(name: str) -> bytes:
        return httpx.get(proxy.url + f"files/{name}/{name}-1.0.tar.gz", timeout=30).content

    assert get("aa") == files["aa"][1]
    assert get("bb") == files["bb"][1]
    assert get("aa") == files["aa"][1]  # a hit: aa is used again
    assert get("cc") == files["cc"][1]  # bb, the least recently used, makes room
    held = assert_cache_sound(proxy.settings.cache_dir)
    assert sorted(held) == sorted([sha(files["aa"][1]), sha(files["cc"][1])])
    ready = httpx.get(proxy.url + "readyz")
    assert ready.status_code == 200
    assert f"cache: {2 * MiB} bytes in 2 files, {int(2.5 * MiB)} bytes" in ready.text
    text = httpx.get(proxy.url + "metrics").text
    metrics = {
        line.rpartition(" ")[0]: float(line.rpartition(" ")[2])
        for line in text.splitlines()
        if line.startswith("hostfit_")
    }
    assert metrics["hostfit_cache_bytes"] == 2 * MiB
    assert metrics["hostfit_cache_max_bytes"] == int(2.5 * MiB)
    assert metrics["hostfit_cache_files"] == 2
    assert metrics["hostfit_cache_evictions_total"] == 1
    assert metrics["hostfit_cache_evicted_bytes_total"] == MiB
    assert metrics['hostfit_file_downloads_total{outcome="cached"}'] == 3


def test_a_file_over_the_budget_is_streamed_to_every_follower_uncached(
    upstream: Upstream, make_proxy: MakeProxy, tmp_path: Path, logs: LogWatch
) -> None:
    path, data = random_file(tmp_path, "huge-1.0.tar.gz", 12 * MiB)
    upstream.add("huge", UpstreamFile.from_path(path))
    upstream.slow_files[path.name] = 0.005
    proxy = make_proxy(upstream, cache_max_size=4 * MiB)
    url = proxy.url + f"files/huge/{path.name}"

    async def clients() -> list[bytes]:
        async with httpx.AsyncClient(timeout=60) as client:
            responses = await asyncio.gather(*(client.get(url) for _ in range(5)))
        return [r.content for r in responses]

    assert asyncio.run(clients()) == [data] * 5
    assert assert_cache_sound(proxy.settings.cache_dir) == []
    assert "more than the cache budget" in logs.messages()
    assert proxy.services.files.outcomes["uncached"] >= 1
    # Every later request downloads it again; the gate-less range path answers 206 too.
    part = httpx.get(url, headers={"Range": "bytes=100-199"}, timeout=60)
    assert part.status_code == 206 and part.content == data[100:200]


def test_a_file_too_big_to_cache_streams_with_flat_memory(
    upstream: Upstream, tmp_path: Path
) -> None:
    size = 512 * MiB
    source = tmp_path / "sparse-1.0.tar.gz"
    with source.open("wb") as handle:  # sparse: costs no disk on the upstream side
        handle.truncate(size)
    item = upstream.add("sparse", UpstreamFile.from_path(source, in_memory=False))
    cache = tmp_path / "cache"
    args = ("--upstream", upstream.url, "--cache-max-size", "16M")
    with ProxyProcess(*args, cache_dir=cache) as proxy:
        digest, received = hashlib.sha256(), 0
        url = proxy.url + f"files/sparse/{source.name}"
        with httpx.stream("GET", url, timeout=120) as response:
            for chunk in response.iter_raw(MiB):
                digest.update(chunk)
                received += len(chunk)
        assert received == size and digest.hexdigest() == item.sha256
        assert proxy.memory("VmHWM") < 200 * MiB
        output = proxy.output()
    assert "more than the cache budget" in output
    assert_no_traceback(output)
    assert assert_cache_sound(cache) == []


# --- row 22: a full disk ------------------------------------------------------------


def _mount_tmpfs(directory: Path, size: str) -> bool:
    directory.mkdir()
    if os.geteuid() != 0:
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
        capture_output=True,
    )
    return done.returncode == 0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB filesystem for the cache."""
    directory = tmp_path / "cache"
    if not _mount_tmpfs(directory, "8m"):
        # scripts/test runs as root (it installs packages): never skip, say what is missing.
        pytest.fail("cannot mount a tmpfs for the full-disk test: run the suite as root")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def _follow(url: str, into: list[bytes], receiving: threading.Event | None = None) -> None:
    parts = []
    with httpx.stream("GET", url, timeout=120) as response:
        for chunk in response.iter_bytes():
            parts.append(chunk)
            if receiving is not None:
                receiving.set()
    into.append(b"".join(parts))


def test_a_file_larger_than_the_free_space_is_still_delivered(
    upstream: Upstream, small_disk: Path, tmp_path: Path
) -> None:
    big, big_data = random_file(tmp_path, "big-1.0.tar.gz", 12 * MiB)
    small, small_data = random_file(tmp_path, "small-1.0.tar.gz", MiB)
    upstream.add("big", UpstreamFile.from_path(big))
    upstream.add("small", UpstreamFile.from_path(small))
    with ProxyProcess("--upstream", upstream.url, cache_dir=small_disk) as proxy:
        for _ in range(2):  # each time delivered, never cached, no traceback
            response = httpx.get(proxy.url + f"files/big/{big.name}", timeout=60)
            assert response.status_code == 200 and response.content == big_data
        assert httpx.get(proxy.url + f"files/small/{small.name}").content == small_data
        ready = httpx.get(proxy.url + "readyz").text
        output = proxy.output()
    assert f"cache: {MiB} bytes in 1 files" in ready  # the index agrees with the disk
    assert "the cache disk has" in output and "streaming it to its clients only" in output
    assert_no_traceback(output)
    assert assert_cache_sound(small_disk) == [sha(small_data)]


def test_a_disk_filled_mid_download_breaks_no_follower(
    upstream: Upstream, small_disk: Path, tmp_path: Path
) -> None:
    path, data = random_file(tmp_path, "mid-1.0.tar.gz", 5 * MiB)
    upstream.add("mid", UpstreamFile.from_path(path))
    upstream.slow_files[path.name] = 0.02  # 80 chunks: 1.6 s
    with ProxyProcess("--upstream", upstream.url, cache_dir=small_disk) as proxy:
        url = proxy.url + f"files/mid/{path.name}"
        bodies: list[bytes] = []
        first = threading.Thread(target=_follow, args=(url, bodies))
        first.start()
        temp = small_disk / "files" / "tmp"
        deadline = time.monotonic() + 20
        while not any(p.stat().st_size > MiB for p in temp.glob("*.part")):
            assert time.monotonic() < deadline, "the download never started"
            time.sleep(0.01)
        receiving = threading.Event()
        second = threading.Thread(target=_follow, args=(url, bodies, receiving))
        second.start()
        assert receiving.wait(20)  # a follower of the same download
        filler = small_disk / "filler"  # another program takes the rest of the disk
        with filler.open("wb", buffering=0) as handle, pytest.raises(OSError):
            while True:
                handle.write(b"\0" * MiB)
        first.join(60)
        second.join(60)
        filler.unlink()
        output = proxy.output()
    assert bodies == [data, data]
    assert "the cache disk is full" in output and "streaming it to its clients only" in output
    assert_no_traceback(output)
    assert assert_cache_sound(small_disk) == []
    assert upstream.count("GET", path.name) == 1


def test_a_write_the_kernel_refuses_streams_the_file_uncached(
    upstream: Upstream, tmp_path: Path
) -> None:
    """RLIMIT_FSIZE: any write past 2 MiB in one file fails (EFBIG), on any filesystem."""
    path, data = random_file(tmp_path, "capped-1.0.tar.gz", 6 * MiB)
    small, small_data = random_file(tmp_path, "fits-1.0.tar.gz", MiB)
    upstream.add("capped", UpstreamFile.from_path(path))
    upstream.add("fits", UpstreamFile.from_path(small))
    cache = tmp_path / "cache"
    proxy = ProxyProcess("--upstream", upstream.url, cache_dir=cache)
    limit = 2 * MiB
    launcher = (
        "import os, resource, sys; "
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); "
        "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
    )
    assert proxy.args[:2] == [sys.executable, "-m"]
    proxy.args = [sys.executable, "-c", launcher, *proxy.args[1:]]
    with proxy:
        url = proxy.url + f"files/capped/{path.name}"
        for _ in range(2):
            response = httpx.get(url, timeout=60)
            assert response.status_code == 200 and response.content == data
        assert httpx.get(proxy.url + f"files/fits/{small.name}").content == small_data
        output = proxy.output()
    assert "refused a file this large" in output
    assert_no_traceback(output)
    assert assert_cache_sound(cache) == [sha(small_data)]


# --- the embedded state store ---------------------------------------------------------


async def test_the_embedded_store_purges_expired_rows_and_vacuums(tmp_path: Path) -> None:
    store = EmbeddedStore(str(tmp_path / "state"))
    try:
        await store.set("page:kept", b"k")
        for i in range(3000):
            await store.set(f"page:gone-{i}", b"x" * 1000, ttl=0.01)
        await asyncio.sleep(0.05)
        size_before = await asyncio.to_thread(os.path.getsize, store.path)
        assert await store.compact() == 3000
        assert await store.get("page:kept") == b"k"
        assert await store.get("page:gone-1") is None
        assert await asyncio.to_thread(os.path.getsize, store.path) < size_before / 4
        assert await store.compact() == 0
    finally:
        await store.close()


# --- settings -------------------------------------------------------------------------


def test_settings_for_the_budget_and_the_deadline(tmp_path: Path) -> None:
    assert load_settings({"cache_max_size": "50G"}, {}).cache_max_size == 50 * 1024**3
    assert load_settings({"cache_max_size": "1.5GiB"}, {}).cache_max_size == 3 * 1024**3 // 2
    env = {"HOSTFIT_CACHE_MAX_SIZE": "512M", "HOSTFIT_FILE_DEADLINE": "90"}
    from_env = load_settings({}, env)
    assert from_env.cache_max_size == 512 * MiB and from_env.file_deadline == 90.0
    config = tmp_path / "hostfit.toml"
    config.write_text("[hostfit]\ncache-max-size = 1000000\nfile-deadline = 600\n")
    from_file = load_settings({"config": config}, {})
    assert from_file.cache_max_size == 1_000_000 and from_file.file_deadline == 600.0
    defaults = load_settings({}, {})
    assert defaults.cache_max_size is None and defaults.file_deadline == 1800.0
    for bad in ("lots", "-5G", "0"):
        with pytest.raises(ConfigError, match="HOSTFIT_CACHE_MAX_SIZE"):
            load_settings({}, {"HOSTFIT_CACHE_MAX_SIZE": bad})
    with pytest.raises(ConfigError, match="file_deadline"):
        load_settings({"file_deadline": "0"}, {})
