"""Cached pages and cached files through hostfit against nginx serving the same bytes.

One command (``bench/run serve``) measures, in the same run and on the same machine:
- requests/s for a numpy-sized project page (4,415 files), identity and gzip;
- MB/s for a large cached file, with hostfit's peak memory.
Both servers get the same number of worker processes. wrk is the load generator.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.nginx import Nginx  # noqa: E402
from tests.support.proxy import ProxyProcess  # noqa: E402
from tests.support.upstream import Upstream, UpstreamFile  # noqa: E402

JSON_V1 = "application/vnd.pypi.simple.v1+json"
PIP_ACCEPT = f"{JSON_V1}, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"
PIP_AGENT = "pip/24.0 " + json.dumps(
    {
        "installer": {"name": "pip", "version": "24.0"},
        "python": "3.11.7",
        "implementation": {"name": "CPython", "version": "3.11.7"},
        "distro": {"name": "Debian GNU/Linux", "libc": {"lib": "glibc", "version": "2.36"}},
        "system": {"name": "Linux", "release": "6.1"},
        "cpu": "x86_64",
    }
)


def numpy_like_files(count: int = 4415) -> list[UpstreamFile]:
    """Realistic names, hashes and keys, the shape of the real numpy page."""
    platforms = [
        "manylinux_2_17_x86_64.manylinux2014_x86_64",
        "manylinux_2_17_aarch64.manylinux2014_aarch64",
        "musllinux_1_1_x86_64", "macosx_10_9_x86_64", "macosx_11_0_arm64", "win_amd64", "win32",
    ]  # fmt: skip
    files = []
    i = 0
    while len(files) < count:
        version = f"1.{i // 60}.{i % 60}"
        for py in ("cp39", "cp310", "cp311", "cp312", "cp313"):
            for platform in platforms:
                name = f"numpy-{version}-{py}-{py}-{platform}.whl"
                digest = hashlib.sha256(name.encode()).hexdigest()
                files.append(
                    UpstreamFile(
                        name,
                        b"x",
                        extra={
                            "hashes": {"sha256": digest},
                            "requires-python": ">=3.9",
                            "size": 15_000_000 + i,
                            "upload-time": "2024-06-16T12:34:56.789012Z",
                            "core-metadata": {"sha256": digest[::-1]},
                            "dist-info-metadata": {"sha256": digest[::-1]},
                        },
                    )
                )
        files.append(UpstreamFile(f"numpy-{version}.tar.gz", b"x", extra={"size": 1}))
        i += 1
    return files[:count]


def wrk(url: str, seconds: int, connections: int, headers: dict[str, str]) -> dict[str, float]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for key, value in headers.items():
        command += ["-H", f"{key}: {value}"]
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    transfer = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out)
    assert transfer is not None
    scale = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9}[transfer.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"{url}: {errors.group(1)} error responses\n{out}")
    return {"rps": rps, "mb_s": float(transfer.group(1)) * scale / 1e6}


STATIC = """
sendfile on;
tcp_nopush on;
gzip_static on;
default_type application/octet-stream;
types {{ {json} json; }}
server {{
    listen 127.0.0.1:{{port}};
    root {root};
    index index.json;
}}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--file-mb", type=int, default=1024)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="hostfit-bench-"))
    work.chmod(0o755)  # nginx workers drop root privileges and must read the files
    results: dict[str, dict[str, float]] = {}
    try:
        big = work / "big-1.0.tar.gz"
        with big.open("wb") as handle:
            chunk = os.urandom(1024 * 1024)
            for _ in range(args.file_mb):
                handle.write(chunk)
        with Upstream() as upstream:
            for item in numpy_like_files():
                upstream.add("numpy", item)
            big_item = upstream.add("big", UpstreamFile.from_path(big, in_memory=False))
            cache = work / "cache"
            proxy = ProxyProcess(
                "--upstream", upstream.url, "--workers", str(args.workers),
                "--page-ttl", "3600", cache_dir=cache,
            ).start()  # fmt: skip
            try:
                page_url = proxy.url + "simple/numpy/"
                file_url = proxy.url + f"files/big/{big.name}"
                # Warm both caches, and take the exact bytes hostfit serves for nginx.
                page = httpx.get(page_url, headers={"Accept": PIP_ACCEPT})
                gz = httpx.get(page_url, headers={"Accept": PIP_ACCEPT, "Accept-Encoding": "gzip"})
                pip_headers = {
                    "Accept": PIP_ACCEPT, "Accept-Encoding": "gzip", "User-Agent": PIP_AGENT,
                }  # fmt: skip
                filtered = httpx.get(page_url, headers=pip_headers)
                with httpx.stream("GET", file_url, timeout=300) as response:
                    for _ in response.iter_raw():
                        pass
                root = work / "www"
                (root / "simple" / "numpy").mkdir(parents=True)
                (root / "simple" / "numpy" / "index.json").write_bytes(page.content)
                (root / "simple" / "numpy" / "index.json.gz").write_bytes(
                    gzip.compress(page.content, mtime=0)
                )
                (root / "simple" / "filtered").mkdir(parents=True)
                (root / "simple" / "filtered" / "index.json").write_bytes(filtered.content)
                (root / "simple" / "filtered" / "index.json.gz").write_bytes(
                    gzip.compress(filtered.content, mtime=0)
                )
                (root / "files").mkdir()
                os.link(big, root / "files" / big.name)
                assert gz.headers["content-encoding"] == "gzip"
                assert big_item.sha256

                static = STATIC.format(json=JSON_V1, root=root)
                nginx = Nginx(work / "nginx", static, workers=args.workers).start()
                try:
                    nginx_page = nginx.url + "simple/numpy/"
                    nginx_file = nginx.url + f"files/{big.name}"
                    cases = [
                        ("page, identity", page_url, nginx_page, {"Accept": PIP_ACCEPT}, 16),
                        (
                            "page, gzip",
                            page_url,
                            nginx_page,
                            {"Accept": PIP_ACCEPT, "Accept-Encoding": "gzip"},
                            16,
                        ),
                        (
                            "page, for pip",
                            page_url,
                            nginx.url + "simple/filtered/",
                            pip_headers,
                            16,
                        ),
                        ("file, cached", file_url, nginx_file, {}, 2),
                    ]
                    for name, ours, theirs, headers, connections in cases:
                        results[name] = {}
                        for server, url in (("nginx", theirs), ("hostfit", ours)):
                            figures = wrk(url, args.seconds, connections, headers)
                            for key, value in figures.items():
                                results[name][f"{server}_{key}"] = value
                finally:
                    nginx.stop()
                results["memory"] = {"hostfit_peak_rss_mb": proxy.memory("VmHWM") / 2**20}
            finally:
                proxy.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"page: {len(page.content) / 1e6:.2f} MB, {gz.num_bytes_downloaded / 1e6:.2f} MB gzipped;"
        f" file: {args.file_mb} MiB; workers: {args.workers}; {args.seconds}s per run"
    )
    kept = len(filtered.json()["files"])
    print(f"'page, for pip': filtered for a pip User-Agent (cp311, glibc 2.36): {kept} files")
    print(f"{'case':<16}{'nginx':>14}{'hostfit':>14}{'ratio':>9}")
    for name, figures in results.items():
        if name == "memory":
            continue
        unit = "rps" if name.startswith("page") else "mb_s"
        label = "req/s" if unit == "rps" else "MB/s"
        ours, theirs = figures[f"hostfit_{unit}"], figures[f"nginx_{unit}"]
        print(f"{name:<16}{theirs:>9.0f} {label:<5}{ours:>8.0f} {label:<5}{ours / theirs:>8.2f}")
    print(f"hostfit peak RSS: {results['memory']['hostfit_peak_rss_mb']:.0f} MiB")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
