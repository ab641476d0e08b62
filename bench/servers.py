"""The servers a comparison runs side by side, each behind one small interface.

- ``nginx``: the upstream itself, nginx serving the static pages and files directly;
  every proxy below reads from it. Its figures are the 1.00 of every ratio.
- ``nginx-cache``: nginx ``proxy_cache`` in front of the upstream.
- ``proxpi``: installed from the public index into its own environment
  (``bench/.cache/venv-proxpi``, made by ``bench/run``), run as its Docker image runs
  it: gunicorn, one process, two threads.
- ``hostfit``: ``hostfit serve``.
- ``floor``: `floor_proxy`, the least a Python proxy on hostfit's stack does for a cold
  page (fetch, inflate, parse, relink, write, compress); measured on cold pages only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.nginx import Nginx
from tests.support.proxy import ProxyProcess, free_port

JSON_V1 = "application/vnd.pypi.simple.v1+json"
PROXPI_VENV = Path(__file__).resolve().parent / ".cache" / "venv-proxpi"

STATIC = """
sendfile on;
tcp_nopush on;
gzip_static on;
absolute_redirect off;
default_type application/octet-stream;
types {{ {json} json; text/html html; text/plain metadata; }}
map $http_accept $page {{
    default index.html;
    "~application/vnd\\.pypi\\.simple\\.v1\\+json" index.json;
}}
server {{
    listen 127.0.0.1:{{port}};
    root {root};
    location /simple/ {{
        index $page;
        # One header: nginx's cache keys its variants by one Vary line only.
        add_header Vary "Accept, Accept-Encoding";
    }}
}}
"""

CACHE = """
proxy_cache_path {cache} levels=1:2 keys_zone=bench:64m max_size=64g inactive=1d
                 use_temp_path=off;
upstream origin {{
    server 127.0.0.1:{upstream_port};
    keepalive 32;
}}
server {{
    listen 127.0.0.1:{{port}};
    location / {{
        proxy_pass http://origin;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_cache bench;
        proxy_cache_valid 200 301 302 1h;
        proxy_cache_lock on;
    }}
}}
"""


class Server:
    """``index`` is the URL a client gives as ``--index-url``."""

    name: str
    index: str
    # The workloads (result keys) it is measured on; None: every one.
    measures: frozenset[str] | None = None

    def page_url(self, project: str) -> str:
        return f"{self.index}{project}/"

    def pid(self) -> int | None:
        """The server's first process (its workers are its children), None if stopped."""
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


def _cpu_seconds(roots: set[int]) -> float:
    """CPU time (user and system) of these processes and all their descendants."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        ticks[pid] = int(fields[11]) + int(fields[12])

    def counted(pid: int) -> bool:
        for _ in range(64):  # ancestors up to init; bounded against a cycle mid-change
            if pid in roots:
                return True
            if pid not in parents:
                return False
            pid = parents[pid]
        return False

    return sum(t for pid, t in ticks.items() if counted(pid)) / os.sysconf("SC_CLK_TCK")


def quiet(servers: list[Server], limit: float = 60.0) -> float:
    """Wait until no server works on requests a load left behind; the seconds waited.

    A server slower than the load keeps answering the requests wrk had in flight when
    its run ended (proxpi at 64 connections: a core for 4-5 s after a 5 s run), and
    that work fell into the next server's measurement. Quiet: less than 5% of a core
    over half a second, up to ``limit`` seconds."""
    roots = {pid for server in servers if (pid := server.pid()) is not None}
    began = time.monotonic()
    used = _cpu_seconds(roots)
    while time.monotonic() - began < limit:
        time.sleep(0.5)
        now = _cpu_seconds(roots)
        if now - used < 0.025:
            break
        used = now
    return time.monotonic() - began


class NginxServer(Server):
    def __init__(self, name: str, nginx: Nginx) -> None:
        self.name = name
        self.nginx = nginx
        self.base = nginx.url
        self.index = nginx.url + "simple/"

    @classmethod
    def upstream(cls, work: Path, root: Path, workers: int) -> NginxServer:
        """Not started: its port is known, so pages may name it before it runs."""
        conf = STATIC.format(json=JSON_V1, root=root)
        return cls("nginx", Nginx(work, conf, workers=workers))

    @classmethod
    def cache(cls, work: Path, upstream: NginxServer, workers: int) -> NginxServer:
        conf = CACHE.format(cache=work / "cache", upstream_port=upstream.nginx.port)
        return cls("nginx-cache", Nginx(work, conf, workers=workers))

    def start(self) -> NginxServer:
        self.nginx.start()
        return self

    def pid(self) -> int | None:
        return self.nginx.process.pid if self.nginx.process is not None else None

    def stop(self) -> None:
        self.nginx.stop()


class HostfitServer(Server):
    def __init__(self, work: Path, upstream: NginxServer, workers: int) -> None:
        self.name = "hostfit"
        work.mkdir(parents=True, exist_ok=True)
        self.process = ProxyProcess(
            "--upstream", upstream.index, "--workers", str(workers), "--page-ttl", "3600",
            cache_dir=work / "cache",
        )  # fmt: skip
        self.index = self.process.url + "simple/"

    def start(self) -> HostfitServer:
        self.process.start()
        return self

    def pid(self) -> int | None:
        process = self.process.process
        return process.pid if process is not None else None

    def rss(self, field: str = "VmRSS") -> int:
        return self.process.memory(field)

    def stop(self) -> None:
        self.process.stop()


class ProcessServer(Server):
    """A server run as a child process: started, waited for until ``ready_url`` answers
    200 (or it exits), and stopped with SIGTERM, then SIGKILL."""

    process: subprocess.Popen[bytes] | None = None

    def launch(
        self, command: list[str], log: Path, ready_url: str, env: dict[str, str] | None = None
    ) -> None:
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                command, env=env, stdout=out, stderr=out, cwd=log.parent
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(ready_url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} not ready after 30 s")

    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


class FloorServer(ProcessServer):
    measures = frozenset({"cold_median"})

    def __init__(self, work: Path, upstream: NginxServer) -> None:
        self.name = "floor"
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.index = f"http://127.0.0.1:{self.port}/simple/"
        self.command = [
            sys.executable, str(Path(__file__).resolve().parent / "floor_proxy.py"),
            upstream.index, str(self.port),
        ]  # fmt: skip

    def start(self) -> FloorServer:
        self.launch(self.command, self.work / "floor.log", self.index)
        return self


def proxpi_installed() -> bool:
    python = PROXPI_VENV / "bin" / "python"
    if not (PROXPI_VENV / "bin" / "gunicorn").exists() or not python.exists():
        return False
    found = subprocess.run([python, "-c", "import proxpi.server"], capture_output=True)
    return found.returncode == 0


class ProxpiServer(ProcessServer):
    def __init__(self, work: Path, upstream: NginxServer, threads: int = 2) -> None:
        self.name = "proxpi"
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/"
        self.index = self.base + "index/"
        self.env = {
            **os.environ,
            "PROXPI_INDEX_URL": upstream.index,
            "PROXPI_INDEX_TTL": "3600",
            "PROXPI_CACHE_DIR": str(work / "cache"),
            "PROXPI_LOGGING_LEVEL": "WARNING",
        }
        self.command = [
            str(PROXPI_VENV / "bin" / "gunicorn"), "--bind", f"127.0.0.1:{self.port}",
            "--workers", "1", "--threads", str(threads), "proxpi.server:app",
        ]  # fmt: skip

    def start(self) -> ProxpiServer:
        self.launch(self.command, self.work / "proxpi.log", self.base + "health", self.env)
        return self


def have_wrk() -> bool:
    return shutil.which("wrk") is not None
