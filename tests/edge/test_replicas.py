"""Issue 12, item 1: replicas sharing one Redis and one cache directory, behind nginx
(deploy/nginx.conf), download a cold file from upstream once, however many clients ask
whichever replica at once; so do the workers of one `hostfit serve --workers 2`. A
replica killed while it leads a download is taken over by another, which carries on
from the bytes already on disk."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.deploy import nginx_conf
from tests.edge.fault_checks import assert_cache_sound
from tests.support.proxy import ROOT, ProxyProcess, free_port, wait_ready
from tests.support.redis_server import RedisServer
from tests.support.upstream import Upstream
from tests.support.wheels import WheelSpec, build_wheel

CLIENTS = 200
SIZE = 6 * 1024 * 1024


def big_wheel(directory: Path, name: str = "shared_big") -> Path:
    payload = os.urandom(SIZE)  # incompressible: the wheel weighs what its payload does
    files = {f"{name}/__init__.py": b"", f"{name}/blob.bin": payload}
    return build_wheel(WheelSpec(name, "1.0", files=files), directory)


def wait_until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds}s: {what}"
        time.sleep(0.02)


@contextmanager
def replicas(count: int, *args: str, cache_dir: Path) -> Iterator[list[ProxyProcess]]:
    """``count`` `hostfit serve` processes on one cache directory, started together (on
    a busy machine that can take longer than one start is given alone)."""
    proxies = [ProxyProcess(*args, cache_dir=cache_dir) for _ in range(count)]
    with ExitStack() as stack:
        for proxy in proxies:
            stack.callback(proxy.stop)
            with proxy.log.open("ab") as log:
                proxy.process = subprocess.Popen(
                    proxy.args, cwd=ROOT, env=proxy.env, stdout=log, stderr=log
                )
        for proxy in proxies:
            wait_ready(proxy.url, timeout=90, process=proxy.process)
        yield proxies


def what_files_did(proxies: list[ProxyProcess]) -> str:
    """The replicas' log lines about downloads and shared state, for a failure's message."""
    wanted = ("hostfit.files", "hostfit.state", "hostfit.leases", "Traceback")
    return "\n".join(
        line[:300]
        for proxy in proxies
        for line in proxy.output().splitlines()
        if any(word in line for word in wanted)
        or ("hostfit.upstream" in line and "/files/" in line)
    )


@contextmanager
def balancer(work: Path, ports: list[int]) -> Iterator[tuple[str, Path]]:
    """deploy/nginx.conf in front of these replicas; (its URL, its access log)."""
    listen = free_port()
    conf = nginx_conf.render(work, 1, listen)  # every replica at 127.0.0.1:1, then ours
    text = conf.read_text()
    replaced = iter(ports)
    text, count = re.subn(r"127\.0\.0\.1:1(?= )", lambda _: f"127.0.0.1:{next(replaced)}", text)
    assert count == len(ports) == 3
    access = work / "access.log"
    text = text.replace("access_log /dev/stdout hostfit;", f"access_log {access} hostfit;")
    conf.write_text(text)
    process = subprocess.Popen(
        [nginx_conf.binary(), "-p", str(work), "-e", str(work / "error.log"), "-c", str(conf),
         "-g", "daemon off;"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{listen}/"
    try:
        wait_until(lambda: _answers(url + "nginx-health"), 15, "nginx up")
        yield url, access
    finally:
        process.terminate()
        process.wait(10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


async def ask_at_once(urls: list[str]) -> list[tuple[int, str]]:
    """Every URL asked at the same moment, each on a connection of its own: (status,
    sha256 of the body)."""
    limits = httpx.Limits(max_connections=len(urls), max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=120) as client:
        start = asyncio.Event()

        async def one(url: str) -> tuple[int, str]:
            await start.wait()
            response = await client.get(url)
            return response.status_code, hashlib.sha256(response.content).hexdigest()

        tasks = [asyncio.create_task(one(url)) for url in urls]
        await asyncio.sleep(0.2)
        start.set()
        return await asyncio.gather(*tasks)


def file_gets(upstream: Upstream, wheel: Path) -> list[dict[str, str]]:
    return [r.headers for r in list(upstream.requests) if r.path.endswith(f"/files/{wheel.name}")]


def no_tracebacks(proxies: list[ProxyProcess]) -> None:
    for proxy in proxies:
        assert "Traceback" not in proxy.output(), proxy.output()[-4000:]


@pytest.mark.heavy
@pytest.mark.parametrize("workers", [1, 2])
def test_replicas_behind_nginx_download_a_cold_wheel_once(
    upstream: Upstream, tmp_path: Path, workers: int
) -> None:
    wheel = big_wheel(tmp_path / "wheels")
    upstream.add("shared-big", wheel)
    upstream.slow_files[wheel.name] = 0.02  # about 2 s from the first byte to the last
    expected = hashlib.sha256(wheel.read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    with RedisServer(tmp_path / "redis") as redis_server:
        args: tuple[str, ...] = ("--upstream", upstream.url, "--redis", redis_server.url)
        args += ("--workers", str(workers), "--analysis-workers", "1")
        with replicas(3, *args, cache_dir=cache) as proxies:
            ports = [p.port for p in proxies]
            with balancer(tmp_path / "nginx", ports) as (url, access):
                path = f"files/shared-big/{wheel.name}"
                answers = asyncio.run(ask_at_once([url + path] * CLIENTS))
                assert Counter(answers) == {(200, expected): CLIENTS}
                gets = file_gets(upstream, wheel)
                ranges = [g.get("range") for g in gets]
                assert len(gets) == 1, f"ranges asked: {ranges}\n{what_files_did(proxies)}"
                served_by = Counter(
                    found.group(1)
                    for line in access.read_text().splitlines()
                    if path in line and (found := re.search(r"upstream=127\.0\.0\.1:(\d+)", line))
                )
                assert sum(served_by.values()) == CLIENTS
                assert set(served_by) == {str(p) for p in ports}, served_by  # every replica
                again = httpx.get(url + path, timeout=30)
                assert hashlib.sha256(again.content).hexdigest() == expected
            wait_until(lambda: not list((cache / "files" / "tmp").iterdir()), 30, "leases gone")
        no_tracebacks(proxies)
    assert assert_cache_sound(cache) == [expected]
    assert len(file_gets(upstream, wheel)) == 1


def test_the_workers_of_one_server_download_a_cold_wheel_once(
    upstream: Upstream, tmp_path: Path
) -> None:
    """No Redis: the workers of one host agree through the cache directory. Which worker
    accepts a connection is the kernel's choice, so rounds of new cold wheels are asked
    until one round was served by both (each round: one download)."""
    cache = tmp_path / "cache"
    args = ("--upstream", upstream.url, "--workers", "2", "--analysis-workers", "1")
    proxy = ProxyProcess(*args, "--log-format", "json", cache_dir=cache)
    proxy.args.remove("--no-access-log")
    expected = []
    spread = False
    with proxy:
        for round_ in range(4):
            wheel = big_wheel(tmp_path / "wheels", f"shared_big{round_}")
            upstream.add(f"shared-big{round_}", wheel)
            upstream.slow_files[wheel.name] = 0.02
            expected.append(hashlib.sha256(wheel.read_bytes()).hexdigest())
            url = proxy.url + f"files/shared-big{round_}/{wheel.name}"
            answers = asyncio.run(ask_at_once([url] * 60))
            assert Counter(answers) == {(200, expected[-1]): 60}
            assert len(file_gets(upstream, wheel)) == 1
            wait_until(lambda: not list((cache / "files" / "tmp").iterdir()), 10, "locks gone")
            served = Counter(line["pid"] for line in access_lines(proxy, wheel.name, 60))
            if len(served) == 2:
                spread = True
                break
    no_tracebacks([proxy])
    assert spread, "one worker took every connection, round after round"
    assert sorted(assert_cache_sound(cache)) == sorted(expected)


def access_lines(proxy: ProxyProcess, filename: str, count: int) -> list[dict[str, Any]]:
    """The ``count`` access log lines of the requests for a file, once all are written."""
    found: list[dict[str, Any]] = []

    def written() -> bool:
        lines = [json.loads(x) for x in proxy.output().splitlines() if x.startswith("{")]
        found[:] = [
            x for x in lines if x["logger"] == "hostfit.access" and x["path"].endswith(filename)
        ]
        return len(found) >= count

    wait_until(written, 10, f"{count} access lines for {filename}")
    assert len(found) == count
    return found


def test_a_replica_killed_while_leading_is_taken_over(upstream: Upstream, tmp_path: Path) -> None:
    wheel = big_wheel(tmp_path / "wheels")
    upstream.add("shared-big", wheel)
    upstream.slow_files[wheel.name] = 0.03  # about 3 s in all
    expected = hashlib.sha256(wheel.read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    temp = cache / "files" / "tmp"
    with RedisServer(tmp_path / "redis") as redis_server:
        args = ("--upstream", upstream.url, "--redis", redis_server.url)
        with replicas(3, *args, "--analysis-workers", "1", cache_dir=cache) as proxies:
            leader, *others = proxies
            path = f"files/shared-big/{wheel.name}"
            with ThreadPoolExecutor(4) as pool:
                led = pool.submit(httpx.get, leader.url + path, timeout=60)

                def written() -> int:
                    parts = [p for p in temp.iterdir() if p.name.endswith(".part")]
                    return parts[0].stat().st_size if parts else 0

                wait_until(lambda: written() > 256 * 1024, 20, "the leader writing")
                followed = [pool.submit(httpx.get, p.url + path, timeout=60) for p in others]
                wait_until(lambda: written() > 2 * 1024 * 1024, 20, "followers reading")
                leader.kill()
                with pytest.raises(httpx.HTTPError):
                    led.result()
                for future in followed:
                    response = future.result()
                    assert response.status_code == 200
                    assert hashlib.sha256(response.content).hexdigest() == expected
            gets = file_gets(upstream, wheel)
            assert len(gets) == 2, gets  # the first, then the rest of it by the new leader
            assert "range" not in gets[0] and re.fullmatch(r"bytes=\d+-", gets[1]["range"])
            taken = [p for p in others if "taking over its download" in p.output()]
            assert len(taken) == 1, [p.output()[-2000:] for p in others]
            wait_until(lambda: not [p for p in temp.iterdir() if p.suffix == ".lock"], 10, "locks")
        no_tracebacks(others)
    # The dead leader's temp file stays until a start-up finds it stale.
    leftovers = [p for p in temp.iterdir()]
    assert all(p.name.endswith(".part") for p in leftovers), leftovers
    for leftover in leftovers:
        leftover.unlink()
    assert assert_cache_sound(cache) == [expected]
