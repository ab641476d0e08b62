"""Run hostfit for tests: in this process under a real uvicorn server, or as `hostfit serve`."""

from __future__ import annotations

import fcntl
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType

import httpx
import uvicorn

from proxy.edge.app import build_app
from proxy.edge.config import Settings

ROOT = Path(__file__).resolve().parents[2]


# Ports handed out by `free_port`. A port taken with bind(("", 0)) and released for a
# server to bind later could be handed to another test process meanwhile: its server
# then failed to bind, and the readiness check found the first one's /readyz, so a test
# ran against another test's proxy (a 404 for its project, once in CI). So ports come
# from outside the kernel's ephemeral range (where neither bind(0) nor an outgoing
# connection's source port takes them), and each is claimed for the life of the process
# with a lock file: no other process on the machine (the other xdist worker, the
# benchmark, a second run) is handed it, whatever its environment.
PORT_RANGE = 10_000
_PORT_LOCKS = Path(tempfile.gettempdir()) / f"hostfit-test-ports-{os.getuid()}"
_claimed: dict[int, int] = {}  # port -> the fd of its lock file, held until exit
_port_lock = threading.Lock()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def port_range() -> range:
    """Below the ephemeral range, or above it where there is no room below."""
    low, high = _ephemeral_range()
    if low - PORT_RANGE >= 1024:
        return range(low - PORT_RANGE, low)
    if high + PORT_RANGE <= 65535:
        return range(high + 1, high + 1 + PORT_RANGE)
    return range(1024, max(low, 1025)) if low - 1024 >= 65535 - high else range(high + 1, 65536)


def free_port() -> int:
    """A port that binds now, claimed for this process: never handed out again, here or
    to another process, while this one lives."""
    ports = port_range()
    first = random.randrange(len(ports))  # processes start apart: few lock files tried
    _PORT_LOCKS.mkdir(exist_ok=True)
    with _port_lock:
        for step in range(len(ports)):
            port = ports[(first + step) % len(ports)]
            if port in _claimed:
                continue
            fd = os.open(_PORT_LOCKS / str(port), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # another process's
                os.close(fd)
                continue
            if not _binds(port):
                os.close(fd)  # and with it the lock
                continue
            _claimed[port] = fd
            return port
    raise RuntimeError(f"no free port in {ports.start}-{ports.stop - 1}")


def _binds(port: int) -> bool:
    with socket.socket() as sock:
        # As uvicorn binds: a port whose last connection is in TIME_WAIT is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


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
