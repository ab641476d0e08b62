"""Load for the throughput workloads: wrk, or a small httpx loop where wrk is missing.

The loop exists so that the short mode runs on a machine without wrk (CI checks that
every workload runs, not its figures); its figures are the loop's limit, not the
server's, and the report says which generator measured them.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time

import httpx

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}
SCALE = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9}


def generator() -> str:
    return "wrk" if shutil.which("wrk") else "httpx loop (wrk not installed)"


def load(url: str, seconds: float, connections: int, headers: dict[str, str]) -> dict[str, float]:
    """Requests/s, MB/s, p99 latency (ms) and socket errors; raises on a non-2xx answer."""
    if shutil.which("wrk"):
        return _wrk(url, seconds, connections, headers)
    return asyncio.run(_loop(url, seconds, connections, headers))


def _wrk(url: str, seconds: float, connections: int, headers: dict[str, str]) -> dict[str, float]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    command += ["--timeout", "10s"]
    for key, value in headers.items():
        command += ["-H", f"{key}: {value}"]
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    bad = re.search(r"Non-2xx or 3xx responses: \d+", out)
    if bad:
        raise RuntimeError(f"{url}: {bad.group(0)}")
    # Timeouts and resets are the server's answer to the load: counted, not fatal.
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = sum(int(n) for n in socket.groups()) if socket else 0
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    transfer = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(\w+)", out, re.M)
    if rps is None or transfer is None or p99 is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    return {
        "rps": float(rps.group(1)),
        "mb_s": float(transfer.group(1)) * SCALE[transfer.group(2)] / 1e6,
        "p99_ms": float(p99.group(1)) * UNITS[p99.group(2)],
        "errors": errors,
    }


async def _loop(
    url: str, seconds: float, connections: int, headers: dict[str, str]
) -> dict[str, float]:
    latencies: list[float] = []
    received = 0
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=30) as client:
        start = time.perf_counter()
        deadline = start + seconds

        async def one() -> None:
            nonlocal received
            while time.perf_counter() < deadline:
                began = time.perf_counter()
                async with client.stream("GET", url) as response:
                    if not 200 <= response.status_code < 400:
                        raise RuntimeError(f"{url}: {response.status_code}")
                    async for chunk in response.aiter_raw():
                        received += len(chunk)
                latencies.append(time.perf_counter() - began)

        await asyncio.gather(*(one() for _ in range(connections)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "mb_s": received / elapsed / 1e6,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1e3,
        "errors": 0,
    }
