"""The page cache (`CachedUpstream` over `HttpUpstream`): pages parsed from JSON or HTML,
kept for their TTL, revalidated, shared through the store, served stale on failure."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from packaging.utils import NormalizedName

from proxy.core.models import Page
from proxy.edge import compression, offload
from proxy.edge.compression import Decoded, content_decoded
from proxy.edge.index import UNIVERSAL
from proxy.edge.layers import upstream as upstream_module
from proxy.edge.layers.page_cache import CachedUpstream
from proxy.edge.layers.upstream import HttpUpstream
from proxy.errors import NotFound, UpstreamError, UpstreamTimeout
from tests.unit.conftest import Wheels
from tests.unit.fakes import Clock, FakeIndex, MemoryStore

DEMO = NormalizedName("demo")
TTL = 60.0
PAGE = "/simple/demo/"


def cache(
    index: FakeIndex, client: httpx.AsyncClient, store: MemoryStore, clock: Clock
) -> CachedUpstream:
    return CachedUpstream(HttpUpstream(index.url, client), store, TTL, clock=clock)


def described(page: Page) -> list[tuple[str, str, str | None, object]]:
    return [(f.filename, f.url, f.sha256, f.core_metadata) for f in page.files]


async def test_a_page_is_fetched_once_within_its_ttl(
    index: FakeIndex, client: httpx.AsyncClient, store: MemoryStore, clock: Clock, wheels: Wheels
) -> None:
    index.add("demo", wheels.demo_1)
    pages = cache(index, client, store, clock)
    first = await pages.page(DEMO, UNIVERSAL)
    clock.advance(TTL - 1)
    again = await pages.page(DEMO, UNIVERSAL)
    data = wheels.demo_1.read_bytes()
    assert [(f.filename, f.sha256, f.size) for f in first.files] == [
        (wheels.demo_1.name, hashlib.sha256(data).hexdigest(), len(data))
    ]
    assert first.upstream == index.url and first.revision
    assert again == first
    assert index.count(PAGE) == 1


@pytest.mark.parametrize("fmt", ["json", "html"])
async def test_json_and_html_pages_give_the_same_files(
    index: FakeIndex,
    client: httpx.AsyncClient,
    store: MemoryStore,
    clock: Clock,
    wheels: Wheels,
    fmt: str,
) -> None:
    index.format = "json" if fmt == "json" else "html"
    index.add("demo", wheels.demo_1)
    listed = index.add("demo", wheels.demo_2)
    page = await cache(index, client, store, clock).page(DEMO, UNIVERSAL)
    metadata = {"sha256": hashlib.sha256(listed.metadata or b"").hexdigest()}
    # HTML links are relative to the page: resolved against its URL.
    assert described(page)[1] == (
        wheels.demo_2.name,
        index.file_url(wheels.demo_2.name),
        listed.sha256,
        metadata,
    )
    assert [f.filename for f in page.files] == [wheels.demo_1.name, wheels.demo_2.name]
    sent = index.requests[-1].headers["accept"]
    assert sent.startswith("application/vnd.pypi.simple.v1+json")


async def test_a_stale_page_is_revalidated_and_kept_when_unchanged(
    index: FakeIndex, client: httpx.AsyncClient, store: MemoryStore, clock: Clock, wheels: Wheels
) -> None:
    index.add("demo", wheels.demo_1)
    pages = cache(index, client, store, clock)
    first = await pages.page(DEMO, UNIVERSAL)
    clock.advance(TTL)
    again = await pages.page(DEMO, UNIVERSAL)
    assert "if-none-match" not in index.requests[0].headers
    assert "if-none-match" in index.requests[1].headers
    assert index.answered == [(PAGE, 200), (PAGE, 304)]
    assert again.revision == first.revision and described(again) == described(first)
    clock.advance(TTL - 1)  # the 304 counts as a fetch: fresh again
    await pages.page(DEMO, UNIVERSAL)
    assert index.count(PAGE) == 2


@pytest.mark.parametrize("etag", ['"caf\u00e9"'.encode(), b'"a\x01b"'])
async def test_validators_that_are_not_plain_ascii_are_not_sent_back(
    index: FakeIndex,
    client: httpx.AsyncClient,
    store: MemoryStore,
    clock: Clock,
    wheels: Wheels,
    etag: bytes,
) -> None:
    index.add("demo", wheels.demo_1)
    index.etag = etag
    pages = cache(index, client, store, clock)
    first = await pages.page(DEMO, UNIVERSAL)
    clock.advance(TTL)
    assert await pages.page(DEMO, UNIVERSAL) == first
    assert "if-none-match" not in index.requests[1].headers
    assert index.answered == [(PAGE, 200), (PAGE, 200)]


async def test_a_changed_page_gets_a_new_revision(
    index: FakeIndex, client: httpx.AsyncClient, store: MemoryStore, clock: Clock, wheels: Wheels
) -> None:
    index.add("demo", wheels.demo_1)
    pages = cache(index, client, store, clock)
    first = await pages.page(DEMO, UNIVERSAL)
    index.add("demo", wheels.demo_2)
    assert await pages.page(DEMO, UNIVERSAL) == first  # within the TTL
    clock.advance(TTL)
    changed = await pages.page(DEMO, UNIVERSAL)
    assert [f.filename for f in changed.files] == [wheels.demo_1.name, wheels.demo_2.name]
    assert changed.revision != first.revision


async def test_an_upstream_failure_serves_the_last_good_page_with_a_warning(
    index: FakeIndex, client: httpx.AsyncClient, store: MemoryStore, clock: Clock, wheels: Wheels
) -> None:
    index.add("demo", wheels.demo_1)
    pages = cache(index, client, store, clock)
    good = await pages.page(DEMO, UNIVERSAL)
    index.status[PAGE] = 503
    clock.advance(TTL)
    stale = await pages.page(DEMO, UNIVERSAL)
    assert described(stale) == described(good)
    assert stale.warning is not None and stale.warning.startswith('110 hostfit "Response is Stale')
    assert "HTTP 503" in stale.warning
    # The failing upstream is not asked again on every request, only after a while.
    clock.advance(5)
    assert (await pages.page(DEMO, UNIVERSAL)).warning == stale.warning
    assert index.count(PAGE) == 2
    del index.status[PAGE]
    clock.advance(TTL)
    recovered = await pages.page(DEMO, UNIVERSAL)
    assert recovered.warning is None and index.count(PAGE) == 3


async def test_upstream_text_reaches_the_warning_only_as_printable_ascii(
    index: FakeIndex, client: httpx.AsyncClient, store: MemoryStore, clock: Clock, wheels: Wheels
) -> None:
    index.add("demo", wheels.demo_1)
    pages = cache(index, client, store, clock)
    await pages.page(DEMO, UNIVERSAL)
    index.fail[PAGE] = httpx.ConnectError('r\u00e9seau "coup\u00e9"\r\nX-Injected: yes')
    clock.advance(TTL)
    warning = (await pages.page(DEMO, UNIVERSAL)).warning
    assert warning is not None and warning.isascii() and warning.isprintable()
    inner = warning.removeprefix('110 hostfit "').removesuffix('"')
    assert '"' not in inner.replace('\\"', "")  # every quote of the text escaped
    assert "\r" not in warning and "\n" not in warning


@pytest.mark.parametrize(
    ("failure", "raised"),
    [
        (httpx.ConnectError("connection refused"), UpstreamError),
        (httpx.ReadTimeout("timed out"), UpstreamTimeout),
    ],
)
async def test_a_failure_with_nothing_cached_is_raised(
    index: FakeIndex,
    client: httpx.AsyncClient,
    store: MemoryStore,
    clock: Clock,
    failure: httpx.HTTPError,
    raised: type[UpstreamError],
) -> None:
    index.add_project("demo")
    index.fail[PAGE] = failure
    with pytest.raises(raised) as caught:
        await cache(index, client, store, clock).page(DEMO, UNIVERSAL)
    assert type(caught.value) is raised
    assert type(failure).__name__ in str(caught.value)


async def test_an_error_status_is_an_upstream_error(
    index: FakeIndex, client: httpx.AsyncClient, store: MemoryStore, clock: Clock
) -> None:
    index.add_project("demo")
    index.status[PAGE] = 500
    with pytest.raises(UpstreamError, match="HTTP 500"):
        await cache(index, client, store, clock).page(DEMO, UNIVERSAL)
    assert store.keys("page:") == []


async def test_an_absent_project_is_cached_as_absent(
    index: FakeIndex, client: httpx.AsyncClient, store: MemoryStore, clock: Clock
) -> None:
    pages = cache(index, client, store, clock)
    for _ in range(2):
        with pytest.raises(NotFound):
            await pages.page(NormalizedName("nothing"), UNIVERSAL)
    assert index.count("/simple/nothing/") == 1
    await pages.close()
    assert store.keys("page:") == []  # in memory only: names anyone asks for cost no key


async def test_another_replica_reads_the_stored_page_without_fetching(
    index: FakeIndex, client: httpx.AsyncClient, store: MemoryStore, clock: Clock, wheels: Wheels
) -> None:
    index.format = "html"
    index.add("demo", wheels.demo_1)
    one = cache(index, client, store, clock)
    first = await one.page(DEMO, UNIVERSAL)
    await one.close()  # the page is stored behind the answer; closing waits for the write
    other = await cache(index, client, store, clock).page(DEMO, UNIVERSAL)
    assert other == first
    assert index.count(PAGE) == 1


class HeldStore(MemoryStore):
    """Writes wait until ``release`` is set: a slow state store."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.release = asyncio.Event()

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        await self.release.wait()
        await super().set(key, value, ttl)


async def held_until_released(store: HeldStore, waiting: Awaitable[None]) -> None:
    """``waiting`` is still waiting for the held write; released, it ends."""
    task = asyncio.ensure_future(waiting)
    await asyncio.sleep(0.05)
    assert not task.done()
    store.release.set()
    await asyncio.wait_for(task, 5)


async def test_the_answer_does_not_wait_for_the_store_and_close_does(
    index: FakeIndex, client: httpx.AsyncClient, clock: Clock, wheels: Wheels
) -> None:
    index.add("demo", wheels.demo_1)
    store = HeldStore(clock)
    pages = cache(index, client, store, clock)
    page = await asyncio.wait_for(pages.page(DEMO, UNIVERSAL), 5)
    assert [f.filename for f in page.files] == [wheels.demo_1.name]
    assert store.keys("page:") == []
    await held_until_released(store, pages.close())
    assert len(store.keys("page:")) == 1


async def test_a_purge_waits_for_the_write_it_would_otherwise_undo(
    index: FakeIndex, client: httpx.AsyncClient, clock: Clock, wheels: Wheels
) -> None:
    index.add("demo", wheels.demo_1)
    store = HeldStore(clock)
    pages = cache(index, client, store, clock)
    await pages.page(DEMO, UNIVERSAL)
    await held_until_released(store, pages.purge(DEMO))
    await pages.close()
    assert store.keys("page:") == []


async def test_requests_at_once_share_one_fetch(
    index: FakeIndex, client: httpx.AsyncClient, store: MemoryStore, clock: Clock, wheels: Wheels
) -> None:
    index.add("demo", wheels.demo_1)
    index.delay = 0.05
    pages = cache(index, client, store, clock)
    results = await asyncio.gather(*(pages.page(DEMO, UNIVERSAL) for _ in range(10)))
    assert all(r == results[0] for r in results)
    assert index.count(PAGE) == 1


async def test_a_purged_page_is_fetched_anew(
    index: FakeIndex, client: httpx.AsyncClient, store: MemoryStore, clock: Clock, wheels: Wheels
) -> None:
    index.add("demo", wheels.demo_1)
    pages = cache(index, client, store, clock)
    await pages.page(DEMO, UNIVERSAL)
    index.add("demo", wheels.demo_2)
    await pages.purge(DEMO)
    assert len((await pages.page(DEMO, UNIVERSAL)).files) == 2
    assert index.count(PAGE) == 2


@pytest.mark.parametrize("fmt", ["json", "html"])
async def test_the_project_list_comes_from_the_upstream(
    index: FakeIndex, client: httpx.AsyncClient, store: MemoryStore, clock: Clock, fmt: str
) -> None:
    index.format = "json" if fmt == "json" else "html"
    for name in ("zeta", "alpha"):
        index.add_project(name)
    listed = await cache(index, client, store, clock).projects()
    assert listed.names == ("alpha", "zeta")


@pytest.mark.parametrize("threshold, off_the_loop", [(0, True), (10**9, False)])
async def test_a_big_page_is_parsed_off_the_event_loop(
    index: FakeIndex,
    client: httpx.AsyncClient,
    store: MemoryStore,
    clock: Clock,
    wheels: Wheels,
    monkeypatch: pytest.MonkeyPatch,
    threshold: int,
    off_the_loop: bool,
) -> None:
    index.add("demo", wheels.demo_1)
    monkeypatch.setattr(offload, "BIG", threshold)
    parsed_on: list[int] = []
    for parser in ("parse_json_page", "parse_html_page"):
        parse = getattr(upstream_module, parser)

        def watched(*args: Any, parse: Callable[..., Page] = parse) -> Page:
            parsed_on.append(threading.get_ident())
            return parse(*args)

        monkeypatch.setattr(upstream_module, parser, watched)
    fetching = cache(index, client, store, clock)
    fetched = await fetching.page(DEMO, UNIVERSAL)  # from upstream
    await fetching.close()  # its store write done
    loaded = await cache(index, client, store, clock).page(DEMO, UNIVERSAL)  # from the store
    assert loaded.files == fetched.files and index.count(PAGE) == 1
    assert len(parsed_on) == 2
    assert all((thread != threading.get_ident()) == off_the_loop for thread in parsed_on)


@pytest.mark.parametrize("gzipped", [True, False])
async def test_a_gzip_page_is_decoded_off_the_loop_whatever_its_size_received(
    index: FakeIndex,
    client: httpx.AsyncClient,
    store: MemoryStore,
    clock: Clock,
    wheels: Wheels,
    monkeypatch: pytest.MonkeyPatch,
    gzipped: bool,
) -> None:
    """A gzip body may inflate to 1032 times its bytes: its decoding goes by that, not by
    the bytes received (a 65 KB bomb inflates to 64 MiB). The page here is under 1 KB,
    gzipped or not; 64 KiB is big."""
    monkeypatch.setattr(offload, "BIG", 64 * 1024)
    index.gzip = gzipped
    index.add("demo", wheels.demo_1)
    decoded_on: list[int] = []
    decode = content_decoded

    def watched(*args: Any) -> Decoded:
        decoded_on.append(threading.get_ident())
        return decode(*args)

    monkeypatch.setattr(compression, "content_decoded", watched)
    fetching = cache(index, client, store, clock)
    page = await fetching.page(DEMO, UNIVERSAL)
    await fetching.close()
    assert [f.filename for f in page.files] == [wheels.demo_1.name]
    assert index.requests[-1].headers["accept-encoding"] == "gzip"
    assert len(decoded_on) == 1 and (decoded_on[0] != threading.get_ident()) == gzipped
