"""In-memory stand-ins for the unit tier: what sits beyond the transport and the store.

- `FakeIndex`: an upstream index answering through `httpx.MockTransport` (no socket):
  PEP 691 JSON or PEP 503 HTML pages of real files (wheels built by
  `tests.support.wheels`), the files themselves (with ranges and ETags), their
  ``.metadata``, conditional requests; failures are attributes to set.
- `Network`: several fake indexes, one per origin, behind one transport.
- `MemoryStore`: the `StateStore` interface over a dict, expiry by an injected clock.
- `InProcessAnalyzer`: the analysis the worker pool runs (`analyze_wheel`), in a thread
  of this process instead of a worker process; by URL it reads the wheel over the network.

Nothing here stands in for a unit under test: the layers, services and stores run as
they do in the server.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import html
import io
import json
import os
import time
import zipfile
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit

import httpx
from packaging.utils import NormalizedName, canonicalize_name

from proxy.analysis.early import EarlyReport
from proxy.analysis.pool import Early
from proxy.analysis.wheel import analyze_wheel
from proxy.core.negotiate import HTML_V1, JSON_V1
from proxy.core.report import Report

PageFormat = Literal["json", "html"]


class Clock:
    """Time that moves only when told (for TTLs and quarantines)."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class MemoryStore:
    """The state store's contract (`proxy.edge.stores.state.StateStore`) over a dict."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.values: dict[str, tuple[bytes, float | None]] = {}
        self.closed = False

    def _live(self, key: str) -> bytes | None:
        found = self.values.get(key)
        if found is None:
            return None
        value, expires = found
        if expires is not None and expires <= self.clock():
            del self.values[key]
            return None
        return value

    async def get(self, key: str) -> bytes | None:
        return self._live(key)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [self._live(k) for k in keys]

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        self.values[key] = (bytes(value), None if ttl is None else self.clock() + ttl)

    async def add(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        if self._live(key) is not None:
            return False
        await self.set(key, value, ttl)
        return True

    async def delete(self, key: str) -> None:
        self.values.pop(key, None)

    async def ping(self) -> None:
        if self.closed:
            raise ConnectionError("store closed")

    async def close(self) -> None:
        self.closed = True

    def keys(self, prefix: str) -> list[str]:
        return sorted(k for k in self.values if k.startswith(prefix))


@dataclass
class Listed:
    """One file of a fake index: its bytes and the PEP 691 keys beyond name, URL and hashes."""

    filename: str
    data: bytes
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def metadata(self) -> bytes | None:
        """A wheel's METADATA member, as a PEP 658 ``.metadata`` file serves it."""
        if not self.filename.endswith(".whl"):
            return None
        with zipfile.ZipFile(io.BytesIO(self.data)) as archive:
            name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
            return archive.read(name)


class _CutShort(httpx.AsyncByteStream):
    """A body that ends with a connection reset after ``keep`` bytes."""

    def __init__(self, data: bytes, keep: int) -> None:
        self.data = data
        self.keep = keep

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.data[: self.keep]
        raise httpx.ReadError("connection reset by peer")


def _as_sent(response: httpx.Response) -> httpx.Response:
    """As a network transport hands an answer over: its body still to be read. (One made
    with ``content`` comes read already, and hostfit reads page bodies as they were sent.)"""
    if not response.is_stream_consumed:
        return response
    # Its stream is still the bytes it was made with, as they were sent (not decoded).
    return httpx.Response(response.status_code, headers=response.headers, stream=response.stream)


class FakeIndex:
    """An upstream index on one origin, served through `httpx.MockTransport`.

    Pages live at ``/simple/<project>/``, files at ``/files/<filename>`` (absolute
    links on JSON pages, relative ones on HTML pages, so both resolutions are used).
    """

    def __init__(self, origin: str) -> None:
        self.origin = origin.rstrip("/")
        self.projects: dict[NormalizedName, dict[str, Listed]] = {}
        self.spelling: dict[NormalizedName, str] = {}  # names as the root page lists them
        self.requests: list[httpx.Request] = []
        self.answered: list[tuple[str, int]] = []  # (path, status) of every answer
        self.format: PageFormat = "json"
        self.hashes = True  # False: pages give no sha256 (an old mirror)
        self.offer_metadata = True  # PEP 658/714 keys on pages, and the .metadata files
        self.etags = True
        self.etag: bytes | None = None  # the pages' ETag as sent, instead of one made up
        self.gzip = False  # pages gzipped when the request accepts it
        self.coded: set[int] = set()  # statuses of file answers gzipped whatever was asked
        self.ranges = True
        self.delay = 0.0  # seconds before each answer: concurrent askers overlap
        self.status: dict[str, int] = {}  # request path -> status answered instead
        self.fail: dict[str, httpx.HTTPError] = {}  # request path -> raised instead
        self.cut: dict[str, int] = {}  # filename -> bytes its next 200 answer stops after
        self.links: dict[str, str] = {}  # filename -> URL its page entry links instead

    @property
    def url(self) -> str:
        return f"{self.origin}/simple/"

    def file_url(self, filename: str) -> str:
        return f"{self.origin}/files/{quote(filename)}"

    def add(self, project: str, file: Path | Listed, **extra: Any) -> Listed:
        """Add (or replace, by name) a file; keyword extras become PEP 691 keys."""
        listed = file if isinstance(file, Listed) else Listed(file.name, file.read_bytes())
        listed.extra.update({k.replace("_", "-"): v for k, v in extra.items()})
        self.add_project(project)
        self.projects[canonicalize_name(project)][listed.filename] = listed
        return listed

    def add_project(self, project: str) -> None:
        self.spelling.setdefault(canonicalize_name(project), project)
        self.projects.setdefault(canonicalize_name(project), {})

    def remove(self, project: str, filename: str) -> None:
        del self.projects[canonicalize_name(project)][filename]

    def count(self, path_suffix: str, method: str = "GET") -> int:
        return sum(
            1 for r in self.requests if r.method == method and r.url.path.endswith(path_suffix)
        )

    # --- answering -------------------------------------------------------------------

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.delay:
            await asyncio.sleep(self.delay)
        path = unquote(request.url.path)
        response = self._answer(request, path)
        self.answered.append((path, response.status_code))
        return _as_sent(response)

    def _answer(self, request: httpx.Request, path: str) -> httpx.Response:
        if path in self.fail:
            raise self.fail[path]
        if path in self.status:
            return httpx.Response(self.status[path], text=f"HTTP {self.status[path]}")
        if path == "/simple/":
            return self._root(request)
        if path.startswith("/simple/"):
            return self._page(request, path.removeprefix("/simple/").strip("/"))
        if path.startswith("/files/"):
            return self._file(request, path.removeprefix("/files/"))
        return httpx.Response(404)

    def _find(self, filename: str) -> Listed | None:
        for files in self.projects.values():
            if filename in files:
                return files[filename]
        return None

    def _wants_json(self, request: httpx.Request) -> bool:
        return self.format == "json" and JSON_V1 in request.headers.get("accept", "")

    def _conditional(self, request: httpx.Request, body: bytes, media_type: str) -> httpx.Response:
        headers = [(b"content-type", media_type.encode())]
        if self.etags:
            etag = self.etag or f'"{hashlib.sha256(body).hexdigest()[:16]}"'.encode()
            headers.append((b"etag", etag))
            if request.headers.get("if-none-match", "").encode() == etag:
                return httpx.Response(304, headers=headers)
        if self.gzip and "gzip" in request.headers.get("accept-encoding", ""):
            body = gzip.compress(body)
            headers.append((b"content-encoding", b"gzip"))
        return httpx.Response(200, headers=headers, content=body)

    def _root(self, request: httpx.Request) -> httpx.Response:
        names = [self.spelling[key] for key in sorted(self.projects)]
        if self._wants_json(request):
            body = {"meta": {"api-version": "1.1"}, "projects": [{"name": n} for n in names]}
            return self._conditional(request, json.dumps(body).encode(), JSON_V1)
        anchors = "".join(
            f'<a href="{canonicalize_name(n)}/">{html.escape(n)}</a>\n' for n in names
        )
        return self._conditional(request, _document("Simple index", anchors), HTML_V1)

    def _page(self, request: httpx.Request, name: str) -> httpx.Response:
        project = self.projects.get(canonicalize_name(name))
        if project is None:
            return httpx.Response(404, text="404 Not Found")
        if name != canonicalize_name(name):
            return httpx.Response(301, headers={"location": f"/simple/{canonicalize_name(name)}/"})
        entries = [self._entry(f) for f in project.values()]
        if self._wants_json(request):
            page = {"meta": {"api-version": "1.1"}, "name": name, "files": entries}
            return self._conditional(request, json.dumps(page).encode(), JSON_V1)
        anchors = "".join(_anchor(e, relative=f.filename not in self.links)
                          for e, f in zip(entries, project.values(), strict=True))  # fmt: skip
        return self._conditional(request, _document(f"Links for {name}", anchors), HTML_V1)

    def _entry(self, file: Listed) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "filename": file.filename,
            "url": self.links.get(file.filename, self.file_url(file.filename)),
            "hashes": {"sha256": file.sha256} if self.hashes else {},
            "size": len(file.data),
        }
        metadata = file.metadata if self.offer_metadata else None
        if metadata is not None:
            entry["core-metadata"] = {"sha256": hashlib.sha256(metadata).hexdigest()}
        return {**entry, **file.extra}

    def _file(self, request: httpx.Request, name: str) -> httpx.Response:
        if name.endswith(".metadata"):
            wheel = self._find(name.removesuffix(".metadata"))
            metadata = wheel.metadata if wheel is not None and self.offer_metadata else None
            if metadata is None:
                return httpx.Response(404)
            return httpx.Response(200, content=metadata)
        file = self._find(name)
        if file is None:
            return httpx.Response(404)
        data = file.data
        headers = {"content-type": "application/octet-stream", "etag": f'"{file.sha256[:16]}"'}
        if self.ranges:
            headers["accept-ranges"] = "bytes"
        wanted = request.headers.get("range", "")
        if self.ranges and wanted.startswith("bytes="):
            first, _, last = wanted.removeprefix("bytes=").partition("-")
            start, end = int(first), int(last) + 1 if last else len(data)
            headers["content-range"] = f"bytes {start}-{end - 1}/{len(data)}"
            return self._coded(httpx.Response(206, headers=headers, content=data[start:end]))
        headers["content-length"] = str(len(data))
        keep = self.cut.pop(name, None)
        if keep is not None:
            if 200 in self.coded:  # ``keep`` bytes of the gzip
                headers["content-encoding"] = "gzip"
                data = gzip.compress(data)
                headers["content-length"] = str(len(data))
            return httpx.Response(200, headers=headers, stream=_CutShort(data, keep))
        return self._coded(httpx.Response(200, headers=headers, content=data))

    def _coded(self, response: httpx.Response) -> httpx.Response:
        if response.status_code not in self.coded:
            return response
        headers = {**response.headers, "content-encoding": "gzip"}
        headers.pop("content-length", None)
        body = gzip.compress(response.content)
        return httpx.Response(response.status_code, headers=headers, content=body)


def _document(title: str, body: str) -> bytes:
    return (
        "<!DOCTYPE html>\n<html><head>"
        '<meta name="pypi:repository-version" content="1.1">'
        f"<title>{html.escape(title)}</title></head>\n<body>\n{body}</body></html>\n"
    ).encode()


def _anchor(entry: dict[str, Any], *, relative: bool) -> str:
    href = f"../../files/{quote(entry['filename'])}" if relative else entry["url"]
    hashes: dict[str, str] = entry["hashes"]
    if hashes:
        href += "".join(f"#{name}={value}" for name, value in hashes.items())
    attrs = [("href", href)]
    if entry.get("requires-python"):
        attrs.append(("data-requires-python", entry["requires-python"]))
    metadata = entry.get("core-metadata")
    if metadata:
        value = "".join(f"{k}={v}" for k, v in metadata.items())
        attrs += [("data-core-metadata", value), ("data-dist-info-metadata", value)]
    rendered = " ".join(f'{k}="{html.escape(v, quote=True)}"' for k, v in attrs)
    return f"<a {rendered}>{html.escape(entry['filename'])}</a><br/>\n"


class Network:
    """Fake indexes by origin, behind one transport; any other origin refuses to connect."""

    def __init__(self) -> None:
        self.indexes: dict[str, FakeIndex] = {}

    def index(self, origin: str) -> FakeIndex:
        made = FakeIndex(origin)
        self.indexes[made.origin] = made
        return made

    async def handle(self, request: httpx.Request) -> httpx.Response:
        url = urlsplit(str(request.url))
        index = self.indexes.get(f"{url.scheme}://{url.netloc}")
        if index is None:
            raise httpx.ConnectError(f"connection refused: {url.netloc}", request=request)
        return await index.handle(request)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)


class InProcessAnalyzer:
    """`proxy.edge.reports.Analyzer` running the real wheel analysis in a thread."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.calls: list[str] = []  # what was analysed: a path or a URL
        self.gate = asyncio.Event()  # cleared: analyses wait (a slow pool)
        self.gate.set()
        # Cleared: a report by URL waits after its early answer (fat binaries slow to read).
        self.fat_binaries = asyncio.Event()
        self.fat_binaries.set()

    async def analyze_file(
        self, path: str | os.PathLike[str], filename: str, sha256: str
    ) -> Report:
        self.calls.append(os.fspath(path))
        await self.gate.wait()
        data = await asyncio.to_thread(Path(path).read_bytes)
        return await asyncio.to_thread(analyze_wheel, io.BytesIO(data), filename, sha256)

    async def analyze_url(
        self, url: str, filename: str, sha256: str, *, early: Early | None = None
    ) -> Report:
        self.calls.append(url)
        await self.gate.wait()
        response = await self.client.get(url)
        response.raise_for_status()
        loop = asyncio.get_running_loop()

        def told(answer: EarlyReport) -> None:  # in the analysis thread, as a worker's line
            assert early is not None
            loop.call_soon_threadsafe(early, answer)

        report = await asyncio.to_thread(
            analyze_wheel,
            io.BytesIO(response.content),
            filename,
            sha256,
            early=told if early is not None else None,
        )
        await self.fat_binaries.wait()
        return report
