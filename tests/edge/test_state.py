"""Both state backends honour one contract; Redis is a real redis-server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

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
