"""Both state backends honour one contract; Redis is a real redis-server."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from proxy.edge.stores import embedded
from proxy.edge.stores.embedded import EmbeddedStore
from proxy.edge.stores.redis_state import RedisStore
from proxy.edge.stores.state import StateStore, open_store
from tests.support.redis_server import RedisServer


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(params=["embedded", "redis"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, redis_server: RedisServer
) -> AsyncIterator[StateStore]:
    if request.param == "redis":
        backend: StateStore = RedisStore(redis_server.url, prefix=f"test-{tmp_path.name}:")
    else:
        backend = EmbeddedStore(str(tmp_path / "state"))
    yield backend
    await backend.close()


async def test_get_set_delete(store: StateStore) -> None:
    assert await store.get("k") is None
    await store.set("k", b"v1")
    assert await store.get("k") == b"v1"
    await store.set("k", b"v2")
    assert await store.get("k") == b"v2"
    await store.delete("k")
    assert await store.get("k") is None


async def test_ttl_expires(store: StateStore) -> None:
    await store.set("short", b"x", ttl=0.2)
    await store.set("long", b"y", ttl=60)
    assert await store.get("short") == b"x"
    await asyncio.sleep(0.35)
    assert await store.get("short") is None
    assert await store.get("long") == b"y"


async def test_add_only_when_absent(store: StateStore) -> None:
    # The expiry is counted from before the first write, which may wait on the disk:
    # long enough that the second add surely comes before it, short enough to wait out.
    assert await store.add("lock", b"a", ttl=1.0) is True
    assert await store.add("lock", b"b") is False
    assert await store.get("lock") == b"a"
    await asyncio.sleep(1.2)
    assert await store.add("lock", b"c") is True
    assert await store.get("lock") == b"c"


async def test_get_many(store: StateStore) -> None:
    keys = [f"m{i}" for i in range(1200)]
    for key in keys[::3]:
        await store.set(key, key.encode())
    values = await store.get_many(keys)
    assert values == [k.encode() if i % 3 == 0 else None for i, k in enumerate(keys)]
    assert await store.get_many([]) == []


async def test_binary_values(store: StateStore) -> None:
    blob = bytes(range(256)) * 100
    await store.set("bin", blob)
    assert await store.get("bin") == blob
    await store.ping()


async def test_embedded_survives_reopen(tmp_path: Path) -> None:
    first = open_store(None, str(tmp_path))
    await first.set("report:abc", b"kept")
    await first.close()
    second = open_store(None, str(tmp_path))
    assert await second.get("report:abc") == b"kept"
    await second.close()


async def test_lost_redis_degrades_gracefully(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis").start()
    store = open_store(server.url, str(tmp_path))
    await store.set("k", b"v")
    server.stop()
    assert await store.get("k") is None  # a miss, not an exception
    await store.set("k2", b"v")  # dropped, not raised
    assert await store.get_many(["k", "k2"]) == [None, None]
    with pytest.raises(Exception, match=r"(?i)connect|refused|closed"):
        await store.ping()
    await store.close()


def _damaged_files(directory: Path) -> list[Path]:
    found = directory.glob("state.sqlite3.damaged-*")
    return sorted(p for p in found if not p.name.endswith(("-wal", "-shm")))


@pytest.mark.parametrize("damage", ["not a database", "cut short"])
async def test_a_damaged_embedded_store_is_set_aside_and_the_store_starts_empty(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Everything in the store but one kind of record is made again when missing, so a
    file SQLite cannot read costs a restart nothing: it is kept aside for whoever wants
    to look (a WAL of the old file must never meet the new one), and the store starts
    empty."""
    directory = tmp_path / "state"
    first = EmbeddedStore(str(directory))
    for i in range(2000):
        await first.set(f"report:{i}", bytes(200))
    await first.close()
    path = directory / "state.sqlite3"
    if damage == "not a database":
        path.write_bytes(b"this is not what SQLite wrote" * 500)
    else:
        with path.open("r+b") as f:  # the header survives; the table's pages do not
            f.seek(4096)
            f.write(b"\xff" * 8192)
    (directory / "state.sqlite3-wal").write_bytes(b"a log of the old file")
    damaged = path.read_bytes()
    with caplog.at_level("ERROR", logger="hostfit.state"):
        store = EmbeddedStore(str(directory))
    try:
        (aside,) = _damaged_files(directory)
        assert aside.read_bytes() == damaged
        wal = directory / "state.sqlite3-wal"  # set aside, or dropped by SQLite: not met
        assert not wal.exists() or b"a log of the old file" not in wal.read_bytes()
        assert "cannot be read" in caplog.text and aside.name in caplog.text
        assert await store.get("report:1") is None
        await store.set("k", b"v")
        assert await store.get("k") == b"v"
    finally:
        await store.close()
    reopened = EmbeddedStore(str(directory))  # the new file is kept, not set aside again
    assert await reopened.get("k") == b"v"
    await reopened.close()
    assert len(_damaged_files(directory)) == 1


async def test_damage_found_while_serving_sets_the_file_aside_and_the_store_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A damaged page SQLite only reads when a key on it is asked for: found then, the
    file is set aside as at start, and the operation is answered from the new file (a
    miss), never an error for the request that found it."""
    directory = tmp_path / "state"
    filled = EmbeddedStore(str(directory))
    for i in range(3000):
        await filled.set(f"urlsha:http://x/{i}", b"a" * 64)
    await filled.close()
    path = directory / "state.sqlite3"
    size = path.stat().st_size
    with path.open("r+b") as f:  # the last half: leaves past the ones read at start
        f.seek(size // 2 // 4096 * 4096)
        f.write(b"\xff" * (size - size // 2 // 4096 * 4096))
    store = EmbeddedStore(str(directory))
    try:
        assert _damaged_files(directory) == []  # the start read nothing damaged
        with caplog.at_level("ERROR", logger="hostfit.state"):
            answers = [await store.get(f"urlsha:http://x/{i}") for i in range(3000)]
        assert None in answers  # the damage was met, and answered as a miss
        (aside,) = _damaged_files(directory)
        assert "cannot be read" in caplog.text and aside.name in caplog.text
        await store.set("k", b"v")
        assert await store.get("k") == b"v"
    finally:
        await store.close()
    reopened = EmbeddedStore(str(directory))
    assert await reopened.get("k") == b"v"
    await reopened.close()


def test_connections_opening_a_new_store_together_all_open_it(tmp_path: Path) -> None:
    """Turning a new database to WAL takes an exclusive lock, and SQLite answers "database
    is locked" at once where waiting could deadlock: workers starting together over a new
    store met it. 200 rounds of six connections at once, each its own new file."""
    failures: list[str] = []
    for round_ in range(200):
        path = str(tmp_path / f"state-{round_}.sqlite3")
        barrier = threading.Barrier(6)

        def connect(path: str = path, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                embedded._connect(path).close()
            except Exception as exc:
                failures.append(f"{type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=connect) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []


async def test_processes_opening_one_damaged_store_together_set_it_aside_once(
    tmp_path: Path,
) -> None:
    """Workers of one server start at once over the same file: one sets it aside, the
    others open the new one (never set that aside in turn)."""
    directory = tmp_path / "state"
    directory.mkdir()
    (directory / "state.sqlite3").write_bytes(b"garbage" * 1000)
    stores = await asyncio.gather(
        *(asyncio.to_thread(EmbeddedStore, str(directory)) for _ in range(4))
    )
    try:
        assert len(_damaged_files(directory)) == 1
        await stores[0].set("shared", b"1")
        for store in stores:
            assert await store.get("shared") == b"1"
    finally:
        for store in stores:
            await store.close()


def test_a_store_that_cannot_be_opened_for_other_reasons_is_not_set_aside(
    tmp_path: Path,
) -> None:
    """A directory in the file's place (or a locked or read-only one) is the host's to
    fix, and said as SQLite says it: nothing is moved."""
    directory = tmp_path / "state"
    (directory / "state.sqlite3").mkdir(parents=True)
    with pytest.raises(Exception, match="unable to open"):
        EmbeddedStore(str(directory))
    assert _damaged_files(directory) == []


async def test_a_process_goes_on_with_the_new_file_once_another_set_the_old_aside(
    tmp_path: Path,
) -> None:
    """Workers share one file: once one sets it aside (and opens the new one), the
    others follow at their next operation, rather than go on in the file set aside,
    where their leases and records would no longer meet the others'."""
    directory = tmp_path / "state"
    finder, other = EmbeddedStore(str(directory)), EmbeddedStore(str(directory))
    try:
        await other.set("before", b"0")
        path = str(directory / "state.sqlite3")
        assert embedded._set_aside(path, finder._file) is not None  # as `finder` does
        await finder.close()
        finder = EmbeddedStore(str(directory))  # ... then opens the new file
        await finder.set("after", b"1")
        assert await other.get("after") == b"1"
        assert await other.get("before") is None
        await other.set("from-other", b"2")
        assert await finder.get("from-other") == b"2"
    finally:
        await finder.close()
        await other.close()


async def test_no_process_opens_the_store_while_another_sets_it_aside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One that opened between the move of the damaged file and the move of its WAL made
    a new file and took up the old WAL: two processes, one database, two WALs, and the
    writes of one lost. Opening waits for the setting aside."""
    directory = tmp_path / "state"
    old = EmbeddedStore(str(directory))
    await old.set("before", b"0")
    await old.close()
    path = str(directory / "state.sqlite3")
    real, moved = os.replace, threading.Event()

    def slow(src: str, dst: str) -> None:
        real(src, dst)
        if src == path:  # the window, widened
            moved.set()
            time.sleep(1.0)

    monkeypatch.setattr(os, "replace", slow)  # the module the store moves files with
    aside = asyncio.create_task(asyncio.to_thread(embedded._set_aside, path, os.stat(path)))
    await asyncio.to_thread(moved.wait, 10)
    opener = await asyncio.to_thread(EmbeddedStore, str(directory))  # in the window
    assert await aside is not None
    finder = EmbeddedStore(str(directory))
    try:
        await finder.set("from-finder", b"1")
        await opener.set("from-opener", b"2")
        assert await opener.get("from-finder") == b"1"
        assert await finder.get("from-opener") == b"2"
        assert await finder.get("before") is None  # the old file's rows stay aside
    finally:
        await finder.close()
        await opener.close()
