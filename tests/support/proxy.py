"""Run hostfit for tests: in this process under a real uvicorn server, or as `hostfit serve`."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType

import httpx
import uvicorn

from proxy.edge.app import build_app
from proxy.edge.config import Settings

ROOT = Path(__file__).resolve().parents[2]


# Ports handed out by `free_port`: a block per test process, below the kernel's
# ephemeral range. A port taken with bind(("", 0)) and released for a server to bind
# later could be handed to the other xdist worker meanwhile: its server then failed to
# bind, and the readiness check found the first one's /readyz, so a test ran against
# another test's proxy (a 404 for its project, once in CI). Outside the ephemeral range
# neither another worker nor an outgoing connection's source port takes it.
PORT_BLOCK = 500
PORT_BLOCKS = 20  # the last for a process outside xdist (the benchmark)


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _worker_index() -> int:
    """0 for gw0, 1 for gw1...; the last block's for a process outside xdist."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and worker[2:].isdigit():
        index = int(worker[2:])
        if index >= PORT_BLOCKS - 1:
            raise RuntimeError(f"{worker}: at most {PORT_BLOCKS - 1} test processes")
        return index
    return PORT_BLOCKS - 1


_BLOCK_START = _ephemeral_low() - PORT_BLOCK * (PORT_BLOCKS - _worker_index())
_next_port = itertools.count()
_port_lock = threading.Lock()


def free_port() -> int:
    """A port of this process's block that binds now, not handed out before in this
    process (until the block wraps round)."""
    with _port_lock:
        for _ in range(PORT_BLOCK):
            port = _BLOCK_START + next(_next_port) % PORT_BLOCK
            with socket.socket() as sock:
                # As uvicorn binds: a port whose last connection is in TIME_WAIT is free.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError(f"no free port in {_BLOCK_START}-{_BLOCK_START + PORT_BLOCK - 1}")


def wait_ready(
    url: str, timeout: float = 30.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"hostfit exited with {process.returncode} before it was ready")
        try:
            if httpx.get(url + "readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} not ready after {timeout}s")


class ProxyThread:
    """The app under uvicorn in a background thread: real sockets, no subprocess."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = build_app(settings)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def services(self):  # type: ignore[no-untyped-def]
        return self.app.state.services

    def __enter__(self) -> ProxyThread:
        self.thread.start()
        wait_ready(self.url)
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.server.should_exit = True
        self.thread.join(30)


class ProxyProcess:
    """`hostfit serve` as a separate process, as users run it."""

    def __init__(self, *args: str, cache_dir: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.args = [
            sys.executable, "-m", "proxy", "serve", "--port", str(self.port),
            "--cache-dir", str(cache_dir), "--no-access-log", *args,
        ]  # fmt: skip
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None
        self.log = cache_dir.parent / f"hostfit-{self.port}.log"

    def start(self) -> ProxyProcess:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.args, cwd=ROOT, env=self.env, stdout=log, stderr=log
            )
        wait_ready(self.url, process=self.process)
        return self

    def memory(self, field: str = "VmHWM") -> int:
        """Bytes of the server's memory: VmHWM is its peak resident set so far."""
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no {field}")

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def __enter__(self) -> ProxyProcess:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
