"""Page cache around one upstream: TTL, conditional revalidation, last good page on failure.

Entries live in the state store (shared by replicas, kept across restarts) and in
a small in-process LRU for the hot path. A fetched page is answered from memory and
written to the state store behind the answer (a 5 MB page costs the store tens of
milliseconds no client should wait for): one write per key at a time, in order, so the
newest entry is the one stored; a purge and `close` wait for the writes. Absent
projects are cached too, so a project found only on a lower-priority upstream does not
cost a miss upstream on every request. One refresh per project at a time, however many
requests wait (`proxy.edge.flight`); a request that gives up leaves it running for the others.

A page served stale carries a ``Warning`` header with the failure; upstream text
reaches it only as printable ASCII, escaped for a quoted-string and bounded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from packaging.utils import NormalizedName

from proxy.core.lru import LRU
from proxy.core.models import Page, ProjectList
from proxy.core.pages import PageError
from proxy.edge.compression import gunzipped
from proxy.edge.flight import Flights
from proxy.edge.index import Context
from proxy.edge.layers.upstream import (
    MAX_PAGE_BYTES,
    HttpUpstream,
    NotModified,
    Source,
    Validators,
)
from proxy.edge.offload import by_size
from proxy.edge.stores import keys
from proxy.edge.stores.state import StateStore
from proxy.errors import NotFound, UpstreamError

log = logging.getLogger("hostfit.pages")

# Keep entries long after they go stale: they are the fallback when upstream fails.
KEEP_SECONDS = 30 * 24 * 3600
# Parsed pages held in memory, weighed by their upstream bytes: a parsed page takes 2.7 to
# 4.5 times those (13 MB for a 5 MB page of 11,000 files). At most MEMORY_ENTRIES pages,
# fewer when they are big: 64 MiB holds 13 pages of grpcio's size, 200 to 300 MB parsed,
# where 256 of them took 4 GB. A page pushed out is read back from the state store.
MEMORY_SOURCE_BYTES = 64 * 1024 * 1024
MEMORY_ENTRIES = 256
RETRIES_KEPT = 4096  # projects whose upstream failed, served stale until their retry
RETRY_SECONDS = 30.0
WARN_TEXT_MAX = 300


def warn_text(text: str) -> str:
    """Text for a header's quoted-string: printable ASCII (others escaped), quotes escaped."""
    text = text.encode("ascii", "backslashreplace").decode("ascii")
    text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
    if len(text) > WARN_TEXT_MAX:
        text = text[: WARN_TEXT_MAX - 3] + "..."
    return text.replace("\\", "\\\\").replace('"', '\\"')


# Leads every stored entry; bumped whenever the stored shape changes, so that an entry
# of another shape is a miss (fetched anew and overwritten), never misread.
FORMAT = b"hostfit-page/3\n"


class OtherFormat(ValueError):
    """A stored entry written in another format (by another version of hostfit)."""


@dataclass(frozen=True, slots=True)
class Stored:
    """A page's upstream source as the store keeps it: one gzip member, and what reading
    it back needs. An entry holds this, not the source: a fifth of the bytes in memory."""

    member: bytes
    size: int  # the bytes it inflates to
    url: str  # the page's final URL, which relative links are resolved against
    is_json: bool

    @classmethod
    async def of(cls, source: Source) -> Stored:
        """Its gzip member: upstream's own, or the one made beside the parse
        (`HttpUpstream.fetch`); else compressed here, off the loop when big."""
        size = 0 if source.gzip is not None else len(source.body)
        member = await by_size(size, source.gzipped)
        return cls(member, len(source.body), source.url, source.is_json)


@dataclass(frozen=True, slots=True)
class Entry:
    page: Page | None  # None: upstream said the project does not exist
    validators: Validators
    fetched: float
    stored: Stored | None = None  # what ``page`` was parsed from

    def encode(self) -> bytes:
        """A JSON line of what the entry knows, then upstream's bytes as they came,
        gzipped (`Stored`): the page is not rendered to be stored, and a 5 MB page costs
        the store a fifth of its bytes (and SQLite 4 ms instead of 37)."""
        data: dict[str, object] = {
            "fetched": self.fetched,
            "etag": self.validators.etag,
            "last_modified": self.validators.last_modified,
        }
        body = b""
        if self.page is not None:
            assert self.stored is not None, "a page is stored as its upstream source"
            data.update(name=self.page.name, url=self.stored.url, json=self.stored.is_json)
            data["bytes"] = self.stored.size
            body = self.stored.member
        return b"".join((FORMAT, json.dumps(data).encode(), b"\n", body))

    @staticmethod
    def size(raw: bytes) -> int:
        """The upstream bytes a stored entry holds, read from its first line: the work of
        decoding it goes by them, not by the smaller bytes stored (`proxy.edge.offload`).
        An entry that does not say is taken at its stored size."""
        try:
            stored = _header(raw).get("bytes")
        except ValueError:
            return len(raw)
        if stored.__class__ is int and stored >= 0:
            return max(stored, len(raw))
        return len(raw)

    @classmethod
    def decode(cls, raw: bytes, upstream: str) -> Entry:
        data = _header(raw)
        end = raw.index(b"\n", len(FORMAT))
        page = stored = None
        if "name" in data:
            member = raw[end + 1 :]
            body = gunzipped(member, MAX_PAGE_BYTES)
            if len(body) != data["bytes"]:
                raise ValueError(f"{len(body)} bytes stored, {data['bytes']} said")
            stored = Stored(member, len(body), data["url"], data["json"])
            page = Source(body, stored.url, stored.is_json).parse(data["name"])
            page = replace(page, upstream=upstream)
        return cls(page, Validators(data["etag"], data["last_modified"]), data["fetched"], stored)


def _header(raw: bytes) -> dict[str, Any]:
    """A stored entry's first line; a ValueError (OtherFormat: of another format) when it
    is not one this version wrote."""
    if not raw.startswith(FORMAT):
        raise OtherFormat("not a page entry of this format")
    end = raw.find(b"\n", len(FORMAT))
    if end < 0:
        raise ValueError("no header line")
    try:
        data = json.loads(raw[len(FORMAT) : end])
    except RecursionError:  # nested past the parser's depth: not a header hostfit wrote
        raise ValueError("a header nested too deep") from None
    if not isinstance(data, dict):
        raise ValueError("a header that is not an object")
    return data


def _in_memory(entry: Entry) -> int:
    """An entry's weight: its page's upstream bytes, or a share of the budget that lets no
    more than MEMORY_ENTRIES small pages in."""
    size = entry.stored.size if entry.stored is not None else 0
    return max(size, MEMORY_SOURCE_BYTES // MEMORY_ENTRIES)


class CachedUpstream:
    def __init__(
        self,
        upstream: HttpUpstream,
        store: StateStore,
        ttl: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.upstream = upstream
        self.store = store
        self.ttl = ttl
        self.clock = clock
        self._memory: LRU[str, Entry] = LRU(MEMORY_SOURCE_BYTES, weigh=_in_memory)
        self._refreshing: Flights[str, Entry] = Flights()
        self._retry_after: LRU[str, float] = LRU(RETRIES_KEPT)
        self._writing: dict[str, asyncio.Task[None]] = {}  # store key -> its latest write
        self._listing: tuple[float, ProjectList] | None = None  # (fresh until, the list)
        self._listing_fetch: Flights[str, ProjectList] = Flights()

    def _key(self, name: str) -> str:
        return keys.page(self.upstream.base_url, name)

    def _remember(self, name: str, entry: Entry) -> None:
        self._memory.put(name, entry)

    async def _load(self, name: str) -> Entry | None:
        entry = self._memory.get(name)
        if entry is not None:
            return entry
        raw = await self.store.get(self._key(name))
        if raw is None:
            return None
        try:
            entry = await by_size(
                Entry.size(raw), lambda: Entry.decode(raw, self.upstream.base_url)
            )
        except OtherFormat:
            log.debug("cached page of %s is in another format: fetched anew", name)
            return None
        except (ValueError, KeyError, TypeError, PageError) as exc:
            log.warning("discarding unreadable cached page %s: %s", name, exc)
            return None
        self._remember(name, entry)
        return entry

    async def purge(self, name: NormalizedName) -> None:
        """Forget the project's page: the next request fetches it anew (admin)."""
        self._memory.pop(name)
        self._retry_after.pop(name)
        key = self._key(name)
        writing = self._writing.get(key)
        if writing is not None:
            await asyncio.wait({writing})  # else it would store the page again after this
        await self.store.delete(key)

    def _store(self, name: str, entry: Entry) -> None:
        key = self._key(name)
        previous = self._writing.get(key)

        async def write() -> None:
            if previous is not None:
                await asyncio.wait({previous})
            try:
                if entry.page is None:
                    # Absent upstream: kept in memory only. Any name anyone asks for would
                    # otherwise be a key kept for a month, in a Redis that may not evict.
                    await self.store.delete(key)
                else:
                    await self.store.set(key, entry.encode(), ttl=KEEP_SECONDS)
            except Exception as exc:  # the page was answered; the next fetch stores it again
                log.warning("page of %s not stored: %s", name, exc)

        task = asyncio.create_task(write())
        self._writing[key] = task
        task.add_done_callback(lambda done: self._written(key, done))

    def _written(self, key: str, task: asyncio.Task[None]) -> None:
        if self._writing.get(key) is task:
            del self._writing[key]

    async def page(self, name: NormalizedName, ctx: Context) -> Page:
        entry = await self._load(name)
        now = self.clock()
        if entry is None or (
            now - entry.fetched >= self.ttl and now >= self._retry_after.peek(name, 0.0)
        ):
            entry = await self._refresh(name, entry)
        if entry.page is None:
            raise NotFound(f"project {name!r} not found on {self.upstream.base_url}")
        return entry.page

    async def _refresh(self, name: NormalizedName, previous: Entry | None) -> Entry:
        return await self._refreshing.run(name, lambda: self._fetch(name, previous))

    async def close(self) -> None:
        await self._refreshing.close()
        writes = list(self._writing.values())
        if writes:
            await asyncio.wait(writes)

    async def _fetch(self, name: NormalizedName, previous: Entry | None) -> Entry:
        now = self.clock()
        try:
            fetched = await self.upstream.fetch(name, previous.validators if previous else None)
            stored = await Stored.of(fetched.source)
            entry = Entry(fetched.page, fetched.validators, now, stored)
        except NotModified:
            assert previous is not None
            page = previous.page and replace(previous.page, warning=None)
            entry = replace(previous, page=page, fetched=now)
        except NotFound:
            entry = Entry(None, Validators(), now)
        except UpstreamError as exc:
            if previous is None:
                raise
            log.warning("serving cached page of %s: %s", name, exc)
            # Serve the stale page for a while before asking the failing upstream again,
            # so an outage does not cost every request a full upstream timeout.
            self._retry_after.put(name, now + min(self.ttl, RETRY_SECONDS))
            if previous.page is None:
                return previous
            warning = f'110 hostfit "Response is Stale: {warn_text(str(exc))}"'
            stale = replace(previous, page=replace(previous.page, warning=warning))
            self._remember(name, stale)
            return stale
        self._retry_after.pop(name)
        self._remember(name, entry)
        self._store(name, entry)
        return entry

    async def projects(self) -> ProjectList:
        """The root list, kept in memory for the page TTL: it is an index's biggest page,
        and asked of the upstream on every request a few clients would keep it busy. One
        fetch at a time; the last good list while the upstream fails (tried again after
        `RETRY_SECONDS`)."""
        held = self._listing
        if held is not None and self.clock() < held[0]:
            return held[1]
        try:
            return await self._listing_fetch.run("", self._fetch_listing)
        except UpstreamError as exc:
            if held is None:
                raise
            log.warning("project list served from before: %s", exc)
            self._listing = (self.clock() + RETRY_SECONDS, held[1])
            return held[1]

    async def _fetch_listing(self) -> ProjectList:
        listing = await self.upstream.projects()
        self._listing = (self.clock() + self.ttl, listing)
        return listing
