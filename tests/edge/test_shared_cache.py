"""A shared HTTP cache (nginx proxy_cache) in front of hostfit never serves one host's
page to another: responses say what they vary on, and /p/ URLs carry the profile."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx

from proxy.core.negotiate import JSON_V1
from tests.edge.test_host_filter import CP, HOST, pip_agent
from tests.support.nginx import Nginx
from tests.support.proxy import ProxyThread
from tests.support.upstream import Upstream
from tests.support.wheels import WheelSpec, build_wheel

MakeProxy = Callable[..., ProxyThread]

CACHE = """
proxy_cache_path {work}/cache levels=1:2 keys_zone=index:10m inactive=10m;
server {{
    listen 127.0.0.1:{{port}};
    location / {{
        proxy_pass {backend};
        proxy_cache index;
        proxy_cache_valid 200 10m;
        add_header X-Cache $upstream_cache_status always;
    }}
}}
"""


def test_shared_cache_keeps_hosts_apart(
    upstream: Upstream, make_proxy: MakeProxy, wheel_dir: Path, tmp_path: Path
) -> None:
    old = build_wheel(WheelSpec("fitpkg", "1.0", tag=f"{CP}-manylinux_2_17_x86_64"), wheel_dir)
    new = build_wheel(WheelSpec("fitpkg", "1.0", tag=f"{CP}-manylinux_2_34_x86_64"), wheel_dir)
    upstream.add("fitpkg", old)
    upstream.add("fitpkg", new)
    proxy = make_proxy(upstream)
    work = tmp_path / "nginx"
    http = CACHE.format(work=work, backend=proxy.url.rstrip("/"))
    with Nginx(work, http) as cache:

        def files(path: str, **headers: str) -> tuple[set[str], str]:
            response = httpx.get(cache.url + path, headers={"Accept": JSON_V1, **headers})
            assert response.status_code == 200
            names = {f["filename"] for f in response.json()["files"]}
            return names, response.headers["x-cache"]

        old_host = {"User-Agent": pip_agent("2.28")}
        new_host = {"User-Agent": pip_agent("2.36")}
        first, status = files("simple/fitpkg/", **old_host)
        assert first == {old.name} and status == "MISS"
        assert files("simple/fitpkg/", **old_host) == ({old.name}, "HIT")
        # Same URL, another host: the cache must not hand over the first host's page.
        assert files("simple/fitpkg/", **new_host)[0] == {old.name, new.name}
        assert files("simple/fitpkg/", **new_host)[0] == {old.name, new.name}
        header_host = {"X-Hostfit-Profile": "libc=glibc-2.28", **new_host}
        assert files("simple/fitpkg/", **header_host)[0] == {old.name}

        # /p/ URLs are cacheable for everyone whatever their headers: the URL is the key.
        url = f"p/{HOST},libc=glibc-2.28/simple/fitpkg/"
        assert files(url, **new_host) == ({old.name}, "MISS")
        assert files(url, **old_host) == ({old.name}, "HIT")
        other = f"p/{HOST},libc=glibc-2.36/simple/fitpkg/"
        assert files(other, **old_host) == ({old.name, new.name}, "MISS")
