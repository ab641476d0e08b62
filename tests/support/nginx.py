"""A real nginx on a free loopback port, configured by the caller's `http { }` body."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType

import httpx

from tests.support.proxy import free_port

CONF = """
{user}
daemon off;
worker_processes {workers};
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    {http}
}}
"""


class Nginx:
    """``http`` may use ``{port}`` for the port nginx must listen on."""

    def __init__(self, work: Path, http: str, workers: int = 1) -> None:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(binary).exists():
            raise RuntimeError("nginx is not installed: run scripts/test to install it")
        self.binary = binary
        self.work = work
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        work.mkdir(parents=True, exist_ok=True)
        self.conf = work / "nginx.conf"
        body = http.replace("{port}", str(self.port))
        # As root, nginx workers would drop to an unprivileged user that cannot read
        # pytest's private temp directories; keep them as the invoking user.
        user = "user root;" if os.geteuid() == 0 else ""
        self.conf.write_text(CONF.format(user=user, workers=workers, work=work, http=body))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Nginx:
        self.process = subprocess.Popen([self.binary, "-c", str(self.conf), "-p", str(self.work)])
        deadline = time.monotonic() + 15
        while True:
            if self.process.poll() is not None:
                log = (self.work / "error.log").read_text(errors="replace")
                raise RuntimeError(f"nginx exited: {log}")
            try:
                httpx.get(self.url, timeout=1)
                return self
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def __enter__(self) -> Nginx:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
