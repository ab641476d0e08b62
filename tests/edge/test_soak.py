"""The soak (issue 10): many clients at once, faults at random, a cache that must evict.

A real `hostfit serve` with a cache budget smaller than the files it serves, in front of
a local upstream holding a few projects (pure and compiled wheels, sdists; a few hundred
KB to a few MB). Clients ask at once for pages (plain, universal and for a host profile;
JSON and HTML), whole files (some for the host profile, so that the analysis and the
download gate run), byte ranges and .metadata, now and then twenty first requests for
one file at once, while the upstream misbehaves on a random share of its answers: 500,
502, 503, 504, a hang, a drip, a body cut short, a flipped byte, a Content-Length that
lies.

Every answer must be right (a page lists only the index's files, with their sha256; a
complete body is the file's bytes, or the range's) or fail plainly (502, 503 or 504 with
a message; a transfer cut before its Content-Length): never a wrong byte in a complete
transfer, never a 500, never a request left hanging. Then the faults stop, and: every
cached blob hashes to its name and is a file or .metadata of the index, every state
record agrees with the index, no temp file is left, the cache is within its budget and
eviction ran, a last round of requests all succeed, and the log holds no traceback.

Bounded: HOSTFIT_SOAK_SECONDS seconds of faults (default 30, about 40 s in all; set it
higher for a longer soak),
CLIENTS threads, loopback only. Seeded by HOSTFIT_SOAK_SEED: the files, the faults and
the clients' choices; how they interleave is the scheduler's, so the asserts are on
invariants, never on timings; only that each fault did happen (in runs of 30 s or more).

Left out of the faults: flipped bytes in an answer to a Range request. Analysis reads a
wheel by ranges, and no part of a file can be checked against the whole file's sha256,
so a report made from flipped bytes could be wrong; an upstream that serves other bytes
than it lists is no different from one that lists another wheel.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import platform
import random
import sqlite3
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from proxy.core.negotiate import JSON_V1
from proxy.edge.layers.page_cache import Entry
from proxy.edge.reports import decode
from tests.edge.fault_checks import assert_cache_sound, assert_no_traceback, captured
from tests.support.proxy import ProxyProcess
from tests.support.upstream import DeliberateTruncation, Upstream
from tests.support.wheels import WheelSpec, build_sdist, build_wheel, extension_wheel

SECONDS = float(os.environ.get("HOSTFIT_SOAK_SECONDS", "30"))
SEED = int(os.environ.get("HOSTFIT_SOAK_SEED", "10"))
CLIENTS = 12
BURST = 20  # first requests for one file at once, now and then
BUDGET = 3 * 1024 * 1024  # the files add up to about 7.4 MiB, the largest to 2.4 MiB
FILE_DEADLINE = 12  # seconds; some drips take longer
PAGE_DEADLINE = 5
READ_TIMEOUT = 3  # the server's, per read: some hangs last longer
OP_LIMIT = 100.0  # seconds any one request may take, whatever the faults: deadlines hold
# A host this machine is: every compiled wheel built here fits it.
HOST = (
    f"python={sys.version_info.major}.{sys.version_info.minor},impl=cp,"
    f"arch={platform.machine()},libc=glibc-{platform.libc_ver()[1]}"
)
ROUTES = {"plain": "", "universal": "universal/", "host": f"p/{HOST}/"}
# Per upstream answer: the fault and its weight. "flip" and "short" only where a hash
# checks every byte (whole files and .metadata); elsewhere they pass untouched.
FAULTS = {
    "pass": 50,
    "500": 5,
    "502": 3,
    "503": 8,
    "504": 3,
    "hang": 6,
    "drip": 6,
    "cut": 8,
    "flip": 6,
    "short": 5,
}
WHOLE_ONLY = {"flip", "short"}
PLAIN_FAILURES = {502, 503, 504}


@dataclass(frozen=True)
class Known:
    """A file as the index lists it."""

    project: str
    filename: str
    data: bytes
    metadata: bytes | None
    compiled: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def metadata_sha256(self) -> str | None:
        return None if self.metadata is None else hashlib.sha256(self.metadata).hexdigest()


def build_index(out: Path, rng: random.Random) -> list[Path]:
    """Pure and compiled wheels and sdists, 50 KB to 2.5 MB, random (incompressible)."""

    def blob(size: int) -> bytes:
        return rng.randbytes(size)

    def pure(name: str, version: str, size: int) -> Path:
        files = {f"{name}/__init__.py": b"", f"{name}/data.bin": blob(size)}
        return build_wheel(WheelSpec(name, version, files=files), out)

    def compiled(name: str, version: str, size: int) -> Path:
        return extension_wheel(name, version, out, files={f"{name}_data.bin": blob(size)})

    def sdist(name: str, version: str, size: int) -> Path:
        return build_sdist(name, version, out, files={f"{name}/data.bin": blob(size)})

    return [
        pure("alpha", "1.0", 400_000),
        pure("alpha", "1.1", 900_000),
        sdist("alpha", "1.1", 600_000),
        compiled("beta", "1.0", 300_000),
        compiled("beta", "2.0", 1_200_000),
        sdist("beta", "2.0", 300_000),
        pure("gamma", "3.0", 2_500_000),
        sdist("gamma", "3.0", 1_500_000),
        compiled("delta", "0.1", 50_000),
    ]


# --- the misbehaving upstream -----------------------------------------------------------


class Chaos:
    """Outermost ASGI layer of the test upstream: a seeded random fault per request."""

    def __init__(self, app: ASGIApp, seed: int) -> None:
        self.app = app
        self.random = random.Random(seed)  # used on the upstream's event loop only
        self.on = False
        self.injected: Counter[str] = Counter()
        self._kinds = list(FAULTS)
        self._weights = list(FAULTS.values())

    def _choose(self, scope: Scope) -> str:
        if not self.on:
            return "pass"
        kind = self.random.choices(self._kinds, self._weights)[0]
        ranged = any(name.lower() == b"range" for name, _ in scope["headers"])
        whole = scope["path"].startswith("/files/") and not ranged
        if kind in WHOLE_ONLY and not whole:
            return "pass"
        if kind != "pass":
            where = "page" if scope["path"].startswith("/simple/") else "file"
            self.injected[kind] += 1
            self.injected[f"{kind} on a {where}"] += 1
        return kind

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        kind = self._choose(scope)
        if kind.isdigit():
            await _plain(send, int(kind), f"{kind} injected by the soak")
            return
        if kind == "hang":
            await asyncio.sleep(self.random.uniform(1.0, 6.0))
        if kind in ("pass", "hang"):
            await self.app(scope, receive, send)
            return
        start, body = await captured(self.app, scope, receive)
        if start["status"] not in (200, 206) or not body:
            await send(start)
            await send({"type": "http.response.body", "body": body})
            return
        if kind == "flip":
            flipped = bytearray(body)
            flipped[self.random.randrange(len(body))] ^= 1 << self.random.randrange(8)
            body = bytes(flipped)
        elif kind == "short":
            body = body[: len(body) - self.random.randint(1, min(len(body), 50_000))]
            start["headers"] = [h for h in start["headers"] if h[0].lower() != b"content-length"]
            start["headers"].append((b"content-length", str(len(body)).encode()))
        await send(start)
        if kind == "cut":
            cut = self.random.randrange(len(body))
            await send({"type": "http.response.body", "body": body[:cut], "more_body": True})
            raise DeliberateTruncation(scope["path"])
        if kind == "drip":
            seconds = self.random.uniform(1.0, 20.0 if scope["path"].startswith("/files/") else 8.0)
            await _drip(send, receive, body, seconds)
            return
        await send({"type": "http.response.body", "body": body})


async def _plain(send: Send, status: int, text: str) -> None:
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(text)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": text.encode()})


async def _drip(send: Send, receive: Receive, body: bytes, seconds: float) -> None:
    """The body in pieces, one every 0.1 s, over about ``seconds``; stops if the reader
    goes."""
    gone = asyncio.Event()

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        gone.set()

    watcher = asyncio.ensure_future(watch())
    try:
        step = max(1, int(len(body) / (seconds / 0.1)))
        for at in range(0, len(body), step):
            if gone.is_set():
                return
            piece = body[at : at + step]
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            await asyncio.sleep(0.1)
        await send({"type": "http.response.body", "body": b""})
    finally:
        watcher.cancel()


# --- the clients ---------------------------------------------------------------------


@dataclass
class Tally:
    """What the clients saw: outcomes by kind, and every broken promise."""

    outcomes: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def saw(self, outcome: str) -> None:
        with self.lock:
            self.outcomes[outcome] += 1

    def broken(self, what: str) -> None:
        with self.lock:
            self.violations.append(what)


class Links(HTMLParser):
    """(file name, sha256 from the link's fragment) of every anchor of a PEP 503 page."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str]] = []
        self._href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href = dict(attrs).get("href") or ""

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self.found.append((data, self._href.partition("#sha256=")[2]))
            self._href = None


class Client:
    def __init__(self, base: str, files: list[Known], tally: Tally, seed: int) -> None:
        self.base = base
        self.files = files
        self.by_name = {f.filename: f for f in files}
        self.projects = sorted({f.project for f in files})
        self.tally = tally
        self.random = random.Random(seed)
        self.http = httpx.Client(timeout=httpx.Timeout(OP_LIMIT, connect=10))

    def run(self, until: float) -> None:
        ops: list[tuple[Callable[[], None], float]] = [
            (self.page, 0.35),
            (self.file, 0.45),
            (self.metadata, 0.13),
            (self.root, 0.05),
            (self.burst, 0.02),
        ]
        with self.http:
            while time.monotonic() < until:
                op = self.random.choices([o for o, _ in ops], [w for _, w in ops])[0]
                started = time.monotonic()
                try:
                    op()
                except httpx.HTTPError as exc:  # no answer at all, or a stuck one
                    self.tally.broken(f"{op.__name__}: {type(exc).__name__}: {exc}")
                except Exception as exc:  # a check that could not run is a failure too
                    self.tally.broken(f"{op.__name__}: {type(exc).__name__}: {exc!r}")
                spent = time.monotonic() - started
                if spent > OP_LIMIT:
                    self.tally.broken(f"{op.__name__} took {spent:.0f} s")

    def failed_plainly(self, what: str, response: httpx.Response) -> None:
        text = response.text
        if response.status_code in PLAIN_FAILURES and text.strip() and "Traceback" not in text:
            self.tally.saw(f"{what}: {response.status_code}")
        else:
            self.tally.broken(f"{what}: {response.status_code} {text[:300]!r}")

    def root(self) -> None:
        response = self.http.get(self.base + "simple/", headers={"Accept": JSON_V1})
        if response.status_code != 200:
            self.failed_plainly("root", response)
            return
        names = {p["name"] for p in response.json()["projects"]}
        if names != set(self.projects):
            self.tally.broken(f"root lists {sorted(names)}")
        self.tally.saw("root: ok")

    def page(self) -> None:
        project = self.random.choice(self.projects)
        route = self.random.choice(list(ROUTES))
        as_json = self.random.random() < 0.5
        accept = JSON_V1 if as_json else "text/html"
        url = f"{self.base}{ROUTES[route]}simple/{project}/"
        response = self.http.get(url, headers={"Accept": accept})
        what = f"page {route} {'json' if as_json else 'html'}"
        if response.status_code != 200:
            self.failed_plainly(what, response)
            return
        if as_json:
            listed = [(f["filename"], f["hashes"]["sha256"]) for f in response.json()["files"]]
        else:
            links = Links()
            links.feed(response.text)
            listed = links.found
        for filename, sha256 in listed:
            known = self.by_name.get(filename)
            if known is None or known.project != project or known.sha256 != sha256:
                self.tally.broken(f"{what} {project}: lists {filename} with sha256 {sha256}")
        everything = {f.filename for f in self.files if f.project == project}
        if route == "universal" and {name for name, _ in listed} != everything:
            self.tally.broken(f"{what} {project}: lists {sorted(n for n, _ in listed)}")
        self.tally.saw(f"{what}: {'stale' if 'warning' in response.headers else 'ok'}")

    def file(self) -> None:
        known = self.random.choice(self.files)
        route = self.random.choice(list(ROUTES))
        url = f"{self.base}{ROUTES[route]}files/{known.project}/{known.filename}"
        size = len(known.data)
        headers, expected, what = {}, known.data, f"file {route}"
        first = last = 0
        if self.random.random() < 0.25:
            first = self.random.randrange(size)
            last = min(size - 1, first + self.random.randrange(1, 300_000))
            headers["Range"] = f"bytes={first}-{last}"
            expected, what = known.data[first : last + 1], f"range {route}"
        with self.http.stream("GET", url, headers=headers) as response:
            if response.status_code not in (200, 206):
                response.read()
                self.failed_plainly(what, response)
                return
            if response.status_code == 200:
                expected = known.data  # a range may be answered whole
            declared = int(response.headers["content-length"])
            received = bytearray()
            try:
                for chunk in response.iter_raw():
                    received += chunk
            except (httpx.RemoteProtocolError, httpx.ReadError):
                if len(received) >= declared:
                    self.tally.broken(f"{what} {known.filename}: cut after every byte")
                self.tally.saw(f"{what}: cut short")
                return
        span = response.headers.get("content-range")
        if response.status_code == 206 and span != f"bytes {first}-{last}/{size}":
            self.tally.broken(f"{what} {known.filename} {headers}: complete, {span}")
            return
        if bytes(received) != expected:
            self.tally.broken(
                f"{what} {known.filename}: {len(received)} wrong bytes served as complete"
            )
            return
        self.tally.saw(f"{what}: ok")

    def burst(self) -> None:
        """BURST first requests at once for one file: whatever befalls its one download,
        each follower gets the whole file or a cut transfer."""
        known = self.random.choice(self.files)
        route = self.random.choice(list(ROUTES))
        url = f"{self.base}{ROUTES[route]}files/{known.project}/{known.filename}"

        async def one(http: httpx.AsyncClient) -> None:
            try:
                async with http.stream("GET", url) as response:
                    if response.status_code != 200:
                        await response.aread()
                        self.failed_plainly(f"burst {route}", response)
                        return
                    body = b"".join([chunk async for chunk in response.aiter_raw()])
            except (httpx.RemoteProtocolError, httpx.ReadError):
                self.tally.saw(f"burst {route}: cut short")
                return
            if body != known.data:
                self.tally.broken(f"burst {route} {known.filename}: wrong bytes as complete")
                return
            self.tally.saw(f"burst {route}: ok")

        async def all_at_once() -> None:
            limits = httpx.Limits(max_connections=BURST)
            timeout = httpx.Timeout(OP_LIMIT, connect=10)
            async with httpx.AsyncClient(timeout=timeout, limits=limits) as http:
                await asyncio.gather(*(one(http) for _ in range(BURST)))

        asyncio.run(all_at_once())

    def metadata(self) -> None:
        known = self.random.choice([f for f in self.files if f.metadata is not None])
        url = f"{self.base}files/{known.project}/{known.filename}.metadata"
        response = self.http.get(url)
        if response.status_code != 200:
            self.failed_plainly("metadata", response)
            return
        if response.content != known.metadata:
            self.tally.broken(f"metadata of {known.filename}: {response.content[:200]!r}")
            return
        self.tally.saw("metadata: ok")


# --- the soak ------------------------------------------------------------------------


@pytest.mark.heavy
@pytest.mark.timeout(int(SECONDS) + 300)
def test_soak(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    built = build_index(tmp_path / "dist", rng)
    server = Upstream()
    chaos = Chaos(server.app, SEED + 1)
    server.app = chaos
    cache = tmp_path / "cache"
    tally = Tally()
    with server:
        files = []
        for path in built:
            project = path.name.split("-")[0]
            item = server.add(project, path)
            files.append(
                Known(project, path.name, item.data(), item.metadata, "linux_" in path.name)
            )
        assert sum(len(f.data) for f in files) > 2 * BUDGET > 2 * max(len(f.data) for f in files)
        args = (
            "--upstream", server.url, "--page-ttl", "1", "--cache-max-size", str(BUDGET),
            "--file-deadline", str(FILE_DEADLINE), "--upstream-deadline", str(PAGE_DEADLINE),
        )  # fmt: skip
        env = {"HOSTFIT_UPSTREAM_TIMEOUT": str(READ_TIMEOUT)}
        with ProxyProcess(*args, cache_dir=cache, env=env) as proxy:
            chaos.on = True
            until = time.monotonic() + SECONDS
            clients = [Client(proxy.url, files, tally, SEED + 100 + i) for i in range(CLIENTS)]
            threads = [threading.Thread(target=c.run, args=(until,)) for c in clients]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(SECONDS + 2 * OP_LIMIT)
            assert not any(t.is_alive() for t in threads), "a client is stuck"
            chaos.on = False
            settle(proxy)
            final_round(proxy, files, tally)
            check_state(proxy, cache, files)
        log = proxy.output()
    summary = f"outcomes: {dict(sorted(tally.outcomes.items()))}\ninjected: {dict(chaos.injected)}"
    assert not tally.violations, "\n".join([*tally.violations[:30], summary])
    assert_no_traceback(log)
    if SECONDS < 30:
        return
    # The soak did what it says: every fault was injected, answers of each kind came back
    # right and some failed plainly.
    assert all(chaos.injected[kind] for kind in FAULTS if kind != "pass"), summary
    for kind in ("page plain json", "page host html", "file host", "range plain", "metadata"):
        assert tally.outcomes[f"{kind}: ok"], summary
    assert sum(n for k, n in tally.outcomes.items() if not k.endswith(": ok")), summary
    print(summary)


def metrics(proxy: ProxyProcess) -> dict[str, float]:
    text = httpx.get(proxy.url + "metrics", timeout=30).text
    return {
        line.rpartition(" ")[0]: float(line.rpartition(" ")[2])
        for line in text.splitlines()
        if line.startswith("hostfit_")
    }


def settle(proxy: ProxyProcess) -> None:
    """Until no download is running (abandoned ones linger for 10 s)."""
    deadline = time.monotonic() + 60
    while metrics(proxy)["hostfit_file_downloads_active"]:
        assert time.monotonic() < deadline, "downloads still running a minute after the soak"
        time.sleep(0.2)
    time.sleep(1.5)  # past the page TTL: stale pages are asked for again


def patiently(http: httpx.Client, url: str, **kwargs: object) -> httpx.Response:
    """As an installer would: a 503 with Retry-After (the gate, while an analysis that
    met a fault is due again) is asked again once, after that wait."""
    response = http.get(url, **kwargs)  # type: ignore[arg-type]
    wait = response.headers.get("retry-after", "")
    if response.status_code == 503 and wait.isdigit():
        time.sleep(int(wait))
        response = http.get(url, **kwargs)  # type: ignore[arg-type]
    return response


def final_round(proxy: ProxyProcess, files: list[Known], tally: Tally) -> None:
    """With the upstream well again, everything is served right."""
    with httpx.Client(timeout=60) as http:
        for project in sorted({f.project for f in files}):
            page = http.get(proxy.url + f"universal/simple/{project}/", headers={"Accept": JSON_V1})
            assert page.status_code == 200 and "warning" not in page.headers, page.headers
            listed = {f["filename"]: f["hashes"]["sha256"] for f in page.json()["files"]}
            assert listed == {f.filename: f.sha256 for f in files if f.project == project}
        for known in files:
            for route in ROUTES.values():
                url = proxy.url + f"{route}files/{known.project}/{known.filename}"
                response = patiently(http, url)
                assert response.status_code == 200, (url, response.text)
                assert response.content == known.data, url
            if known.metadata is not None:
                url = proxy.url + f"files/{known.project}/{known.filename}.metadata"
                assert http.get(url).content == known.metadata
        # Every compiled wheel fits the host: its report says so, and nothing refused it.
        for known in files:
            if known.compiled:
                explained = http.get(
                    proxy.url + f"explain/{known.project}/",
                    params={"profile": HOST, "format": "json"},
                ).json()
                entry = next(f for f in explained["files"] if f["filename"] == known.filename)
                assert entry["status"] == "kept" and entry["report"] == "ok", entry
    tally.saw("final round: ok")


def check_state(proxy: ProxyProcess, cache: Path, files: list[Known]) -> None:
    """The cache and the state store hold nothing the index does not say."""
    by_sha = {f.sha256: f for f in files}
    metadata = {f.metadata_sha256 for f in files if f.metadata_sha256}
    held = assert_cache_sound(cache)  # no temp file; every blob hashes to its name
    assert set(held) <= set(by_sha) | metadata, set(held) - set(by_sha) - metadata
    figures = metrics(proxy)
    assert figures["hostfit_cache_bytes"] <= BUDGET
    assert figures["hostfit_cache_evictions_total"] > 0
    with sqlite3.connect(cache / "state" / "state.sqlite3") as db:
        rows = db.execute("SELECT key, value FROM kv").fetchall()
    for key, value in rows:
        kind, _, rest = key.partition(":")
        if kind == "file":
            record = json.loads(value)
            assert record == {"filename": by_sha[rest].filename, "size": len(by_sha[rest].data)}
        elif kind == "metadata":
            assert bytes(value).decode() == by_sha[rest].metadata_sha256, key
        elif kind == "report":
            report = decode(bytes(value))
            assert report is not None and report.status == "ok", (key, report)
            assert by_sha[rest].filename.endswith(".whl"), key
        elif kind == "page":
            page = Entry.decode(bytes(value), "").page
            assert page is not None
            for f in page.files:
                assert by_sha[f.sha256 or ""].filename == f.filename, key
