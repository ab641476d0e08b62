"""Leases (`proxy.edge.stores.leases`): one holder at a time, a token that only its holder
can renew or release with, and a dead holder's lease taken over; in Redis (a real
redis-server) and on one host (flock)."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis

from proxy.edge.stores import leases as leases_module
from proxy.edge.stores.blobs import BlobStore
from proxy.edge.stores.leases import FileLeases, RedisLeases, ended_here, token
from proxy.edge.stores.redis_state import RedisStore
from tests.support.redis_server import RedisServer


def pid_gone() -> int:
    """The id of a process that has ended."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return int(done.stdout)


def hold_elsewhere(path: Path, value: bytes) -> subprocess.Popen[bytes]:
    """Another process holding the lock file ``path``, until killed."""
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, os, sys, time\n"
         f"fd = os.open({str(path)!r}, os.O_RDWR | os.O_CREAT)\n"
         f"fcntl.flock(fd, fcntl.LOCK_EX)\nos.write(fd, {value!r})\n"
         "print('held', flush=True)\ntime.sleep(60)\n"],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    assert holder.stdout is not None
    with holder.stdout:
        assert holder.stdout.readline() == b"held\n"
    return holder


@pytest.fixture
async def redis_store(tmp_path: Path) -> AsyncIterator[tuple[RedisServer, RedisStore]]:
    server = RedisServer(tmp_path / "redis").start()
    store = RedisStore(server.url, timeout=0.3, probe_every=0.3)
    try:
        yield server, store
    finally:
        await store.close()
        server.stop()


async def test_a_redis_lease_has_one_holder_and_only_it_renews_or_releases(
    redis_store: tuple[RedisServer, RedisStore],
) -> None:
    _, store = redis_store
    assert await store.lease("l", b"me", b"v1", ttl=5) is True
    assert await store.lease("l", b"you", b"v2", ttl=5) is False
    assert await store.holder("l") == (b"me", b"v1")
    assert await store.renew("l", b"you", b"mine now", ttl=5) is False
    assert await store.renew("l", b"m", b"a prefix of the token is not it", ttl=5) is False
    await store.release("l", b"you")
    assert await store.holder("l") == (b"me", b"v1")
    assert await store.renew("l", b"me", b"v3", ttl=5) is True
    assert await store.holder("l") == (b"me", b"v3")
    await store.release("l", b"me")
    assert await store.holder("l") is None


async def test_a_redis_lease_expires_and_a_late_holder_cannot_take_it_back(
    redis_store: tuple[RedisServer, RedisStore], tmp_path: Path
) -> None:
    _, store = redis_store
    hosts = [tmp_path / "one", tmp_path / "two"]  # each host its own locks
    for host in hosts:
        host.mkdir()
    one, two = (RedisLeases(store, FileLeases(host), ttl=0.3) for host in hosts)
    first = await one.acquire("job", b"first")
    assert first is not None
    assert await two.acquire("job", b"second") is None
    await asyncio.sleep(0.5)  # the first holder froze past its TTL
    second = await two.acquire("job", b"second")
    assert second is not None
    assert await first.publish(b"first again") is False
    await first.release()
    assert await two.holder("job") == b"second"
    assert await second.publish(b"second, renewed") is True
    await second.release()
    assert await two.holder("job") is None


async def test_a_redis_lease_of_a_process_gone_here_is_taken_at_once(
    redis_store: tuple[RedisServer, RedisStore], tmp_path: Path
) -> None:
    _, store = redis_store
    dead = f"{socket.gethostname()} {pid_gone()} 0123456789abcdef".encode()
    assert ended_here(dead) and not ended_here(token())
    assert not ended_here(b"another-host 1 0123456789abcdef")
    assert await store.lease("job", dead, b"left behind", ttl=60) is True
    leases = RedisLeases(store, FileLeases(tmp_path), ttl=60)
    assert await leases.holder("job") is None  # not 60 s later
    assert await leases.acquire("job", b"mine") is not None


@pytest.mark.parametrize("record", ["no token", "a list", "no expiry"])
async def test_a_redis_lease_record_no_holder_wrote_is_not_waited_on(
    redis_store: tuple[RedisServer, RedisStore], tmp_path: Path, record: str
) -> None:
    """Another version or a damaged store left the key without a holder's token (or of
    another type, without a TTL): taken for held, it stalled every download of the file
    until its deadline."""
    server, store = redis_store
    client = redis.Redis.from_url(server.url)
    try:
        if record == "a list":
            client.rpush("hostfit:job", b"x")
        elif record == "no expiry":
            client.set("hostfit:job", b"junk\n{}")  # a token's shape, but set by no holder
        else:
            client.set("hostfit:job", b"no holder token here")
    finally:
        client.close()
    leases = RedisLeases(store, FileLeases(tmp_path), ttl=60)
    assert await leases.acquire("job", b"mine") is None  # the key is there
    assert await leases.holder("job") is None  # and held by nobody: removed
    taken = await leases.acquire("job", b"mine")
    assert taken is not None and await leases.holder("job") == b"mine"
    assert await store.holder("job") is not None  # a holder's record stays
    await taken.release()


async def test_a_lease_whose_record_cannot_be_written_is_not_held(
    redis_store: tuple[RedisServer, RedisStore], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk refuses the lock file's content: the lease is not taken, and neither
    this host's lock nor Redis's lease is left held (it was, until the process ended)."""
    _, store = redis_store
    written = leases_module._write

    def disk_full(fd: int, value: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    for leases in (FileLeases(tmp_path / "a"), RedisLeases(store, FileLeases(tmp_path / "b"))):
        (tmp_path / ("a" if isinstance(leases, FileLeases) else "b")).mkdir()
        monkeypatch.setattr(leases_module, "_write", disk_full)
        with pytest.raises(OSError):
            await leases.acquire("job", b"first")
        monkeypatch.setattr(leases_module, "_write", written)
        assert await leases.holder("job") is None
        again = await leases.acquire("job", b"second")
        assert again is not None and await leases.holder("job") == b"second"
        await again.release()


async def test_a_lease_given_up_while_it_is_taken_is_let_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The caller is cancelled (a download's deadline, a shutdown) while the lock is taken
    and written on a thread: the descriptor is not closed under the thread's write (its
    number, reused, would have been written to), and the lock is let go once it is done."""
    real = leases_module._write

    def slow(fd: int, value: bytes) -> None:
        time.sleep(0.3)
        real(fd, value)

    monkeypatch.setattr(leases_module, "_write", slow)
    leases = FileLeases(tmp_path)
    taking = asyncio.ensure_future(leases.acquire("job", b"LEASE"))
    await asyncio.sleep(0.05)
    taking.cancel()
    with pytest.raises(asyncio.CancelledError):
        await taking
    other = tmp_path / "opened-meanwhile"
    with other.open("wb") as handle:  # may take the number a closed descriptor freed
        handle.write(b"mine")
        await asyncio.sleep(0.5)
    assert other.read_bytes() == b"mine"
    monkeypatch.undo()
    later = await leases.acquire("job", b"later")
    assert later is not None and await leases.holder("job") == b"later"
    await later.release()


async def test_without_redis_the_leases_of_this_host_decide(
    redis_store: tuple[RedisServer, RedisStore], tmp_path: Path
) -> None:
    server, store = redis_store
    leases = RedisLeases(store, FileLeases(tmp_path), ttl=5)
    server.pause()
    try:
        here = await leases.acquire("job", b"here")
        assert here is not None and not store.available
        assert await leases.acquire("job", b"again") is None  # another process of this host
        assert await leases.holder("job") == b"here"
        await here.release()
        assert await leases.holder("job") is None
    finally:
        server.resume()


async def test_file_leases(tmp_path: Path) -> None:
    leases = FileLeases(tmp_path)
    held = await leases.acquire("download:abc", b"one")
    assert held is not None
    assert await leases.acquire("download:abc", b"two") is None
    assert await leases.holder("download:abc") == b"one"
    assert await held.publish(b"one, more") is True
    assert await leases.holder("download:abc") == b"one, more"
    assert await leases.holder("download:other") is None
    await held.release()
    assert os.listdir(tmp_path) == []
    assert await leases.holder("download:abc") is None
    again = await leases.acquire("download:abc", b"three")
    assert again is not None
    await again.release()


async def test_a_release_waits_for_a_write_already_on_its_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelling a renewal does not stop its write, which runs on a thread: the release
    waits for it, instead of closing the descriptor that write then lands on (or on the
    file that reuses its number)."""
    lease = await FileLeases(tmp_path).acquire("report-lock:abc", b"")
    assert lease is not None
    started, go, written = threading.Event(), threading.Event(), []
    real_write = leases_module._write

    def slow_write(fd: int, value: bytes) -> None:
        started.set()
        go.wait(5)
        real_write(fd, value)
        written.append(value)

    monkeypatch.setattr(leases_module, "_write", slow_write)
    renewing = asyncio.ensure_future(lease.publish(b"renewed"))
    assert await asyncio.to_thread(started.wait, 5)
    renewing.cancel()  # the holder is done: its renewal is cancelled, its write is not
    threading.Timer(0.2, go.set).start()
    await lease.release()
    assert written == [b"renewed"]  # finished before the descriptor was closed
    assert await lease.publish(b"after") is False
    assert os.listdir(tmp_path) == []


async def test_a_file_lease_is_free_the_moment_its_holder_dies(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    leases = FileLeases(blobs.tmp)
    path = leases.path("job")
    holder = hold_elsewhere(path, b"elsewhere")
    try:
        assert await leases.acquire("job", b"mine") is None
        assert await leases.holder("job") == b"elsewhere"
        assert blobs.clean_temp() == 0  # a held lock stays
    finally:
        holder.kill()
        holder.wait()
    assert await leases.holder("job") is None  # left on disk, held by nobody
    assert blobs.clean_temp() == 1
    mine = await leases.acquire("job", b"mine")
    assert mine is not None
    await mine.release()
    assert os.listdir(blobs.tmp) == []


async def test_start_up_removes_only_temp_files_nobody_writes(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    writing = blobs.writer("a" * 64, temp_name=blobs.temp_name("a" * 64))
    await writing.open()  # a live writer of this host (another worker, say)
    dead_here = blobs.tmp / blobs.temp_name("b" * 64)
    dead_here.write_bytes(b"left by a process of this host that was killed")
    elsewhere = blobs.tmp / f"{'c' * 64}.0123abcd.0123456789ab.part"
    elsewhere.write_bytes(b"being written by a replica on another host")
    dead_elsewhere = blobs.tmp / f"{'d' * 64}.0123abcd.0123456789ab.part"
    dead_elsewhere.write_bytes(b"left by a replica on another host, long ago")
    old = time.time() - 3600
    os.utime(dead_elsewhere, (old, old))
    rewrite = blobs.tmp / "rewrite.0123.part"
    rewrite.write_bytes(b"a rewrite under way")
    assert blobs.clean_temp() == 2
    kept = sorted(os.listdir(blobs.tmp))
    assert kept == sorted([writing.temp_path.name, elsewhere.name, rewrite.name])
    assert blobs.clean_temp(stale=0) == 2  # once old enough, whatever wrote them
    assert os.listdir(blobs.tmp) == [writing.temp_path.name]  # locked: never
    await writing.discard()


async def test_a_process_that_lost_sight_of_redis_finds_the_holder_of_its_host(
    redis_store: tuple[RedisServer, RedisStore], tmp_path: Path
) -> None:
    _, store = redis_store
    here = tmp_path / "leases"
    here.mkdir()
    held = await RedisLeases(store, FileLeases(here)).acquire("job", b"through redis")
    assert held is not None
    cut_off = RedisStore("redis://127.0.0.1:1/0", timeout=0.3, probe_every=60)
    try:
        alone = RedisLeases(cut_off, FileLeases(here))
        assert await alone.acquire("job", b"alone") is None
        assert not cut_off.available
        assert await alone.holder("job") == b"through redis"
        assert await held.publish(b"renewed") is True
        assert await alone.holder("job") == b"renewed"
        await held.release()
        assert await alone.holder("job") is None
        assert os.listdir(here) == []
    finally:
        await cut_off.close()


async def test_a_holder_of_this_host_without_redis_is_followed_by_those_with_it(
    redis_store: tuple[RedisServer, RedisStore], tmp_path: Path
) -> None:
    """A process whose breaker opened took this host's lease alone: the processes that
    still reach Redis follow it rather than start the work again."""
    _, store = redis_store
    cut_off = RedisStore("redis://127.0.0.1:1/0", timeout=0.3, probe_every=60)
    try:
        alone = await RedisLeases(cut_off, FileLeases(tmp_path)).acquire("job", b"alone")
        assert alone is not None and not cut_off.available
        connected = RedisLeases(store, FileLeases(tmp_path))
        assert await connected.acquire("job", b"connected") is None
        assert await store.holder("job") is None  # the Redis lease it took is given back
        assert await connected.holder("job") == b"alone"
        await alone.release()
        assert await connected.holder("job") is None
        taken = await connected.acquire("job", b"connected")
        assert taken is not None
        await taken.release()
    finally:
        await cut_off.close()
