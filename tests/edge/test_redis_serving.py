"""The proxy with --redis: replicas share pages; a lost Redis does not stop serving."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx

from proxy.core.negotiate import JSON_V1
from tests.support.proxy import ProxyThread
from tests.support.redis_server import RedisServer
from tests.support.upstream import Upstream

MakeProxy = Callable[..., ProxyThread]


def test_replicas_share_pages_through_redis(
    upstream: Upstream, make_proxy: MakeProxy, demo_wheel: Path, tmp_path: Path
) -> None:
    upstream.add("demo-pkg", demo_wheel)
    with RedisServer(tmp_path / "redis") as redis:
        first = make_proxy(upstream, redis=redis.url)
        second = make_proxy(upstream, redis=redis.url)
        page = httpx.get(first.url + "simple/demo-pkg/", headers={"Accept": JSON_V1})
        assert page.status_code == 200
        upstream.down = True  # the second replica must not need upstream at all
        shared = httpx.get(second.url + "simple/demo-pkg/", headers={"Accept": JSON_V1})
        assert shared.status_code == 200
        assert shared.json() == page.json()
        assert "warning" not in shared.headers
        assert upstream.count("GET", "/simple/demo-pkg/") == 1


def test_lost_redis_keeps_serving(
    upstream: Upstream, make_proxy: MakeProxy, demo_wheel: Path, tmp_path: Path
) -> None:
    upstream.add("demo-pkg", demo_wheel)
    redis = RedisServer(tmp_path / "redis").start()
    proxy = make_proxy(upstream, redis=redis.url)
    assert httpx.get(proxy.url + "readyz").status_code == 200
    redis.stop()
    response = httpx.get(proxy.url + "simple/demo-pkg/", headers={"Accept": JSON_V1})
    assert response.status_code == 200
    assert response.json()["files"][0]["filename"] == demo_wheel.name
    download = httpx.get(proxy.url + f"files/demo-pkg/{demo_wheel.name}")
    assert download.content == demo_wheel.read_bytes()
    not_ready = httpx.get(proxy.url + "readyz")
    assert not_ready.status_code == 503
    assert "state store unavailable" in not_ready.text
