"""Issue 10's fault matrix for files, against a local upstream that misbehaves on command.

Rows covered here: 3 (a dripping upstream: the file deadline, and a download nobody
follows any more stops), 4 (bodies cut short: resumed with a Range request where the
upstream allows, else a visibly failed transfer), 20 (200 concurrent first requests)
and 26 (a file evicted while being downloaded). Row 4's corrupt and truncated bodies
are also in `test_serving.test_bad_upstream_bytes_abort_the_transfer_and_are_never_cached`,
row 19 in `test_memory`, row 23 in `test_restart`, row 22 in `test_cache_budget`.

After every row: nothing corrupt cached, no temp file left, no traceback logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.edge.fault_checks import LogWatch, assert_cache_sound, watch_logs
from tests.support.proxy import ProxyThread
from tests.support.upstream import Upstream, UpstreamFile
from tests.support.wheels import WheelSpec, build_wheel

MakeProxy = Callable[..., ProxyThread]
CHUNK = 64 * 1024  # the test upstream's chunk: slow_files delays each one


@pytest.fixture
def logs() -> Iterator[LogWatch]:
    with watch_logs() as watch:
        yield watch
    assert not watch.tracebacks(), watch.tracebacks()


def blob(tmp_path: Path, name: str, size: int) -> tuple[Path, bytes]:
    data = os.urandom(size)
    path = tmp_path / name
    path.write_bytes(data)
    return path, data


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def cached(proxy: ProxyThread) -> list[str]:
    return assert_cache_sound(proxy.settings.cache_dir)


# --- row 3: an upstream that drips ---------------------------------------------------


def test_a_drip_with_no_byte_sent_yet_is_504_at_the_deadline(
    upstream: Upstream, make_proxy: MakeProxy, tmp_path: Path, logs: LogWatch
) -> None:
    path, _ = blob(tmp_path, "drip-1.0.tar.gz", 4 * CHUNK)
    upstream.add("drip", UpstreamFile.from_path(path))
    upstream.slow_files[path.name] = 5.0  # the first chunk comes after 5 s
    proxy = make_proxy(upstream, file_deadline=1.0)
    started = time.monotonic()
    response = httpx.get(proxy.url + f"files/drip/{path.name}", timeout=30)
    elapsed = time.monotonic() - started
    assert response.status_code == 504
    assert path.name in response.text and "file deadline" in response.text
    assert elapsed < 4.0
    wait_for(lambda: proxy.services.files.active == 0)
    assert cached(proxy) == []
    assert proxy.services.files.outcomes["timed_out"] == 1


def test_a_drip_after_bytes_were_sent_fails_the_transfer_visibly(
    upstream: Upstream, make_proxy: MakeProxy, tmp_path: Path, logs: LogWatch
) -> None:
    path, _ = blob(tmp_path, "drip-1.0.tar.gz", 40 * CHUNK)
    upstream.add("drip", UpstreamFile.from_path(path))
    upstream.slow_files[path.name] = 0.5  # a chunk every half second: 20 s in all
    proxy = make_proxy(upstream, file_deadline=2.0)
    url = proxy.url + f"files/drip/{path.name}"
    received = 0
    started = time.monotonic()
    with pytest.raises(httpx.HTTPError), httpx.stream("GET", url, timeout=30) as response:
        assert response.status_code == 200
        for chunk in response.iter_bytes():
            received += len(chunk)
    assert 0 < received < path.stat().st_size
    assert time.monotonic() - started < 8.0
    wait_for(lambda: proxy.services.files.active == 0)
    assert cached(proxy) == []
    assert "file deadline" in logs.messages()
    # A later client is not stuck behind the failed download: it starts its own.
    upstream.slow_files.clear()
    assert httpx.get(url, timeout=30).content == path.read_bytes()
    assert len(cached(proxy)) == 1


def test_a_download_stops_when_no_client_is_left(
    upstream: Upstream, make_proxy: MakeProxy, tmp_path: Path, logs: LogWatch
) -> None:
    path, _ = blob(tmp_path, "drip-1.0.tar.gz", 100 * CHUNK)
    upstream.add("drip", UpstreamFile.from_path(path))
    upstream.slow_files[path.name] = 0.1  # 10 s in all
    proxy = make_proxy(upstream)
    files = proxy.services.files
    files.linger = 0.5
    url = proxy.url + f"files/drip/{path.name}"
    with httpx.stream("GET", url, timeout=30) as response:
        for _ in response.iter_bytes():
            break  # the client goes away after its first bytes
    wait_for(lambda: files.outcomes["abandoned"] == 1, timeout=5)
    wait_for(lambda: files.active == 0)
    assert cached(proxy) == []
    assert "no client left" in logs.messages()
    # The upstream was let go as well: its response ended long before the file's end.
    assert upstream.count("GET", path.name) == 1


def test_a_download_goes_on_while_one_client_follows_it(
    upstream: Upstream, make_proxy: MakeProxy, tmp_path: Path, logs: LogWatch
) -> None:
    path, data = blob(tmp_path, "drip-1.0.tar.gz", 40 * CHUNK)
    upstream.add("drip", UpstreamFile.from_path(path))
    upstream.slow_files[path.name] = 0.05
    proxy = make_proxy(upstream)
    proxy.services.files.linger = 0.3
    url = proxy.url + f"files/drip/{path.name}"
    bodies: list[bytes] = []

    def stay() -> None:
        bodies.append(httpx.get(url, timeout=60).content)

    stayer = threading.Thread(target=stay)
    stayer.start()
    wait_for(lambda: proxy.services.files.active == 1)
    with httpx.stream("GET", url, timeout=30) as response:
        for _ in response.iter_bytes():
            break  # this one leaves
    stayer.join(60)
    assert bodies == [data]
    assert proxy.services.files.outcomes["abandoned"] == 0
    assert cached(proxy) == [hashlib.sha256(data).hexdigest()]
    assert upstream.count("GET", path.name) == 1


# --- row 4: bodies cut short -----------------------------------------------------------


def test_a_body_cut_once_is_resumed_with_a_range_request(
    upstream: Upstream, make_proxy: MakeProxy, tmp_path: Path, logs: LogWatch
) -> None:
    path, data = blob(tmp_path, "cut-1.0.tar.gz", 16 * CHUNK)
    upstream.add("cut", UpstreamFile.from_path(path))
    upstream.truncate.add(path.name)
    upstream.slow_files[path.name] = 0.02
    proxy = make_proxy(upstream)
    files = proxy.services.files

    def heal() -> None:  # once the first answer is under way, bodies are whole again
        wait_for(lambda: any(d.written for d in list(files._downloads.values())))
        upstream.truncate.clear()

    healer = threading.Thread(target=heal)
    healer.start()
    body = httpx.get(proxy.url + f"files/cut/{path.name}", timeout=30).content
    healer.join()
    assert body == data
    gets = [r for r in upstream.requests if r.path.endswith(path.name)]
    assert len(gets) == 2
    assert gets[1].headers["range"] == f"bytes={len(data) // 2}-"
    assert cached(proxy) == [hashlib.sha256(data).hexdigest()]
    assert "resuming at byte" in logs.messages()


@pytest.mark.parametrize("ranges", [True, False])
def test_a_body_always_cut_fails_visibly_and_is_never_cached(
    upstream: Upstream, make_proxy: MakeProxy, tmp_path: Path, logs: LogWatch, ranges: bool
) -> None:
    path, data = blob(tmp_path, "cut-1.0.tar.gz", 16 * CHUNK)
    upstream.add("cut", UpstreamFile.from_path(path))
    upstream.truncate.add(path.name)
    upstream.ranges = ranges
    proxy = make_proxy(upstream)
    url = proxy.url + f"files/cut/{path.name}"
    with pytest.raises(httpx.HTTPError), httpx.stream("GET", url, timeout=30) as response:
        assert response.headers["content-length"] == str(len(data))
        response.read()  # a short body against its Content-Length raises
    wait_for(lambda: proxy.services.files.active == 0)
    assert cached(proxy) == []
    # With ranges, resumed until the attempts ran out; without, not asked again.
    assert upstream.count("GET", path.name) == (3 if ranges else 1)
    upstream.truncate.clear()
    assert httpx.get(url, timeout=30).content == data  # the next request fetches again
    assert len(cached(proxy)) == 1


def test_a_body_of_no_announced_size_arrives_whole(
    upstream: Upstream, make_proxy: MakeProxy, tmp_path: Path, logs: LogWatch
) -> None:
    """Sent chunked, with no size on the page either: the answer is chunked too, and
    whole, not an empty 200 that a client would take as the file."""
    path, data = blob(tmp_path, "unsized-1.0.tar.gz", 5 * CHUNK + 123)
    upstream.add("unsized", UpstreamFile.from_path(path, size=None))
    upstream.chunked.add(path.name)
    upstream.ranges = False
    proxy = make_proxy(upstream)
    url = proxy.url + f"files/unsized/{path.name}"
    with httpx.Client(timeout=30) as client:  # one connection: it must survive the answer
        first = client.get(url)
        assert "content-length" not in first.headers
        assert first.content == data
        wait_for(lambda: len(cached(proxy)) == 1)
        assert client.get(url).content == data


def test_a_body_longer_than_announced_is_cut_and_never_cached(
    upstream: Upstream, make_proxy: MakeProxy, tmp_path: Path, logs: LogWatch
) -> None:
    """Unframed, past the size the page gives: the download stops there (an endless
    body would fill the disk), the client's transfer fails, nothing is cached."""
    path, _ = blob(tmp_path, "long-1.0.tar.gz", 8 * CHUNK)
    upstream.add("long", UpstreamFile.from_path(path, size=4 * CHUNK))
    upstream.chunked.add(path.name)
    upstream.ranges = False
    proxy = make_proxy(upstream)
    url = proxy.url + f"files/long/{path.name}"
    with pytest.raises(httpx.HTTPError), httpx.stream("GET", url, timeout=30) as response:
        response.read()
    wait_for(lambda: proxy.services.files.active == 0)
    assert cached(proxy) == []
    assert "more than the 262144 bytes announced" in logs.messages()


# --- row 20: 200 concurrent first requests -----------------------------------------


def test_two_hundred_concurrent_first_requests_make_one_download(
    upstream: Upstream, make_proxy: MakeProxy, wheel_dir: Path, logs: LogWatch
) -> None:
    wheel = build_wheel(
        WheelSpec("crowd", "1.0", files={"crowd/blob.bin": os.urandom(1_500_000)}), wheel_dir
    )
    upstream.add("crowd", wheel)
    upstream.slow_files[wheel.name] = 0.02
    proxy = make_proxy(upstream)
    url = proxy.url + f"files/crowd/{wheel.name}"

    async def fetch_all() -> list[bytes]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(timeout=120, limits=limits) as client:
            responses = await asyncio.gather(*(client.get(url) for _ in range(200)))
        assert all(r.status_code == 200 for r in responses)
        return [r.content for r in responses]

    bodies = asyncio.run(fetch_all())
    expected = wheel.read_bytes()
    assert len(bodies) == 200 and all(body == expected for body in bodies)
    assert upstream.count("GET", wheel.name) == 1
    assert cached(proxy) == [hashlib.sha256(expected).hexdigest()]


# --- row 26: a file evicted while being downloaded ----------------------------------

BIG = 32 * 1024 * 1024  # more than socket buffers hold: the server is still reading


def slow_read(url: str, into: list[bytes], pause: float = 0.02) -> None:
    """A client that reads a file slowly, 256 KiB at a time."""
    parts = []
    with httpx.stream("GET", url, timeout=60) as response:
        for chunk in response.iter_bytes(4 * CHUNK):
            parts.append(chunk)
            time.sleep(pause)
    into.append(b"".join(parts))


def test_a_cached_file_evicted_while_served_arrives_whole(
    upstream: Upstream, make_proxy: MakeProxy, tmp_path: Path, logs: LogWatch
) -> None:
    """Another process on the same cache directory evicts it: the open descriptor holds."""
    path, data = blob(tmp_path, "held-1.0.tar.gz", BIG)
    upstream.add("held", UpstreamFile.from_path(path))
    proxy = make_proxy(upstream)
    blobs = proxy.services.blobs
    url = proxy.url + f"files/held/{path.name}"
    assert httpx.get(url).content == data
    blob_path = blobs.path(hashlib.sha256(data).hexdigest())
    received: list[bytes] = []
    reader = threading.Thread(target=slow_read, args=(url, received))
    reader.start()
    wait_for(lambda: bool(blobs._pins))
    time.sleep(0.3)
    blob_path.unlink()  # what an eviction in another process does
    assert blobs._pins, "the response should still be reading the file"
    reader.join(60)
    assert received == [data]
    # The next request finds it gone, and downloads it again.
    assert httpx.get(url).content == data
    assert upstream.count("GET", path.name) == 2
    assert cached(proxy) == [hashlib.sha256(data).hexdigest()]


def test_eviction_here_passes_over_a_file_being_served(
    upstream: Upstream, make_proxy: MakeProxy, tmp_path: Path, logs: LogWatch
) -> None:
    first, first_data = blob(tmp_path, "first-1.0.tar.gz", BIG)
    second, second_data = blob(tmp_path, "second-1.0.tar.gz", BIG)
    upstream.add("first", UpstreamFile.from_path(first))
    upstream.add("second", UpstreamFile.from_path(second))
    proxy = make_proxy(upstream, cache_max_size=int(BIG * 1.5))
    blobs = proxy.services.blobs
    first_url = proxy.url + f"files/first/{first.name}"
    second_url = proxy.url + f"files/second/{second.name}"
    assert httpx.get(first_url).content == first_data
    first_path = blobs.path(hashlib.sha256(first_data).hexdigest())
    received: list[bytes] = []
    reader = threading.Thread(target=slow_read, args=(first_url, received))
    reader.start()
    wait_for(lambda: bool(blobs._pins))
    # The second file does not fit beside the first, which is being served: it is
    # streamed without being cached, and the first stays.
    assert httpx.get(second_url).content == second_data
    assert blobs._pins, "the first file should still be being served"
    assert first_path.exists()
    assert "the cache budget is taken by files being served" in logs.messages()
    reader.join(60)
    assert received == [first_data]
    # Served no more, the first is the least recently used: the second takes its place.
    assert httpx.get(second_url).content == second_data
    assert cached(proxy) == [hashlib.sha256(second_data).hexdigest()]
    assert blobs.evicted == 1


def test_a_download_whose_file_is_evicted_as_it_lands_completes(
    upstream: Upstream, make_proxy: MakeProxy, tmp_path: Path, logs: LogWatch
) -> None:
    path, data = blob(tmp_path, "landing-1.0.tar.gz", BIG // 2)
    upstream.add("landing", UpstreamFile.from_path(path))
    upstream.slow_files[path.name] = 0.002
    proxy = make_proxy(upstream)
    files = proxy.services.files
    sha256 = hashlib.sha256(data).hexdigest()
    blob_path = proxy.services.blobs.path(sha256)
    url = proxy.url + f"files/landing/{path.name}"
    received: list[bytes] = []
    reader = threading.Thread(target=slow_read, args=(url, received, 0.1))
    reader.start()
    wait_for(lambda: sha256 in files._downloads)
    download = files._downloads[sha256]
    wait_for(blob_path.exists)  # committed while the slow reader is far behind
    blob_path.unlink()
    assert download._readers, "the client should still be following the download"
    reader.join(60)
    assert received == [data]
    assert cached(proxy) == []
