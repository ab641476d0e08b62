"""The fault tests' shared parts (issue 10): an upstream that misbehaves on command
(`Faults`, the ``faulty`` fixture in tests/edge/conftest.py), a server to run against it
(`serve`), and what must hold after every fault: nothing corrupt cached, no temp file
left, no traceback in the log."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import logging
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from proxy.core.pages import unusable_filename
from proxy.edge.layers.page_cache import Entry
from tests.support.proxy import ProxyProcess
from tests.support.upstream import DeliberateTruncation

# uvicorn's own loggers do not propagate to the root logger, where pytest listens.
WATCHED = ("", "uvicorn", "uvicorn.error", "uvicorn.asgi")


class LogWatch(logging.Handler):
    """Every record of the proxy and of the server running it, tracebacks included."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self) -> str:
        return "\n".join(record.getMessage() for record in self.records)

    def tracebacks(self) -> list[str]:
        return [
            f"{record.name}: {record.getMessage()}"
            for record in self.records
            if record.exc_info is not None or "Traceback" in record.getMessage()
        ]


@contextmanager
def watch_logs() -> Iterator[LogWatch]:
    watch = LogWatch()
    loggers = [logging.getLogger(name) for name in WATCHED]
    hostfit = logging.getLogger("hostfit")
    level = hostfit.level
    for logger in loggers:
        logger.addHandler(watch)
    hostfit.setLevel(logging.INFO)
    try:
        yield watch
    finally:
        for logger in loggers:
            logger.removeHandler(watch)
        hostfit.setLevel(level)


def assert_cache_sound(cache_dir: Path) -> list[str]:
    """No temp file; every blob's bytes hash to its name. Returns the blobs' digests."""
    files = cache_dir / "files"
    leftovers = list((files / "tmp").iterdir()) if (files / "tmp").exists() else []
    assert not leftovers, f"temp files left: {leftovers}"
    digests = []
    for blob in (files / "sha256").rglob("*"):
        if blob.is_file():
            digest = hashlib.sha256()
            with blob.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            assert digest.hexdigest() == blob.name, f"corrupt blob cached: {blob}"
            digests.append(blob.name)
    return digests


def assert_no_traceback(text: str) -> None:
    assert "Traceback" not in text, text[-4000:]


class Faults:
    """Outermost ASGI layer of the test upstream: faults on command, by exact request path."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.statuses: dict[str, list[int]] = {}  # answered, one per request, before passing on
        self.retry_after: str | None = None  # sent with those statuses
        self.cut: dict[str, int] = {}  # this many next answers stop halfway (connection dropped)
        self.drip: dict[str, float] = {}  # the body sent one byte per this many seconds
        self.headers: dict[str, list[tuple[bytes, bytes]]] = {}  # raw headers put in instead
        self.body: dict[str, Callable[[bytes], bytes]] = {}  # a 200's body made of the real one
        # Paths whose 200s are gzipped on the way when the request accepts gzip, as a
        # server with gzip on for every type (or a CDN) does.
        self.gzip_when_asked: set[str] = set()
        self.prefix = ""  # a path prefix taken off before routing (a non-ASCII upstream URL)
        self.seen: list[str] = []

    def count(self, path: str) -> int:
        return self.seen.count(path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if self.prefix and path.startswith(self.prefix):
            path = path[len(self.prefix) :]
            scope = {**scope, "path": path, "raw_path": quote(path).encode()}
        self.seen.append(path)
        pending = self.statuses.get(path)
        if pending:
            status = pending.pop(0)
            headers = [(b"content-type", b"text/plain")]
            if self.retry_after is not None:
                headers.append((b"retry-after", self.retry_after.encode()))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": f"{status} injected".encode()})
            return
        coded = path in self.gzip_when_asked and _accepts_gzip(scope)
        if not (
            coded
            or path in self.drip
            or self.cut.get(path)
            or path in self.headers
            or path in self.body
        ):
            await self.app(scope, receive, send)
            return
        start, body = await captured(self.app, scope, receive)
        made = self.body.get(path, gzip.compress if coded else None)
        if made is not None and start["status"] == 200:
            body = made(body)
            start["headers"] = [h for h in start["headers"] if h[0].lower() != b"content-length"]
            start["headers"].append((b"content-length", str(len(body)).encode()))
            if coded:
                start["headers"].append((b"content-encoding", b"gzip"))
        replaced = self.headers.get(path, [])
        names = {name for name, _ in replaced}
        start["headers"] = [h for h in start["headers"] if h[0].lower() not in names] + replaced
        await send(start)
        if self.cut.get(path):
            self.cut[path] -= 1
            await send(
                {"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True}
            )
            raise DeliberateTruncation(path)
        delay = self.drip.get(path)
        if delay is None:
            await send({"type": "http.response.body", "body": body})
            return
        try:
            for i in range(len(body)):
                await send(
                    {"type": "http.response.body", "body": body[i : i + 1], "more_body": True}
                )
                await asyncio.sleep(delay)
            await send({"type": "http.response.body", "body": b""})
        except Exception:  # the proxy hung up: the drip ends here
            return


def _accepts_gzip(scope: Scope) -> bool:
    asked = dict(scope["headers"]).get(b"accept-encoding", b"")
    return b"gzip" in asked.lower()


async def captured(app: ASGIApp, scope: Scope, receive: Receive) -> tuple[Message, bytes]:
    messages: list[Message] = []

    async def keep(message: Message) -> None:
        messages.append(message)

    await app(scope, receive, keep)
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return dict(messages[0]), body


def serve(upstream_url: str, cache: Path, *args: str, timeout: float = 30) -> ProxyProcess:
    env = {"HOSTFIT_UPSTREAM_TIMEOUT": str(timeout)}
    return ProxyProcess(
        "--upstream", upstream_url, "--page-ttl", "0", *args, cache_dir=cache, env=env
    )


def state_keys(cache: Path, prefix: str) -> list[str]:
    """The embedded state store's keys under ``prefix``, read as another process would."""
    with sqlite3.connect(cache / "state" / "state.sqlite3") as db:
        rows = db.execute("SELECT key FROM kv WHERE key LIKE ?", (prefix + "%",)).fetchall()
    return [key for (key,) in rows]


def assert_clean(proxy: ProxyProcess, cache: Path) -> None:
    """Nothing corrupt cached, no temp file left, no traceback logged, and no cached page
    holding a file name or digest that could not be served."""
    assert_no_traceback(proxy.output())
    assert_cache_sound(cache)
    with sqlite3.connect(cache / "state" / "state.sqlite3") as db:
        rows = db.execute("SELECT key, value FROM kv WHERE key LIKE 'page:%'").fetchall()
    for key, value in rows:
        entry = Entry.decode(bytes(value), "")
        for f in entry.page.files if entry.page else ():
            assert unusable_filename(f.filename) is None, key
            assert f.sha256 is None or len(f.sha256) == 64, key
