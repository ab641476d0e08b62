"""A real upstream index (PEP 503 HTML and PEP 691 JSON) on 127.0.0.1 for tests.

It runs a Starlette app under a real uvicorn server in a background thread, so
clients see real sockets: streaming with back-pressure, genuinely short bodies,
connection errors. Every behaviour knob is a plain attribute and may be changed
while the server runs.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import json
import logging
import socket
import ssl
import threading
import time
import zipfile
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote

import anyio
import uvicorn
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CHUNK = 64 * 1024
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
JSON_LATEST_TYPE = "application/vnd.pypi.simple.latest+json"
HTML_V1_TYPE = "application/vnd.pypi.simple.v1+html"
HTML_TYPE = "text/html; charset=utf-8"
DEFAULT_UPLOAD_TIME = "2024-01-02T03:04:05.000000Z"
# Files bigger than this, added by path, are streamed from disk instead of held in memory.
IN_MEMORY_LIMIT = 64 * 1024 * 1024

UrlStyle = Literal["mixed", "absolute", "relative"]


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    status: int


@dataclass
class UpstreamFile:
    filename: str
    content: bytes = b""
    extra: dict[str, Any] = field(default_factory=dict)
    metadata: bytes | None = None
    path: Path | None = None  # when set, the bytes come from this file and `content` is unused
    _digests: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def from_path(cls, path: Path, *, in_memory: bool | None = None, **extra: Any) -> UpstreamFile:
        """A built wheel or sdist; a wheel's METADATA becomes its PEP 658 metadata.

        Keyword extras are PEP 691 file keys; a None value drops the key from the page.
        """
        size = path.stat().st_size
        keep = size <= IN_MEMORY_LIMIT if in_memory is None else in_memory
        metadata = _wheel_metadata(path) if path.name.endswith(".whl") else None
        keys: dict[str, Any] = {}
        if metadata is not None:
            # Like a real index, the page's requires-python comes from the uploaded metadata.
            keys["requires-python"] = BytesParser().parsebytes(metadata)["Requires-Python"]
        keys.update(file_keys(extra))
        file = cls(
            path.name,
            content=path.read_bytes() if keep else b"",
            extra=keys,
            path=None if keep else path,
            metadata=metadata,
        )
        if not keep:
            file.digest("sha256")  # hash once now, not inside a request
        return file

    @property
    def size(self) -> int:
        return self.path.stat().st_size if self.path is not None else len(self.content)

    @property
    def sha256(self) -> str:
        return self.digest("sha256")

    def data(self) -> bytes:
        return self.path.read_bytes() if self.path is not None else self.content

    def digest(self, name: str) -> str:
        """Hex digest of the bytes the page advertises (never of corrupted bytes)."""
        if self.path is None:
            return _hasher(name, [self.content])
        if name not in self._digests:
            with self.path.open("rb") as fh:
                self._digests[name] = _hasher(name, iter(lambda: fh.read(1 << 20), b""))
        return self._digests[name]

    async def chunks(self, start: int, end: int) -> AsyncIterator[bytes]:
        if self.path is None:
            view = memoryview(self.content)
            for pos in range(start, end, CHUNK):
                yield bytes(view[pos : min(pos + CHUNK, end)])
            return
        async with await anyio.open_file(self.path, "rb") as fh:
            await fh.seek(start)
            remaining = end - start
            while remaining > 0:
                data = await fh.read(min(CHUNK, remaining))
                if not data:
                    return
                remaining -= len(data)
                yield data


def file_keys(extra: dict[str, Any]) -> dict[str, Any]:
    """Python keyword names to PEP 691 keys: requires_python -> requires-python."""
    return {key.replace("_", "-"): value for key, value in extra.items()}


def _hasher(name: str, blocks: Iterable[bytes]) -> str:
    h = hashlib.blake2b(digest_size=32) if name == "blake2b_256" else hashlib.new(name)
    for block in blocks:
        h.update(block)
    return h.hexdigest()


def _wheel_metadata(path: Path) -> bytes | None:
    with zipfile.ZipFile(path) as zf:
        for name in zf.namelist():
            head, _, tail = name.partition("/")
            if head.endswith(".dist-info") and tail == "METADATA":
                return zf.read(name)
    return None


def _version_of(filename: str) -> str | None:
    try:
        if filename.endswith(".whl"):
            return str(parse_wheel_filename(filename)[1])
        return str(parse_sdist_filename(filename)[1])
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None


class Unsatisfiable(Exception):
    pass


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """One byte range as [start, end); None means ignore the header and send everything."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first.isdigit() or last.isdigit()):
        return None
    if not first:
        if int(last) == 0 or size == 0:
            raise Unsatisfiable
        return max(0, size - int(last)), size
    if last and not last.isdigit():
        return None
    start = int(first)
    end = int(last) + 1 if last else size
    if last and end <= start:
        return None
    if start >= size:
        raise Unsatisfiable
    return start, min(end, size)


class DeliberateTruncation(Exception):
    """Raised after half a body so uvicorn drops the connection mid-response."""


class _QuietTruncation(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, DeliberateTruncation)


_quiet_filter = _QuietTruncation()


@dataclass(frozen=True)
class ServerTLS:
    """Serve HTTPS with this certificate; with ``client_ca``, require a client certificate
    it issued (mTLS)."""

    cert: Path
    key: Path
    client_ca: Path | None = None


@dataclass
class _Project:
    name: str
    files: dict[str, UpstreamFile] = field(default_factory=dict)


class Upstream:
    def __init__(self, tls: ServerTLS | None = None) -> None:
        self.tls = tls
        self.project_meta: dict[str, dict[str, Any]] = {}
        self.formats: set[str] = {"json", "html"}
        self.serve_metadata = True
        self.hash_names: tuple[str, ...] = ("sha256",)
        self.down = False
        self.hang = 0.0
        self.corrupt: set[str] = set()
        self.truncate: set[str] = set()
        self.slow_files: dict[str, float] = {}
        self.etags = True
        self.ranges = True
        self.chunked: set[str] = set()  # filenames sent without a Content-Length
        # filename -> other bytes answered to range requests (a hostile upstream's lie)
        self.range_lies: dict[str, bytes] = {}
        self.url_style: UrlStyle = "mixed"
        self.api_version = "1.1"
        self.cache_control: str | None = "max-age=600, public"
        self.errors: dict[str, int] = {}  # exact request path -> status to answer instead
        # exact request path -> (content type, body) answered 200 instead
        self.answers: dict[str, tuple[str, bytes]] = {}
        self.redirects: dict[str, str] = {}  # exact request path -> URL to redirect it to (302)
        self.basic_auth: tuple[str, str] | None = None  # (user, password) every request needs
        self.bearer_token: str | None = None  # or "Authorization: Bearer <token>" (either works)
        self.required_headers: dict[str, str] = {}  # headers every request needs, exactly
        self.files_origin: str | None = None  # absolute file links point here (another server)
        self.requests: list[RecordedRequest] = []
        self._projects: dict[NormalizedName, _Project] = {}
        self._files: dict[str, UpstreamFile] = {}
        self._lock = threading.Lock()
        self._stamps: dict[tuple[str, str], tuple[str, float]] = {}
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._port = 0
        self.app: ASGIApp = _Recorder(self, self._build_app())

    # --- content -------------------------------------------------------------

    def add(self, project: str, file: UpstreamFile | Path, **extra: Any) -> UpstreamFile:
        """Add (or replace, by filename) a file; keyword extras become PEP 691 file keys."""
        item = UpstreamFile.from_path(file) if isinstance(file, Path) else file
        item.extra.update(file_keys(extra))
        with self._lock:
            entry = self._projects.setdefault(canonicalize_name(project), _Project(project))
            entry.files[item.filename] = item
            self._files[item.filename] = item
        return item

    def add_project(self, project: str) -> None:
        """A project that exists with no files."""
        with self._lock:
            self._projects.setdefault(canonicalize_name(project), _Project(project))

    def remove(self, project: str, filename: str) -> None:
        with self._lock:
            del self._projects[canonicalize_name(project)].files[filename]
            del self._files[filename]

    def files(self, project: str) -> list[UpstreamFile]:
        with self._lock:
            return list(self._projects[canonicalize_name(project)].files.values())

    # --- observation ---------------------------------------------------------

    def count(self, method: str, path_suffix: str) -> int:
        return sum(
            1
            for r in list(self.requests)
            if r.method == method.upper() and r.path.endswith(path_suffix)
        )

    def reset_requests(self) -> None:
        self.requests.clear()

    @property
    def origin(self) -> str:
        if not self._port:
            raise RuntimeError("upstream is not running")
        return f"{self.scheme}://127.0.0.1:{self._port}"

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    @property
    def url(self) -> str:
        return f"{self.origin}/simple/"

    def file_url(self, filename: str) -> str:
        return f"{self.origin}/files/{quote(filename)}"

    @property
    def credentialed_url(self) -> str:
        """``url`` with the `basic_auth` credentials in it, as an operator would configure it."""
        assert self.basic_auth is not None, "set basic_auth first"
        user, password = (quote(part, safe="") for part in self.basic_auth)
        return f"{self.scheme}://{user}:{password}@127.0.0.1:{self._port}/simple/"

    # --- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("upstream already running")
        logging.getLogger("uvicorn.error").addFilter(_quiet_filter)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            log_config=None,
            access_log=False,
            lifespan="off",
            loop="asyncio",
            timeout_graceful_shutdown=1,
            **self._tls_options(),
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="upstream", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                sock.close()
                raise RuntimeError("upstream server failed to start")
            time.sleep(0.005)
        self._server, self._thread, self._socket = server, thread, sock
        self._port = sock.getsockname()[1]

    def _tls_options(self) -> dict[str, Any]:
        if self.tls is None:
            return {}
        options: dict[str, Any] = {
            "ssl_certfile": str(self.tls.cert),
            "ssl_keyfile": str(self.tls.key),
        }
        if self.tls.client_ca is not None:
            options |= {"ssl_ca_certs": str(self.tls.client_ca), "ssl_cert_reqs": ssl.CERT_REQUIRED}
        return options

    def stop(self) -> None:
        server, thread, sock = self._server, self._thread, self._socket
        if server is None or thread is None or sock is None:
            return
        server.should_exit = True
        thread.join(10)
        if thread.is_alive():
            server.force_exit = True
            thread.join(5)
        sock.close()
        self._server = self._thread = self._socket = None
        self._port = 0

    def __enter__(self) -> Upstream:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- pages ---------------------------------------------------------------

    def _build_app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/simple/", self._root, methods=["GET"]),
                Route("/simple/{project}/", self._page, methods=["GET"]),
                Route("/simple/{project}", self._slashless, methods=["GET"]),
                Route("/files/{filename:path}", _FileApp(self)),
            ]
        )

    def _wants_json(self, request: Request) -> bool:
        if self.formats == {"json"}:
            return True
        if "json" not in self.formats:
            return False
        accept = request.headers.get("accept", "")
        if "format" in request.query_params:
            # Tolerate an unescaped "+" in ?format=, which the query string decodes to a space.
            accept = request.query_params["format"].replace(" ", "+")
        return any(t in accept for t in (JSON_TYPE, JSON_LATEST_TYPE))

    def _html_type(self, request: Request) -> str:
        return HTML_V1_TYPE if HTML_V1_TYPE in request.headers.get("accept", "") else HTML_TYPE

    async def _root(self, request: Request) -> Response:
        with self._lock:
            projects = [(k, p.name) for k, p in sorted(self._projects.items())]
        if self._wants_json(request):
            body = {
                "meta": {"api-version": self.api_version},
                "projects": [{"name": name} for _, name in projects],
            }
            return self._page_response(request, json.dumps(body).encode(), JSON_TYPE)
        links = "".join(
            f'    <a href="{key}/">{html.escape(name)}</a><br/>\n' for key, name in projects
        )
        text = _html_document("Simple index", self._html_meta({}), links)
        return self._page_response(request, text.encode(), self._html_type(request))

    async def _slashless(self, request: Request) -> Response:
        project = canonicalize_name(request.path_params["project"])
        return self._redirect(request, f"/simple/{project}/")

    async def _page(self, request: Request) -> Response:
        raw = request.path_params["project"]
        key = canonicalize_name(raw)
        if raw != key:
            return self._redirect(request, f"/simple/{key}/")
        with self._lock:
            project = self._projects.get(key)
            files = list(project.files.values()) if project is not None else []
        if project is None:
            return PlainTextResponse("404 Not Found", status_code=404)
        entries = [self._file_entry(i, f) for i, f in enumerate(files)]
        meta = dict(self.project_meta.get(key, self.project_meta.get(project.name, {})))
        if self._wants_json(request):
            page: dict[str, Any] = {
                "meta": {"api-version": self.api_version, **meta.pop("meta", {})},
                "name": key,
                "files": entries,
                "versions": _versions(f.filename for f in files),
                **meta,
            }
            return self._page_response(request, json.dumps(page).encode(), JSON_TYPE)
        anchors = "".join(_anchor(e) for e in entries)
        text = _html_document(f"Links for {key}", self._html_meta(meta), anchors)
        return self._page_response(request, text.encode(), self._html_type(request))

    def _file_entry(self, index: int, file: UpstreamFile) -> dict[str, Any]:
        relative = self.url_style == "relative" or (self.url_style == "mixed" and index % 2)
        if relative:
            url = f"../../files/{quote(file.filename)}"
        elif self.files_origin is not None:
            url = f"{self.files_origin}/files/{quote(file.filename)}"
        else:
            url = self.file_url(file.filename)
        entry: dict[str, Any] = {
            "filename": file.filename,
            "url": url,
            "hashes": {name: file.digest(name) for name in self.hash_names},
            "size": file.size,
            "upload-time": DEFAULT_UPLOAD_TIME,
        }
        if file.metadata is not None and self.serve_metadata:
            meta_hashes = {name: _hasher(name, [file.metadata]) for name in self.hash_names}
            entry["core-metadata"] = entry["dist-info-metadata"] = meta_hashes or True
        entry.update(file.extra)
        return {k: v for k, v in entry.items() if v is not None}

    def _html_meta(self, meta: dict[str, Any]) -> list[tuple[str, str]]:
        tags = [("pypi:repository-version", self.api_version)]
        status = meta.get("project-status")
        if isinstance(status, dict):
            tags.append(("pypi:project-status", str(status.get("status", ""))))
            if status.get("reason"):
                tags.append(("pypi:project-status-reason", str(status["reason"])))
        for key in ("tracks", "alternate-locations"):
            tags.extend((f"pypi:{key}", str(v)) for v in meta.get(key, []))
        return tags

    def _redirect(self, request: Request, path: str) -> Response:
        query = f"?{request.url.query}" if request.url.query else ""
        return RedirectResponse(f"{self.origin}{path}{query}", status_code=301)

    def _page_response(self, request: Request, body: bytes, media_type: str) -> Response:
        headers = {"vary": "Accept"}
        if self.cache_control:
            headers["cache-control"] = self.cache_control
        if not self.etags:
            return Response(body, media_type=media_type, headers=headers)
        etag = '"' + hashlib.sha256(media_type.encode() + b"\0" + body).hexdigest()[:32] + '"'
        modified = self._last_modified(request.url.path, media_type, etag)
        headers["etag"] = etag
        headers["last-modified"] = formatdate(modified, usegmt=True)
        if _not_modified(request, etag, modified):
            return Response(status_code=304, headers=headers)
        return Response(body, media_type=media_type, headers=headers)

    def _last_modified(self, path: str, media_type: str, etag: str) -> float:
        # Strictly increasing whole seconds, so If-Modified-Since never hides a change.
        with self._lock:
            previous = self._stamps.get((path, media_type))
            if previous is not None and previous[0] == etag:
                return previous[1]
            stamp = float(int(time.time()))
            if previous is not None:
                stamp = max(stamp, previous[1] + 1)
            self._stamps[(path, media_type)] = (etag, stamp)
            return stamp


def _not_modified(request: Request, etag: str, modified: float) -> bool:
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
        return "*" in tags or etag in tags
    since = request.headers.get("if-modified-since")
    if since is None:
        return False
    try:
        return modified <= parsedate_to_datetime(since).timestamp()
    except (TypeError, ValueError):
        return False


def _versions(filenames: Iterable[str]) -> list[str]:
    found = {v for v in (_version_of(f) for f in filenames) if v is not None}
    return sorted(found, key=Version)


def _html_document(title: str, meta: list[tuple[str, str]], body: str) -> str:
    head = "".join(
        f'    <meta name="{html.escape(n)}" content="{html.escape(c)}">\n' for n, c in meta
    )
    return (
        "<!DOCTYPE html>\n<html>\n  <head>\n"
        f"{head}    <title>{html.escape(title)}</title>\n  </head>\n  <body>\n"
        f"    <h1>{html.escape(title)}</h1>\n{body}  </body>\n</html>\n"
    )


def _anchor(entry: dict[str, Any]) -> str:
    href = str(entry["url"])
    hashes: dict[str, str] = entry.get("hashes", {})
    if hashes:
        name, value = next(iter(hashes.items()))
        href += f"#{name}={value}"
    attrs = [("href", href)]
    if entry.get("requires-python") is not None:
        attrs.append(("data-requires-python", str(entry["requires-python"])))
    yanked = entry.get("yanked", False)
    if yanked is not False:
        attrs.append(("data-yanked", "" if yanked is True else str(yanked)))
    for key in ("core-metadata", "dist-info-metadata"):
        advertised = entry.get(key)
        if advertised is not None and advertised is not False:
            attrs.append((f"data-{key}", _metadata_attr(advertised)))
    if entry.get("provenance") is not None:
        attrs.append(("data-provenance", str(entry["provenance"])))
    rendered = " ".join(f'{k}="{html.escape(v, quote=True)}"' for k, v in attrs)
    return f"    <a {rendered}>{html.escape(str(entry['filename']))}</a><br/>\n"


def _metadata_attr(value: Any) -> str:
    if isinstance(value, dict) and value:
        name, digest = next(iter(value.items()))
        return f"{name}={digest}"
    return "true"


class _Recorder:
    """Outermost layer: records every request and applies down/hang/errors."""

    def __init__(self, upstream: Upstream, app: ASGIApp) -> None:
        self.upstream = upstream
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        up = self.upstream
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value

        def record(status: int) -> None:
            up.requests.append(
                RecordedRequest(
                    scope["method"],
                    scope["path"],
                    scope["query_string"].decode("latin-1"),
                    headers,
                    status,
                )
            )

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                record(message["status"])  # before the client can see the answer
            await send(message)

        if up.hang:
            await asyncio.sleep(up.hang)
        if not _authorized(up, headers):
            challenge = {"www-authenticate": 'Basic realm="test upstream"'}
            await PlainTextResponse("401 Unauthorized", status_code=401, headers=challenge)(
                scope, receive, recording_send
            )
            return
        target = up.redirects.get(scope["path"])
        if target is not None:
            await RedirectResponse(target, status_code=302)(scope, receive, recording_send)
            return
        answer = up.answers.get(scope["path"])
        if answer is not None:
            await Response(answer[1], media_type=answer[0])(scope, receive, recording_send)
            return
        forced = 503 if up.down else up.errors.get(scope["path"])
        if forced is not None:
            await PlainTextResponse(f"{forced} from test upstream", status_code=forced)(
                scope, receive, recording_send
            )
            return
        await self.app(scope, receive, recording_send)


def _authorized(up: Upstream, headers: dict[str, str]) -> bool:
    accepted = []
    if up.basic_auth is not None:
        accepted.append(_basic(*up.basic_auth))
    if up.bearer_token is not None:
        accepted.append(f"Bearer {up.bearer_token}")
    if accepted and headers.get("authorization") not in accepted:
        return False
    return all(headers.get(k.lower()) == v for k, v in up.required_headers.items())


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class _FileApp:
    """Files and their PEP 658 metadata, streamed in 64 KiB chunks with Range support."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream

    def _lookup(self, filename: str) -> UpstreamFile | None:
        up = self.upstream
        with up._lock:
            file = up._files.get(filename)
            if file is not None:
                return file
            base = up._files.get(filename.removesuffix(".metadata"))
        if not (filename.endswith(".metadata") and up.serve_metadata and base is not None):
            return None
        return None if base.metadata is None else UpstreamFile(filename, content=base.metadata)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            await PlainTextResponse("405", status_code=405)(scope, receive, send)
            return
        file = self._lookup(scope["path_params"]["filename"])
        if file is None:
            await PlainTextResponse("404 Not Found", status_code=404)(scope, receive, send)
            return
        await self._send_file(scope, receive, send, file)

    async def _send_file(
        self, scope: Scope, receive: Receive, send: Send, file: UpstreamFile
    ) -> None:
        up = self.upstream
        lie = up.range_lies.get(file.filename)
        if lie is not None and Request(scope).headers.get("range") is not None:
            file = UpstreamFile(file.filename, content=lie)
        size = file.size
        headers = [
            (b"content-type", b"application/octet-stream"),
            (b"etag", f'"{file.sha256}"'.encode()),
        ]
        status, start, end = 200, 0, size
        range_header = Request(scope).headers.get("range")
        if up.ranges:
            headers.append((b"accept-ranges", b"bytes"))
            if range_header is not None:
                try:
                    span = parse_range(range_header, size)
                except Unsatisfiable:
                    await Response(status_code=416, headers={"content-range": f"bytes */{size}"})(
                        scope, receive, send
                    )
                    return
                if span is not None:
                    status, (start, end) = 206, span
                    headers.append((b"content-range", f"bytes {start}-{end - 1}/{size}".encode()))
        if file.filename not in up.chunked:
            headers.append((b"content-length", str(end - start).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        if scope["method"] == "HEAD":
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return

        truncated = file.filename in up.truncate
        stop = start + (end - start) // 2 if truncated else end
        flip_at = size // 2 if file.filename in up.corrupt else -1
        gone = asyncio.Event()
        watcher = asyncio.ensure_future(_watch_disconnect(receive, gone))
        try:
            pos = start
            async for chunk in file.chunks(start, stop):
                delay = up.slow_files.get(file.filename, 0.0)
                if delay:
                    await asyncio.sleep(delay)
                if gone.is_set():
                    return
                if pos <= flip_at < pos + len(chunk):
                    data = bytearray(chunk)
                    data[flip_at - pos] ^= 0xFF
                    chunk = bytes(data)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                pos += len(chunk)
        finally:
            watcher.cancel()
        if truncated:
            raise DeliberateTruncation(file.filename)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _watch_disconnect(receive: Receive, gone: asyncio.Event) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    gone.set()
