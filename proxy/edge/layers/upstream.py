"""One upstream index over HTTP: PEP 691 JSON preferred, PEP 503 HTML accepted.

httpx errors become `UpstreamError`/`UpstreamTimeout` (`proxy.outbound.upstream_errors`).
Transient failures are retried beneath, in the client's transport (`proxy.retry`),
which reads the page body too, so that a reset mid-page is retried as well. Each fetch
has a total deadline (``upstream_deadline``), retries and a dripping body included:
past it, the fetch is abandoned as an `UpstreamTimeout` and nothing is kept.

Upstream text never breaks serving: file entries that cannot be served are left off
the page (one log line per page revision), and validators that are not plain ASCII
are not sent back.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass, replace

import httpx
from packaging.utils import NormalizedName

from proxy.core.lru import LRU
from proxy.core.models import Page, ProjectList
from proxy.core.negotiate import HTML_V1, JSON_V1
from proxy.core.pages import (
    PageError,
    parse_html_page,
    parse_html_root,
    parse_json_page,
    parse_json_root,
)
from proxy.edge.compression import Decoded, decoded, gzipped
from proxy.edge.index import Context
from proxy.edge.offload import BIG, by_size
from proxy.errors import NotFound, UpstreamError, UpstreamTimeout
from proxy.outbound import GZIP_OR_NOTHING, received, upstream_errors
from proxy.retry import extensions

log = logging.getLogger("hostfit.pages")

ACCEPT = f"{JSON_V1}, {HTML_V1};q=0.2, text/html;q=0.01"
MAX_PAGE_BYTES = 64 * 1024 * 1024
DEADLINE = 60.0
DROPS_REMEMBERED = 1024


@dataclass(frozen=True, slots=True)
class Validators:
    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True, slots=True)
class Source:
    """An upstream page as it was received. The page cache stores these bytes rather than
    a rendering of the page: storing costs nothing on the request path, and `parse` makes
    the same page from them on every replica."""

    body: bytes
    url: str  # the page's final URL, which relative links are resolved against
    is_json: bool  # PEP 691 JSON, else PEP 503 HTML
    # One gzip member of ``body`` for the page cache to store: upstream's own when worth
    # keeping (`kept`), or made beside a big page's parse; None: made when stored.
    gzip: bytes | None = None

    def gzipped(self) -> bytes:
        """``body`` as one gzip member."""
        return self.gzip if self.gzip is not None else gzipped(self.body)

    async def parsed(self, name: NormalizedName, dropped: list[str] | None = None) -> Page:
        """`parse`, on a thread when the page is big (`proxy.edge.offload`): parsing 5 MB
        takes 50-80 ms."""
        return await by_size(len(self.body), lambda: self.parse(name, dropped))

    def parse(self, name: NormalizedName, dropped: list[str] | None = None) -> Page:
        if self.is_json:
            page = parse_json_page(self.body, self.url, dropped)
        else:
            page = parse_html_page(self.body, self.url, name, dropped)
        revision = hashlib.sha256(self.body).hexdigest()[:16]
        return replace(page, name=name, revision=revision)


def kept(decoded: Decoded) -> bytes | None:
    """Upstream's gzip member, when it is worth storing as it came: one that takes at most
    half the page's bytes (a member of stored blocks would not)."""
    member = decoded.member
    return member if member is not None and 2 * len(member) <= len(decoded.body) else None


async def _parsed_and_compressed(
    source: Source, name: NormalizedName, dropped: list[str]
) -> tuple[Page, Source]:
    """The page, and its source with a gzip member for the page cache: for a big page
    upstream sent none worth keeping for, made beside the parse on another thread
    (compressing lets go of the GIL), so that storing it adds nothing to the first
    answer. A small one is compressed when stored, as cheaply."""
    if source.gzip is not None or len(source.body) < BIG:
        return await source.parsed(name, dropped), source
    page, member = await asyncio.gather(
        source.parsed(name, dropped), by_size(len(source.body), source.gzipped)
    )
    return page, replace(source, gzip=member)


@dataclass(frozen=True, slots=True)
class Fetched:
    page: Page
    validators: Validators
    source: Source


_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_UNTYPED = frozenset({"", "application/octet-stream", "binary/octet-stream"})


@dataclass(frozen=True, slots=True)
class _Raw:
    status_code: int
    headers: httpx.Headers
    received: bytes  # as sent, in its content coding
    url: str

    @property
    def media_type(self) -> str:
        value: str = self.headers.get("content-type", "")
        return value.split(";")[0].strip().lower()

    def is_json(self, body: bytes, what: str) -> bool:
        """Whether the page is JSON (else HTML); an `UpstreamError` for anything else.

        An image or a plain-text maintenance page answered 200 parsed as HTML as a page
        of no files, and replaced the good page kept, where an error serves that one.
        Storage services that type nothing (or as bytes) are taken at their word when
        the body is markup."""
        media = self.media_type
        if media.endswith("json"):
            return True
        if media in _HTML_TYPES or media.endswith("+html"):
            return False
        if media in _UNTYPED and body.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"<":
            return False
        raise UpstreamError(self.url, f"{what} came as {media or 'no content type'}")

    async def decoded(self, upstream: str) -> Decoded:
        """The body, decoded; an `UpstreamError` saying why not."""
        try:
            return await decoded(
                self.received, self.headers.get("content-encoding"), MAX_PAGE_BYTES
            )
        except ValueError as exc:
            raise UpstreamError(upstream, f"{self.url}: {exc}") from None


class NotModified(Exception):
    """The upstream confirmed that the cached page is still current."""


def header_value(value: str | None) -> str | None:
    """An upstream header worth sending back (a validator): printable ASCII, else None."""
    if value is None or not value.isascii() or not value.isprintable():
        return None
    return value


class HttpUpstream:
    def __init__(
        self, base_url: str, client: httpx.AsyncClient, deadline: float = DEADLINE
    ) -> None:
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.client = client
        self.deadline = deadline
        self._drops_logged: LRU[tuple[str, str], None] = LRU(DROPS_REMEMBERED)

    def __repr__(self) -> str:
        return f"HttpUpstream({self.base_url!r})"

    async def _get(self, url: str, headers: dict[str, str]) -> _Raw:
        try:
            async with asyncio.timeout(self.deadline):
                return await self._read(url, headers)
        except TimeoutError:
            raise UpstreamTimeout(
                self.base_url,
                f"timed out: no complete answer for {url} within {self.deadline:g}s "
                "(upstream_deadline)",
            ) from None

    async def _read(self, url: str, headers: dict[str, str]) -> _Raw:
        asked = extensions(deadline=time.monotonic() + self.deadline, buffer=MAX_PAGE_BYTES)
        headers = {**headers, **GZIP_OR_NOTHING}
        doing = f"fetching {url}"
        with upstream_errors(self.base_url, doing):
            async with self.client.stream(
                "GET", url, headers=headers, extensions=asked
            ) as response:
                body = await received(response, MAX_PAGE_BYTES, self.base_url, doing)
                return _Raw(response.status_code, response.headers, body, str(response.url))

    async def fetch(self, name: NormalizedName, validators: Validators | None = None) -> Fetched:
        url = f"{self.base_url}{name}/"
        headers = {"Accept": ACCEPT}
        etag = header_value(validators.etag) if validators else None
        modified = header_value(validators.last_modified) if validators else None
        if etag:
            headers["If-None-Match"] = etag
        if modified:
            headers["If-Modified-Since"] = modified
        response = await self._get(url, headers)
        if response.status_code == 304:
            raise NotModified
        if response.status_code in (404, 410):
            raise NotFound(f"project {name!r} not found on {self.base_url}")
        if response.status_code != 200:
            raise UpstreamError(self.base_url, f"HTTP {response.status_code} for {url}")
        decoded = await response.decoded(self.base_url)
        is_json = response.is_json(decoded.body, f"the page of {name}")
        source = Source(decoded.body, response.url, is_json, kept(decoded))
        dropped: list[str] = []
        try:
            page, source = await _parsed_and_compressed(source, name, dropped)
        except PageError as exc:
            raise UpstreamError(self.base_url, f"{url}: {exc}") from None
        if dropped:
            self._log_drops(name, page.revision, dropped)
        return Fetched(
            replace(page, upstream=self.base_url),
            Validators(
                header_value(response.headers.get("etag")),
                header_value(response.headers.get("last-modified")),
            ),
            source,
        )

    def _log_drops(self, name: str, revision: str, dropped: list[str]) -> None:
        """Once per page revision: a page refetched unchanged says nothing new."""
        if not self._drops_logged.add((name, revision), None):
            return
        shown = "; ".join(dropped[:5]) + (
            f"; and {len(dropped) - 5} more" if len(dropped) > 5 else ""
        )
        log.warning("%s: %d file(s) left off the page: %s", name, len(dropped), shown)

    async def page(self, name: NormalizedName, ctx: Context) -> Page:
        return (await self.fetch(name)).page

    async def projects(self) -> ProjectList:
        response = await self._get(self.base_url, {"Accept": ACCEPT})
        if response.status_code != 200:
            raise UpstreamError(self.base_url, f"HTTP {response.status_code} for the project list")
        try:
            body = (await response.decoded(self.base_url)).body
            if response.is_json(body, "the project list"):
                return parse_json_root(body)
            return parse_html_root(body)
        except PageError as exc:
            raise UpstreamError(self.base_url, str(exc)) from None
