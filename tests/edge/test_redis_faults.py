"""Row 21 of issue 10: Redis frozen (SIGSTOP) or killed mid-run costs little, and comes back.

Once Redis is known to be down, lookups miss at once instead of waiting on a socket; a
probe in the background finds it again, without a restart. Each outage is logged once.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import redis

from proxy.core.negotiate import JSON_V1
from proxy.edge.stores.redis_state import RedisStore, RedisUnavailable
from tests.support.proxy import ProxyProcess
from tests.support.redis_server import RedisServer
from tests.support.upstream import Upstream

JSON = {"Accept": JSON_V1}


async def timed(operation: Callable[[], object]) -> float:
    started = time.monotonic()
    result = operation()
    if asyncio.iscoroutine(result):
        await result
    return time.monotonic() - started


async def wait_until(condition: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not within time"
        await asyncio.sleep(0.05)


async def test_breaker_opens_at_once_and_closes_when_redis_answers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "hostfit.state")
    server = RedisServer(tmp_path / "redis").start()
    store = RedisStore(server.url, timeout=0.3, probe_every=0.5)
    try:
        await store.set("k", b"v")
        server.pause()
        first = await timed(lambda: store.get("k"))
        assert first < 1.0  # one socket timeout, then the breaker is open
        assert not store.available
        for _ in range(20):
            assert await timed(lambda: store.get("k")) < 0.01
            assert await timed(lambda: store.get_many(["k", "j"])) < 0.01
            assert await timed(lambda: store.set("k", b"w")) < 0.01
        assert await store.add("lock", b"1") is True  # alone, this replica acts
        with pytest.raises(RedisUnavailable, match="TimeoutError"):
            await store.ping()

        server.resume()
        await wait_until(lambda: store.available, 3)
        assert await store.get("k") == b"v"  # writes while open were dropped, not queued
        await store.ping()

        server.kill()
        assert await timed(lambda: store.get("k")) < 1.0
        assert not store.available
        server.start()  # the same port, empty
        await wait_until(lambda: store.available, 3)
        await store.set("k", b"again")
        assert await store.get("k") == b"again"
    finally:
        await store.close()
        server.stop()
    lines = [r.getMessage() for r in caplog.records if r.name == "hostfit.state"]
    assert len([m for m in lines if "serving without shared state" in m]) == 2, lines
    assert len([m for m in lines if "redis is back" in m]) == 2, lines


@pytest.mark.heavy
def test_frozen_or_killed_redis_under_running_replicas(
    upstream: Upstream, demo_wheel: Path, tmp_path: Path
) -> None:
    """Two replicas on one Redis and one cache directory: Redis frozen (SIGSTOP), then
    killed and started again. No request fails, none waits past a socket timeout, and
    both replicas use Redis again without a restart."""
    upstream.add("demo-pkg", demo_wheel)
    server = RedisServer(tmp_path / "redis").start()
    keys = redis.Redis(port=server.port)
    cache = tmp_path / "cache"
    args = ("--upstream", upstream.url, "--redis", server.url, "--page-ttl", "0")
    page_path, file_path = "simple/demo-pkg/", f"files/demo-pkg/{demo_wheel.name}"

    def get(proxy: ProxyProcess, path: str, **kwargs: object) -> tuple[float, httpx.Response]:
        started = time.monotonic()
        response = httpx.get(proxy.url + path, timeout=30, **kwargs)  # type: ignore[arg-type]
        return time.monotonic() - started, response

    def wait_ready(proxy: ProxyProcess, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while get(proxy, "readyz")[1].status_code != 200:
            assert time.monotonic() < deadline, "not ready again"
            time.sleep(0.1)

    logs: list[str] = []
    try:
        with (
            ProxyProcess(*args, cache_dir=cache) as one,
            ProxyProcess(*args, cache_dir=cache) as two,
        ):
            replicas = (one, two)
            for proxy in replicas:
                assert get(proxy, file_path)[1].content == demo_wheel.read_bytes()
            assert keys.keys("hostfit:page:*")
            baseline = statistics.median(
                get(proxy, page_path, headers=JSON)[0] for proxy in replicas for _ in range(3)
            )

            server.pause()
            for proxy in replicas:
                spent = [get(proxy, page_path, headers=JSON) for _ in range(6)]
                spent += [get(proxy, file_path) for _ in range(3)]
                times = [round(t, 3) for t, _ in spent]
                shown = (times, round(baseline, 3), proxy.output()[-3000:])
                assert all(r.status_code == 200 for _, r in spent), shown
                assert spent[0][0] < baseline + 2.0, shown  # found out within a socket timeout
                added = [t - baseline for t, _ in spent[1:]]  # then Redis costs next to nothing
                assert statistics.median(added) < 0.25 and max(added) < 0.9, shown
                # Not ready, and said at once while the circuit is open; a probe of
                # Redis (the circuit half open) waits one socket timeout (0.5 s). So: the
                # median of a few answers is quick, none waits past a socket timeout.
                readies = [get(proxy, "readyz") for _ in range(5)]
                shown_ready = [(round(t, 3), r.status_code, r.text) for t, r in readies]
                assert all(r.status_code == 503 for _, r in readies), shown_ready
                assert all("unavailable" in r.text for _, r in readies), shown_ready
                assert statistics.median(t for t, _ in readies) < 0.25, shown_ready
                assert max(t for t, _ in readies) < 0.5 + 0.9, shown_ready

            server.resume()
            for proxy in replicas:
                wait_ready(proxy, 5)
            keys.flushall()
            for proxy in replicas:
                assert get(proxy, page_path, headers=JSON)[1].status_code == 200
            assert keys.keys("hostfit:page:*")  # shared state is written again

            server.kill()
            for proxy in replicas:
                killed = [get(proxy, page_path, headers=JSON) for _ in range(5)]
                assert all(r.status_code == 200 for _, r in killed)
                assert max(t - baseline for t, _ in killed[1:]) < 0.9, killed
            server.start()
            keys = redis.Redis(port=server.port)
            for proxy in replicas:
                wait_ready(proxy, 5)
                keys.flushall()
                assert get(proxy, page_path, headers=JSON)[1].status_code == 200
                assert keys.keys("hostfit:page:*")  # this replica writes to Redis again
        logs = [proxy.output() for proxy in replicas]
    finally:
        server.stop()
    for log in logs:
        assert "Traceback" not in log, log
        assert log.count("serving without shared state") == 2, log
        assert log.count("redis is back") == 2, log
